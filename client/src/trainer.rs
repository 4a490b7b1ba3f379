//! Local self-supervised training: SimCLR on two augmented views per image.

use fedssl_common::kernels::{AutodiffKernels, Kernels, Ops};
use std::time::Instant;

use anyhow::{bail, Context};
use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use fedssl_common::data::Dataset;
use fedssl_common::device::ComputeDevice;
use fedssl_common::model::{
    scalar, BnMode, ConvNetS, ConvNetSConfig, Predictor, PredictorConfig, Projector,
    ProjectorConfig, Weights, IMAGE_PIXELS, IMAGE_SIDE,
};
use fedssl_common::protocol::RoundPlan;
use fedssl_common::ssl::{
    AugmentConfig, Augmenter, Objective, ObjectiveParams, PairOutputs, VicReg,
};
use tracing::warn;

/// Encoder, projector and (for objectives that use one) predictor, trained together.
#[derive(Module, Debug)]
pub struct SslModel<B: Backend> {
    /// Global encoder.
    pub encoder: ConvNetS<B>,
    /// Local projection head.
    pub projector: Projector<B>,
    /// Local prediction head (SimSiam), a 128 → 64 → 128 bottleneck MLP.
    pub predictor: Option<Predictor<B>>,
}

/// What a round of local training produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Encoder weights after training (global tensors only).
    pub encoder: Weights,
    /// Projector weights after training (stay local).
    pub projector: Weights,
    /// Predictor weights after training (stay local), for objectives with a predictor.
    pub predictor: Option<Weights>,
    /// Mean loss over all steps.
    pub mean_loss: f32,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Inputs of one round of local training.
pub struct TrainJob<'a> {
    /// Global encoder to start from.
    pub global: &'a Weights,
    /// The site's projector from earlier rounds, if any.
    pub projector: Option<&'a Weights>,
    /// The site's predictor from earlier rounds, if any.
    pub predictor: Option<&'a Weights>,
    /// Unlabeled local data.
    pub data: &'a Dataset,
    /// Round hyper-parameters.
    pub plan: &'a RoundPlan,
    /// Mixed into the plan's seed so sites draw different views.
    pub site_seed: u64,
    /// Progress bar advanced once per step.
    pub progress: Option<ProgressBar>,
}

/// Runs local training on the requested device.
pub fn train(device: ComputeDevice, job: TrainJob<'_>) -> anyhow::Result<TrainOutcome> {
    match device {
        ComputeDevice::Cpu => train_on::<Autodiff<Flex>>(Default::default(), job),
        ComputeDevice::Cuda(i) => {
            let dev = burn::backend::cuda::CudaDevice::new(i);
            train_on::<Autodiff<burn::backend::Cuda>>(dev, job)
        }
    }
}

/// Number of optimizer steps a round takes on `n` samples.
pub fn steps_per_round(n: usize, plan: &RoundPlan) -> usize {
    let bs = (plan.batch_size as usize).min(n).max(1);
    (n / bs).max(1) * plan.local_epochs as usize
}

/// Two augmented views of the images at `idx`, as one `[2·|idx|, 1, 28, 28]` batch (all first
/// views, then all second views).
pub fn views<B: Backend>(
    data: &Dataset,
    idx: &[usize],
    aug: &Augmenter,
    seed: u64,
    dev: &B::Device,
) -> Tensor<B, 4> {
    let b = idx.len();
    let mut buf = vec![0.0f32; 2 * b * IMAGE_PIXELS];
    buf.par_chunks_mut(IMAGE_PIXELS)
        .enumerate()
        .for_each(|(j, out)| {
            let (view, k) = (j / b, j % b);
            let i = idx[k];
            aug.view(data.image(i), out, seed, ((i as u64) << 1) | view as u64);
        });
    Tensor::from_data(
        TensorData::new(buf, [2 * b, 1, IMAGE_SIDE, IMAGE_SIDE]),
        dev,
    )
}

/// SimCLR loss of a batch holding two views (first half, second half) of each image, with
/// the chosen implementation of the encoder's operations.
pub fn simclr_loss_with<B: Kernels>(
    model: &SslModel<B>,
    x: Tensor<B, 4>,
    temperature: f64,
    ops: Ops,
) -> Tensor<B, 1> {
    let params = ObjectiveParams {
        temperature,
        vicreg: VicReg::default(),
    };
    ssl_loss(model, x, Objective::SimClr, &params, ops)
}

/// The loss of `objective` on a batch holding two views (first half, second half) of each
/// image.
pub fn ssl_loss<B: Kernels>(
    model: &SslModel<B>,
    x: Tensor<B, 4>,
    objective: Objective,
    params: &ObjectiveParams,
    ops: Ops,
) -> Tensor<B, 1> {
    let k = x.dims()[0] / 2;
    let z = model
        .projector
        .forward(model.encoder.forward_with(x, BnMode::Train, ops));
    let p = model.predictor.as_ref().map(|pred| pred.forward(z.clone()));
    let out = PairOutputs {
        z1: z.clone().slice(0..k),
        z2: z.slice(k..2 * k),
        p1: p.as_ref().map(|p| p.clone().slice(0..k)),
        p2: p.map(|p| p.slice(k..2 * k)),
    };
    objective.loss(out, params)
}

/// A fresh SimCLR model (encoder + projector) on `dev`, seeded.
pub fn init_model<B: Backend>(dev: &B::Device, seed: u64) -> SslModel<B> {
    init_model_for(dev, seed, Objective::SimClr)
}

/// A fresh model for `objective` (with a predictor when it uses one), seeded.
pub fn init_model_for<B: Backend>(dev: &B::Device, seed: u64, objective: Objective) -> SslModel<B> {
    B::seed(dev, seed);
    SslModel {
        encoder: ConvNetSConfig::default().init::<B>(dev),
        projector: ProjectorConfig::default().init::<B>(dev),
        predictor: objective
            .uses_predictor()
            .then(|| PredictorConfig::default().init::<B>(dev)),
    }
}

/// The optimizer every local step uses: Adam, ε = 1e-8 (PyTorch's default).
pub fn optimizer<B: AutodiffBackend>() -> impl Optimizer<SslModel<B>, B> {
    AdamConfig::new()
        .with_epsilon(1e-8)
        .init::<B, SslModel<B>>()
}

/// Local training on backend `B`.
pub fn train_on<B: AutodiffKernels>(
    dev: B::Device,
    job: TrainJob<'_>,
) -> anyhow::Result<TrainOutcome> {
    let start = Instant::now();
    let n = job.data.len();
    if n < 2 {
        bail!("this site has {n} training samples; every objective needs pairs of samples, so at least 2");
    }
    let plan = job.plan;
    let seed = plan.seed ^ job.site_seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut model = init_model_for::<B>(&dev, seed, plan.objective);
    model.encoder = job
        .global
        .load_into(model.encoder)
        .context("the global model does not fit ConvNet-S")?;
    // The local heads from earlier rounds; a head saved under another objective or shape
    // does not fit and is started afresh.
    if let Some(p) = job.projector {
        match p.load_into(model.projector.clone()) {
            Ok(m) => model.projector = m,
            Err(e) => warn!("the saved projector does not fit ({e}); starting a fresh one"),
        }
    }
    if let (Some(w), Some(pred)) = (job.predictor, model.predictor.clone()) {
        match w.load_into(pred) {
            Ok(m) => model.predictor = Some(m),
            Err(e) => warn!("the saved predictor does not fit ({e}); starting a fresh one"),
        }
    }
    let params = plan.objective_params();
    let mut optim = optimizer::<B>();
    let aug = Augmenter::new(AugmentConfig::default());
    let bs = (plan.batch_size as usize).min(n);
    if n < plan.batch_size as usize {
        warn!(
            samples = n,
            batch_size = plan.batch_size,
            "this site has fewer samples than one batch; training with batches of {n} (the objective {} needs at least 2)",
            plan.objective
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    let (mut loss_sum, mut steps) = (0.0f64, 0usize);
    for epoch in 0..plan.local_epochs {
        order.shuffle(&mut rng);
        for (b, idx) in order.chunks(bs).enumerate() {
            if idx.len() < bs.max(2) && b > 0 {
                continue; // drop a short last batch: too few negatives
            }
            let step_seed = seed ^ ((epoch as u64) << 32 | b as u64);
            let x = views::<B>(job.data, idx, &aug, step_seed, &dev);
            let loss = ssl_loss(&model, x, plan.objective, &params, Ops::Kernels);
            let value = scalar(&loss);
            if !value.is_finite() {
                bail!("local training diverged (loss {value}) in epoch {epoch}, batch {b}; lower the learning rate");
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(plan.learning_rate, model, grads);
            loss_sum += value as f64;
            steps += 1;
            if let Some(p) = &job.progress {
                p.inc(1);
                p.set_message(format!("loss {value:.3}"));
            }
        }
    }
    Ok(TrainOutcome {
        encoder: Weights::global_from_module(&model.encoder),
        projector: Weights::from_module(&model.projector),
        predictor: model.predictor.as_ref().map(Weights::from_module),
        mean_loss: (loss_sum / steps.max(1) as f64) as f32,
        steps,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedssl_common::protocol::DpParams;

    /// Ten Adam steps from the same start on the same views: the loss curve with fedssl's
    /// kernels follows the one with burn's ops.
    #[test]
    fn loss_curve_matches_burn_ops() {
        type A = Autodiff<Flex>;
        let data = fedssl_common::data::synthetic::generate(32, 9).unlabeled();
        let aug = Augmenter::new(AugmentConfig::default());
        let idx: Vec<usize> = (0..32).collect();
        let curve = |ops: Ops| {
            let dev = Default::default();
            let mut model = init_model::<A>(&dev, 5);
            let mut optim = optimizer::<A>();
            let mut losses = Vec::new();
            for step in 0..10 {
                let x = views::<A>(&data, &idx, &aug, step, &dev);
                let loss = simclr_loss_with(&model, x, 0.2, ops);
                losses.push(scalar(&loss));
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(1e-3, model, grads);
            }
            losses
        };
        let (ours, theirs) = (curve(Ops::Kernels), curve(Ops::Burn));
        assert!(ours[9] < ours[0], "the loss did not fall: {ours:?}");
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() <= 1e-3 * b.abs(), "{ours:?}\n{theirs:?}");
        }
    }

    /// For every objective: more local steps on structured data reach a lower mean loss,
    /// the encoder moves, and the predictor exists exactly when the objective has one.
    #[test]
    fn a_few_steps_lower_the_loss_and_change_the_encoder() {
        let data = fedssl_common::data::synthetic::generate(64, 3).unlabeled();
        let dev = Default::default();
        <Flex as Backend>::seed(&dev, 1);
        let enc = ConvNetSConfig::default().init::<Flex>(&dev);
        let global = Weights::global_from_module(&enc);
        for objective in [Objective::SimClr, Objective::SimSiam, Objective::VicReg] {
            let plan = RoundPlan {
                local_epochs: 6,
                batch_size: 32,
                learning_rate: 2e-3,
                temperature: 0.2,
                dp: DpParams {
                    clip_norm: 1.0,
                    noise_multiplier: 1.0,
                },
                seed: 5,
                evaluate: false,
                objective,
                vicreg: VicReg::default(),
            };
            let run = |epochs: u32| {
                train(
                    ComputeDevice::Cpu,
                    TrainJob {
                        global: &global,
                        projector: None,
                        predictor: None,
                        data: &data,
                        plan: &RoundPlan {
                            local_epochs: epochs,
                            ..plan.clone()
                        },
                        site_seed: 1,
                        progress: None,
                    },
                )
                .unwrap()
            };
            let (first, out) = (run(1), run(6));
            assert_eq!(out.steps, 12, "{objective}");
            assert!(out.mean_loss.is_finite(), "{objective}");
            assert!(
                out.mean_loss < first.mean_loss,
                "{objective}: {} !< {}",
                out.mean_loss,
                first.mean_loss
            );
            assert!(out.encoder.sub(&global).unwrap().l2_norm() > 0.0);
            assert_eq!(out.predictor.is_some(), objective.uses_predictor());
        }
    }
}
