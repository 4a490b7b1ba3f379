//! Supervised training of an encoder plus a linear head: fine-tuning a pretrained encoder
//! end to end (small encoder learning rate), or training the same architecture from
//! scratch as the supervised baseline. Both use the same recipe and the same labeled subset.

use crate::kernels::{AutodiffKernels, Kernels};
use crate::prelude::*;
use std::time::Instant;

use anyhow::{bail, Context};
use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::features::{batch_tensor, calibrate_bn};
use super::linear_probe::argmax;
use crate::data::Dataset;
use crate::model::{scalar, BnMode, ModelSpec, Weights};
use crate::ssl::SslModel;

/// Recipe of a supervised run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// Optimizer steps (mini-batches drawn epoch by epoch from a seeded shuffle).
    pub steps: usize,
    /// Mini-batch size (capped at the number of labeled samples).
    pub batch_size: usize,
    /// Adam learning rate of a pretrained encoder.
    pub encoder_lr: f64,
    /// Adam learning rate of the head, and of an encoder trained from scratch.
    pub head_lr: f64,
    /// Seed of initialization and shuffling.
    pub seed: u64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            steps: 400,
            batch_size: 64,
            encoder_lr: 1e-4,
            head_lr: 1e-3,
            seed: 0,
        }
    }
}

/// What a supervised run reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FinetuneResult {
    /// Accuracy on the test set.
    pub test_accuracy: f64,
    /// Mean cross-entropy over the last 10% of steps.
    pub final_loss: f64,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Labeled samples trained on.
    pub labeled: usize,
    /// Wall-clock seconds (training and testing).
    pub seconds: f64,
}

/// The pretraining model's encoder (both towers for cross-modal objectives) with a linear
/// classification head.
#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    /// The pretraining model; only its encoder (and second tower) are used.
    pub encoder: SslModel<B>,
    /// The head.
    pub head: Linear<B>,
}

impl<B: Kernels> Classifier<B> {
    /// Logits of a batch of flat samples.
    pub fn forward(&self, x: Tensor<B, 2>, mode: BnMode) -> Tensor<B, 2> {
        self.head.forward(
            self.encoder
                .represent(x, mode, crate::kernels::Ops::Kernels),
        )
    }
}

/// Trains a classifier on the labeled `train` set, starting from `pretrained` (fine-tuning)
/// or from a random initialization (`None`: the supervised baseline), on backend `B`.
pub fn train_classifier<B: AutodiffKernels>(
    spec: &ModelSpec,
    pretrained: Option<&Weights>,
    train: &Dataset,
    cfg: &FinetuneConfig,
    dev: &B::Device,
) -> anyhow::Result<(Classifier<B>, f64)> {
    let labels = match &train.labels {
        Some(l) if !l.is_empty() => l,
        _ => bail!("supervised training needs a labeled, non-empty training set"),
    };
    let classes = train.num_classes.max(2);
    let mut encoder = spec
        .init_seeded::<B>(dev, cfg.seed)
        .map_err(anyhow::Error::msg)?;
    if let Some(w) = pretrained {
        encoder = w.load_into(encoder).with_context(|| {
            format!(
                "the pretrained weights do not fit the {} encoder",
                spec.encoder.name()
            )
        })?;
    }
    let head = LinearConfig::new(spec.repr_dim(), classes).init::<B>(dev);
    let mut model = Classifier { encoder, head };
    let mut enc_opt = AdamConfig::new()
        .with_epsilon(1e-8)
        .init::<B, SslModel<B>>();
    let mut head_opt = AdamConfig::new().with_epsilon(1e-8).init::<B, Linear<B>>();
    let encoder_lr = if pretrained.is_some() {
        cfg.encoder_lr
    } else {
        cfg.head_lr
    };
    let loss_fn = CrossEntropyLossConfig::new().init::<B>(dev);
    let n = labels.len();
    let bs = cfg.batch_size.clamp(1, n);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = Vec::new();
    let tail = (cfg.steps / 10).max(1);
    let (mut tail_loss, mut tail_count) = (0.0f64, 0usize);
    for step in 0..cfg.steps {
        if order.len() < bs {
            let mut fresh: Vec<usize> = (0..n).collect();
            fresh.shuffle(&mut rng);
            order = fresh;
        }
        let idx: Vec<usize> = order.drain(..bs).collect();
        let batch = train.subset(&idx);
        let x = batch_tensor::<B>(&batch, 0, idx.len(), dev);
        let y: Vec<i64> = idx.iter().map(|&i| labels[i] as i64).collect();
        let y = Tensor::<B, 1, Int>::from_data(TensorData::new(y, [idx.len()]), dev);
        let logits = model.forward(x, BnMode::Train);
        let loss = loss_fn.forward(logits, y);
        let value = scalar(&loss) as f64;
        if !value.is_finite() {
            bail!("supervised training diverged at step {step} (loss {value})");
        }
        if step + tail >= cfg.steps {
            tail_loss += value;
            tail_count += 1;
        }
        let mut grads = loss.backward();
        let g_enc = GradientsParams::from_module(&mut grads, &model.encoder);
        let g_head = GradientsParams::from_module(&mut grads, &model.head);
        model.encoder = enc_opt.step(encoder_lr, model.encoder, g_enc);
        model.head = head_opt.step(cfg.head_lr, model.head, g_head);
    }
    Ok((model, tail_loss / tail_count.max(1) as f64))
}

/// Accuracy of `model` on `test`, after calibrating its BatchNorm statistics on `train`.
pub fn classifier_accuracy<B: Kernels>(
    model: &Classifier<B>,
    train: &Dataset,
    test: &Dataset,
    dev: &B::Device,
) -> anyhow::Result<f64> {
    let labels = test
        .labels
        .as_ref()
        .context("testing needs a labeled test set")?;
    calibrate_bn(&model.encoder, train, 256, dev);
    let mut correct = 0usize;
    let mut start = 0;
    while start < test.len() {
        let end = (start + 256).min(test.len());
        let logits = model.forward(batch_tensor::<B>(test, start, end, dev), BnMode::Eval);
        let classes = logits.dims()[1];
        let v: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| anyhow::anyhow!("cannot read logits: {e:?}"))?;
        correct += v
            .chunks_exact(classes)
            .zip(&labels[start..end])
            .filter(|(row, &l)| argmax(row) == l as usize)
            .count();
        start = end;
    }
    Ok(correct as f64 / test.len().max(1) as f64)
}

/// Trains on the CPU; returns the inference model and the run's figures (the test accuracy
/// still unmeasured: NaN).
fn train_on_cpu(
    spec: &ModelSpec,
    pretrained: Option<&Weights>,
    train: &Dataset,
    cfg: &FinetuneConfig,
) -> anyhow::Result<(Classifier<Flex>, FinetuneResult)> {
    let start = Instant::now();
    let dev = Default::default();
    let (model, final_loss) =
        train_classifier::<Autodiff<Flex>>(spec, pretrained, train, cfg, &dev)?;
    Ok((
        model.valid(),
        FinetuneResult {
            test_accuracy: f64::NAN,
            final_loss,
            steps: cfg.steps,
            labeled: train.len(),
            seconds: start.elapsed().as_secs_f64(),
        },
    ))
}

/// Trains (fine-tunes `pretrained`, or from scratch with `None`) on the CPU and tests.
pub fn finetune(
    spec: &ModelSpec,
    pretrained: Option<&Weights>,
    train: &Dataset,
    test: &Dataset,
    cfg: &FinetuneConfig,
) -> anyhow::Result<FinetuneResult> {
    let start = Instant::now();
    let (model, mut result) = train_on_cpu(spec, pretrained, train, cfg)?;
    result.test_accuracy = classifier_accuracy(&model, train, test, &Default::default())?;
    result.seconds = start.elapsed().as_secs_f64();
    Ok(result)
}

/// The encoder of a supervised-from-scratch classifier, as global weights (for probing
/// supervised features with the same tools as self-supervised ones).
pub fn supervised_encoder(
    spec: &ModelSpec,
    train: &Dataset,
    cfg: &FinetuneConfig,
) -> anyhow::Result<(Weights, FinetuneResult)> {
    let (model, result) = train_on_cpu(spec, None, train, cfg)?;
    Ok((spec.global(&model.encoder), result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic;

    #[test]
    fn supervised_training_learns_the_generated_shapes() {
        let data = synthetic::generate(400, 11);
        let train = data.take(300);
        let test = data.subset(&(300..400).collect::<Vec<_>>());
        let cfg = FinetuneConfig {
            steps: 60,
            batch_size: 32,
            ..FinetuneConfig::default()
        };
        let r = finetune(&ModelSpec::default(), None, &train, &test, &cfg).unwrap();
        // 10 classes: chance is 10%.
        assert!(r.test_accuracy > 0.3, "accuracy {}", r.test_accuracy);
        assert!(r.final_loss < 2.0, "loss {}", r.final_loss);
        assert_eq!(r.labeled, 300);
    }
}
