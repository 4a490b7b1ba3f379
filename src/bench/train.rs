//! `fedssl bench train`: images/s of one local SimCLR step (forward both views, NT-Xent,
//! backward, Adam) and of forward-only feature extraction, for ConvNet-S on the CPU, side by
//! side with the same model, loss, batch and optimizer in PyTorch (`bench/pytorch_reference.py`),
//! after checking that both compute the same loss on the same weights and input.

use fedssl_ml::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use serde::Deserialize;
use tracing::{info, warn};

use fedssl_client::trainer::{init_model, optimizer, simclr_loss_with};
use fedssl_kernels::{profile, Ops};
use fedssl_ml::data::synthetic;
use fedssl_ml::model::weights::WeightTensor;
use fedssl_ml::model::{scalar, BnMode, ConvNetS, Encoder, ModelSpec, Weights, IMAGE_SIDE};
use fedssl_ml::ssl::pairs::two_views;
use fedssl_ml::ssl::ViewMaker;
use fedssl_ml::ssl::{AugmentConfig, Augmenter};

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
    let model = init_model::<B>(&ModelSpec::default(), &dev, 7)?;
    // The same input for both frameworks: two augmented views of generated images.
    let data = synthetic::generate(cfg.batch, 3);
    let idx: Vec<usize> = (0..cfg.batch).collect();
    let views = ViewMaker::Image(Augmenter::new(AugmentConfig::default()));
    let x = two_views(&data, &idx, &views, 11).x_tensor::<B>(&dev);
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
    let initial_loss = scalar(&simclr_loss_with(
        &model.valid(),
        x.clone().inner(),
        TEMPERATURE,
        Ops::Kernels,
    )) as f64;

    // 2. PyTorch runs before and after fedssl, and its better figures count: on a shared
    //    machine speeds drift, and this keeps the drift from favouring fedssl.
    let torch_before = run_torch(cfg, &weights_path, &input_path);
    // 3. Training steps and forward-only batches, with fedssl's kernels (profiled) and
    //    with burn's own ops (the reference the kernels replace, fewer steps: it is slow).
    let Encoder::Conv(conv) = &model.encoder else {
        anyhow::bail!("the benchmark's model is ConvNet-S");
    };
    let (fwd_flop, train_flop) = convnet_s_flops(conv);
    let ours = time_ops(cfg, model.clone(), &x, Ops::Kernels, cfg.steps, true)?;
    let burn_steps = cfg.steps.clamp(1, 3);
    let burn = time_ops(cfg, model, &x, Ops::Burn, burn_steps, false)?;

    let torch = match (torch_before, run_torch(cfg, &weights_path, &input_path)) {
        (Ok(a), Ok(b)) => Ok(TorchResult {
            train_images_per_s: a.train_images_per_s.max(b.train_images_per_s),
            forward_images_per_s: a.forward_images_per_s.max(b.forward_images_per_s),
            ..b
        }),
        (Ok(a), Err(_)) | (Err(_), Ok(a)) => Ok(a),
        (Err(e), Err(_)) => Err(e),
    };
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
    let (train_ips, fwd_ips) = (ours.train_ips, ours.forward_ips);
    table.row(vec![
        "fedssl (own kernels on burn 0.21 Flex)".into(),
        num(Some(train_ips), 1),
        num(Some(fwd_ips), 1),
        num(Some(initial_loss), 6),
    ]);
    table.row(vec![
        "fedssl with burn's own ops (before)".into(),
        num(Some(burn.train_ips), 1),
        num(Some(burn.forward_ips), 1),
        String::new(),
    ]);
    match &torch {
        Ok(t) => {
            table.row(vec![
                format!(
                    "PyTorch {} ({} threads, best of 2)",
                    t.torch_version, t.threads
                ),
                num(Some(t.train_images_per_s), 1),
                num(Some(t.forward_images_per_s), 1),
                num(Some(t.initial_loss), 6),
            ]);
            let (rt, rf) = (
                train_ips / t.train_images_per_s,
                fwd_ips / t.forward_images_per_s,
            );
            table.row(vec![
                "ratio fedssl / PyTorch".into(),
                format!("{rt:.3}×"),
                format!("{rf:.3}×"),
                String::new(),
            ]);
            table.note(format!(
                "training at {rt:.2}× PyTorch ({}), forward at {rf:.2}× ({})",
                distance(rt),
                distance(rf)
            ));
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
    table.note(format!(
        "work: {:.1} MFLOP per view forward, {:.1} MFLOP per view for a training step (2 views per image); fedssl runs training at {:.0} GFLOP/s and forward at {:.0} GFLOP/s{}",
        fwd_flop * 1e-6,
        train_flop * 1e-6,
        train_ips * 2.0 * train_flop * 1e-9,
        fwd_ips * fwd_flop * 1e-9,
        match &torch {
            Ok(t) => format!(
                ", PyTorch at {:.0} and {:.0} GFLOP/s",
                t.train_images_per_s * 2.0 * train_flop * 1e-9,
                t.forward_images_per_s * fwd_flop * 1e-9
            ),
            Err(_) => String::new(),
        }
    ));
    table.note(format!(
        "speed-up of the kernels over burn's own ops: {:.1}× training, {:.1}× forward",
        train_ips / burn.train_ips,
        fwd_ips / burn.forward_ips
    ));
    if let Some((train, forward)) = &ours.profile {
        table.note(format!("profile of one training step: {train}"));
        table.note(format!("profile of one forward batch: {forward}"));
    }
    let ceiling = gemm_rate();
    table.note(format!(
        "ceiling: a 1024³ matrix product runs at {ceiling:.0} GFLOP/s on {} threads here; training uses {:.0} %, forward {:.0} % of it",
        rayon::current_num_threads(),
        100.0 * train_ips * 2.0 * train_flop * 1e-9 / ceiling,
        100.0 * fwd_ips * fwd_flop * 1e-9 / ceiling
    ));
    table.note("images/s counts source images; each is processed as two augmented views");
    table.note(format!("machine: {}", machine()));
    Ok(table)
}

type SslModelB = fedssl_ml::ssl::SslModel<B>;

/// Speeds of one implementation of the layer operations.
struct Timed {
    train_ips: f64,
    forward_ips: f64,
    /// Where a training step's and a forward batch's time went (when profiled).
    profile: Option<(String, String)>,
}

/// Multiply-adds ×2 of the encoder's convolutions per 28×28 view, from its weights:
/// (forward, training step = forward + weight gradient + input gradient, the first layer's
/// input needing none).
fn convnet_s_flops(enc: &ConvNetS<B>) -> (f64, f64) {
    let mut side = IMAGE_SIDE;
    let per: Vec<f64> = enc
        .blocks
        .iter()
        .map(|b| {
            let [cout, cin, kh, kw] = b.conv.weight.dims();
            side = side.div_ceil(b.conv.stride[0]); // 3×3, padding 1
            2.0 * (cout * cin * kh * kw * side * side) as f64
        })
        .collect();
    let forward: f64 = per.iter().sum();
    (forward, 3.0 * forward - per.first().copied().unwrap_or(0.0))
}

/// GFLOP/s of a 1024³ single-precision matrix product on the compute pool (best of 3): what
/// the same GEMM kernels reach on large, well-shaped matrices.
fn gemm_rate() -> f64 {
    use fedssl_ml::eval::linalg::{matmul, MatRef};
    let n = 1024;
    let a = vec![0.5f32; n * n];
    let b = vec![0.25f32; n * n];
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(matmul(MatRef::new(&a, n, n), MatRef::new(&b, n, n)));
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (n * n * n) as f64 / best * 1e-9
}

/// "x % short of 1.0×" or "x % ahead".
fn distance(ratio: f64) -> String {
    if ratio >= 1.0 {
        format!("{:.0} % ahead of 1.0×", (ratio - 1.0) * 100.0)
    } else {
        format!("{:.0} % short of 1.0×", (1.0 - ratio) * 100.0)
    }
}

/// Where the time of `per` repetitions taking `seconds` in all went, per kernel, with the
/// rest (projector, loss, optimizer, autodiff bookkeeping, allocation) as "other".
fn profile_summary(seconds: f64, per: usize) -> String {
    let per = per.max(1) as f64;
    let total_ms = seconds * 1e3 / per;
    let mut parts = Vec::new();
    let mut kernels = 0.0;
    for (op, s, calls) in profile::totals() {
        if calls == 0 {
            continue;
        }
        kernels += s;
        let ms = s * 1e3 / per;
        parts.push(format!(
            "{} {ms:.1} ms ({:.0} %)",
            op.label(),
            100.0 * ms / total_ms
        ));
    }
    let other = (seconds - kernels).max(0.0) * 1e3 / per;
    parts.push(format!(
        "other {other:.1} ms ({:.0} %)",
        100.0 * other / total_ms
    ));
    format!("{total_ms:.1} ms = {}", parts.join(", "))
}

/// Times `steps` training steps and `cfg.forward_batches` forward batches with `ops`.
fn time_ops(
    cfg: &TrainBench,
    mut model: SslModelB,
    x: &burn::prelude::Tensor<B, 2>,
    ops: Ops,
    steps: usize,
    profiled: bool,
) -> anyhow::Result<Timed> {
    let mut optim = optimizer::<B>();
    let mut step = |model: SslModelB| -> anyhow::Result<SslModelB> {
        let loss = simclr_loss_with(&model, x.clone(), TEMPERATURE, ops);
        anyhow::ensure!(scalar(&loss).is_finite(), "the loss is not finite");
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        Ok(optim.step(LR, model, grads))
    };
    info!(batch = cfg.batch, steps, ?ops, "timing training steps");
    for _ in 0..cfg.warmup.min(steps) {
        model = step(model)?;
    }
    profile::enable(profiled);
    let t = Instant::now();
    for _ in 0..steps {
        model = step(model)?;
    }
    let seconds = t.elapsed().as_secs_f64();
    let train_profile = profiled.then(|| profile_summary(seconds, steps));
    let train_ips = (cfg.batch * steps) as f64 / seconds;

    // Forward only (eval-mode encoder, one view).
    let enc = model.encoder.valid();
    let xb = x.clone().inner().slice(0..cfg.batch);
    let batches = if profiled {
        cfg.forward_batches
    } else {
        cfg.forward_batches.clamp(1, 5)
    };
    for _ in 0..2 {
        let _ = enc.forward_with(xb.clone(), BnMode::Eval, ops).into_data();
    }
    profile::enable(profiled);
    let t = Instant::now();
    for _ in 0..batches {
        let _ = enc.forward_with(xb.clone(), BnMode::Eval, ops).into_data();
    }
    let seconds = t.elapsed().as_secs_f64();
    let forward_profile = profiled.then(|| profile_summary(seconds, batches));
    profile::enable(false);
    Ok(Timed {
        train_ips,
        forward_ips: (cfg.batch * batches) as f64 / seconds,
        profile: train_profile.zip(forward_profile),
    })
}

fn run_torch(cfg: &TrainBench, weights: &Path, input: &Path) -> anyhow::Result<TorchResult> {
    let python = cfg
        .python
        .clone()
        .unwrap_or_else(|| PathBuf::from("python3"));
    super::run_python_reference(
        &python,
        &cfg.script,
        (weights, input),
        &[
            ("steps", cfg.steps.to_string()),
            ("warmup", cfg.warmup.to_string()),
            ("forward-batches", cfg.forward_batches.to_string()),
            ("temperature", TEMPERATURE.to_string()),
            ("lr", LR.to_string()),
        ],
        "PyTorch",
        "torch is not installed (pip install torch safetensors, or pass --python)",
    )
}
