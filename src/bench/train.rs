//! `fedssl bench train`: images/s of one local SimCLR step (forward both views, NT-Xent,
//! backward, Adam) and of forward-only feature extraction, for ConvNet-S on the CPU, side by
//! side with the same model, loss, batch and optimizer in PyTorch (`bench/pytorch_reference.py`),
//! after checking that both compute the same loss on the same weights and input.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use serde::Deserialize;
use tracing::{info, warn};

use fedssl_client::trainer::{init_model, optimizer, simclr_loss, views};
use fedssl_common::data::synthetic;
use fedssl_common::model::weights::WeightTensor;
use fedssl_common::model::{scalar, BnMode, Weights, IMAGE_SIDE};
use fedssl_common::ssl::{AugmentConfig, Augmenter};

use super::table::{machine, num, Table};

type B = Autodiff<Flex>;

/// Settings of the training benchmark.
#[derive(Debug, Clone)]
pub struct TrainBench {
    /// Images per step (each seen as two views).
    pub batch: usize,
    /// Timed training steps.
    pub steps: usize,
    /// Untimed warm-up steps.
    pub warmup: usize,
    /// Timed forward-only batches.
    pub forward_batches: usize,
    /// Python interpreter with torch (None: `python3`).
    pub python: Option<PathBuf>,
    /// The reference script.
    pub script: PathBuf,
    /// Where weights, input and results go.
    pub out: PathBuf,
}

#[derive(Debug, Deserialize)]
struct TorchResult {
    torch_version: String,
    threads: usize,
    initial_loss: f64,
    train_images_per_s: f64,
    forward_images_per_s: f64,
}

const TEMPERATURE: f64 = 0.2;
const LR: f64 = 1e-3;

/// Runs the benchmark and returns its table.
pub fn run(cfg: &TrainBench) -> anyhow::Result<Table> {
    std::fs::create_dir_all(&cfg.out)?;
    let dev = Default::default();
    let mut model = init_model::<B>(&dev, 7);
    // The same input for both frameworks: two augmented views of generated images.
    let data = synthetic::generate(cfg.batch, 3);
    let idx: Vec<usize> = (0..cfg.batch).collect();
    let x = views::<B>(
        &data,
        &idx,
        &Augmenter::new(AugmentConfig::default()),
        11,
        &dev,
    );
    let x_values: Vec<f32> = x
        .clone()
        .into_data()
        .to_vec()
        .map_err(|e| anyhow::anyhow!("cannot read the input batch: {e:?}"))?;
    let weights_path = cfg.out.join("bench-train-weights.safetensors");
    let input_path = cfg.out.join("bench-train-input.safetensors");
    Weights::from_module(&model).save(&weights_path)?;
    Weights {
        tensors: vec![WeightTensor {
            name: "x".into(),
            shape: vec![2 * cfg.batch, 1, IMAGE_SIDE, IMAGE_SIDE],
            values: x_values,
        }],
    }
    .save(&input_path)?;

    // 1. Loss on the exported weights and input, before any step.
    let initial_loss = scalar(&simclr_loss(&model.valid(), x.clone().inner(), TEMPERATURE)) as f64;

    // 2. Training steps.
    let mut optim = optimizer::<B>();
    let mut step = |model: SslModelB| -> anyhow::Result<SslModelB> {
        let loss = simclr_loss(&model, x.clone(), TEMPERATURE);
        anyhow::ensure!(scalar(&loss).is_finite(), "the loss is not finite");
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        Ok(optim.step(LR, model, grads))
    };
    info!(
        batch = cfg.batch,
        steps = cfg.steps,
        "timing fedssl training steps"
    );
    for _ in 0..cfg.warmup {
        model = step(model)?;
    }
    let t = Instant::now();
    for _ in 0..cfg.steps {
        model = step(model)?;
    }
    let train_ips = (cfg.batch * cfg.steps) as f64 / t.elapsed().as_secs_f64();

    // 3. Forward only (eval-mode encoder, one view).
    let enc = model.encoder.valid();
    let xb = x.inner().slice(0..cfg.batch);
    for _ in 0..2 {
        let _ = enc.forward(xb.clone(), BnMode::Eval).into_data();
    }
    let t = Instant::now();
    for _ in 0..cfg.forward_batches {
        let _ = enc.forward(xb.clone(), BnMode::Eval).into_data();
    }
    let fwd_ips = (cfg.batch * cfg.forward_batches) as f64 / t.elapsed().as_secs_f64();

    let torch = run_torch(cfg, &weights_path, &input_path);
    let mut table = Table::new(
        format!(
            "bench train: ConvNet-S SimCLR step, batch {} × 2 views, Adam, CPU",
            cfg.batch
        ),
        &[
            "framework",
            "train images/s",
            "forward images/s",
            "initial loss",
        ],
    );
    table.row(vec![
        "fedssl (burn 0.21 Flex)".into(),
        num(Some(train_ips), 1),
        num(Some(fwd_ips), 1),
        num(Some(initial_loss), 6),
    ]);
    match &torch {
        Ok(t) => {
            table.row(vec![
                format!("PyTorch {} ({} threads)", t.torch_version, t.threads),
                num(Some(t.train_images_per_s), 1),
                num(Some(t.forward_images_per_s), 1),
                num(Some(t.initial_loss), 6),
            ]);
            table.row(vec![
                "ratio fedssl / PyTorch".into(),
                format!("{:.3}×", train_ips / t.train_images_per_s),
                format!("{:.3}×", fwd_ips / t.forward_images_per_s),
                String::new(),
            ]);
            let rel = (initial_loss - t.initial_loss).abs() / t.initial_loss.abs().max(1e-12);
            if rel <= 1e-4 {
                table.note(format!(
                    "losses agree on the same weights and input (relative difference {rel:.1e})"
                ));
            } else {
                table.note(format!(
                    "WARNING: losses differ by {rel:.1e} (relative): the two models are not computing the same thing"
                ));
            }
        }
        Err(e) => {
            warn!("{e:#}");
            table.note(format!("PyTorch reference not run: {e:#}"));
        }
    }
    table.note("images/s counts source images; each is processed as two augmented views");
    table.note(format!("machine: {}", machine()));
    Ok(table)
}

type SslModelB = fedssl_client::trainer::SslModel<B>;

fn run_torch(cfg: &TrainBench, weights: &Path, input: &Path) -> anyhow::Result<TorchResult> {
    let python = cfg
        .python
        .clone()
        .unwrap_or_else(|| PathBuf::from("python3"));
    anyhow::ensure!(
        cfg.script.exists(),
        "the reference script {} is missing",
        cfg.script.display()
    );
    info!(python = %python.display(), "running the PyTorch reference");
    let out = Command::new(&python)
        .arg(&cfg.script)
        .args(["--weights".as_ref(), weights.as_os_str()])
        .args(["--input".as_ref(), input.as_os_str()])
        .args(["--threads", &rayon::current_num_threads().to_string()])
        .args(["--steps", &cfg.steps.to_string()])
        .args(["--warmup", &cfg.warmup.to_string()])
        .args(["--forward-batches", &cfg.forward_batches.to_string()])
        .args(["--temperature", &TEMPERATURE.to_string()])
        .args(["--lr", &LR.to_string()])
        .output()
        .with_context(|| format!("cannot start {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(3) {
        anyhow::bail!(
            "torch is not installed for {} (pip install torch safetensors, or pass --python)",
            python.display()
        );
    }
    anyhow::ensure!(
        out.status.success(),
        "the PyTorch reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("unexpected reference output: {line}"))
}
