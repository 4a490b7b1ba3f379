//! `fedssl bench dpsgd`: seconds per DP-SGD step of the GroupNorm ConvNet-S (denoising
//! autoencoder: per-image reconstruction loss) with fedssl's per-example kernels, side by
//! side with Opacus on PyTorch (`bench/opacus_reference.py`) on the same weights, batch,
//! machine and thread count, after checking that both compute the same loss; and each
//! side's non-private step of the same model, for the cost of privacy.
//!
//! Without `--python`, the bench makes a venv under its output folder and installs the
//! pinned `bench/requirements-opacus.txt` into it (torch is a large download).

use fedssl_ml::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use burn::backend::{Autodiff, Flex};
use burn::optim::{GradientsParams, Optimizer};
use serde::Deserialize;
use tracing::info;

use fedssl_client::dp_sgd::{privatized_gradient, StepInputs};
use fedssl_client::privacy::RoundPrivacy;
use fedssl_client::trainer::{init_model, optimizer, trainable_params};
use fedssl_kernels::Ops;
use fedssl_ml::data::synthetic;
use fedssl_ml::model::weights::WeightTensor;
use fedssl_ml::model::{scalar, Weights};
use fedssl_ml::ssl::{LossContext, ObjectiveKind, ViewMaker};
use fedssl_privacy::plan::{PrivacyMechanism, PrivacyPlan};
use fedssl_server::config::PlanConfig;

use super::table::{machine, num, Table};

type B = Autodiff<Flex>;

/// Settings of the DP-SGD benchmark.
#[derive(Debug, Clone)]
pub struct DpSgdBench {
    /// Records per step.
    pub batch: usize,
    /// Timed steps.
    pub steps: usize,
    /// Untimed warm-up steps.
    pub warmup: usize,
    /// Python with torch and opacus (None: a venv made under `out`).
    pub python: Option<PathBuf>,
    /// The reference script.
    pub script: PathBuf,
    /// Pinned requirements of the venv.
    pub requirements: PathBuf,
    /// Where weights, input, the venv and results go.
    pub out: PathBuf,
}

#[derive(Debug, Deserialize)]
struct Reference {
    torch_version: String,
    opacus_version: String,
    threads: usize,
    initial_loss: f64,
    plain_step_s: f64,
    dpsgd_step_s: f64,
}

const LR: f64 = 1e-3;
const SIGMA: f64 = 1.0;
const CLIP: f64 = 1.0;

/// Runs the benchmark.
pub fn run(cfg: &DpSgdBench) -> anyhow::Result<Table> {
    std::fs::create_dir_all(&cfg.out)?;
    let plan_cfg = PlanConfig {
        objective: ObjectiveKind::Denoising,
        batch_size: cfg.batch as u32,
        learning_rate: LR,
        privacy: PrivacyPlan {
            mechanism: PrivacyMechanism::DpSgd,
            noise_multiplier: Some(SIGMA),
            clip_norm: CLIP,
            ..PrivacyPlan::default()
        },
        ..PlanConfig::default()
    };
    plan_cfg.validate()?;
    let plan = plan_cfg.plan(1);
    let spec = &plan.model;
    let data = synthetic::generate(cfg.batch, 3).unlabeled();
    let idx: Vec<usize> = (0..cfg.batch).collect();
    let views = ViewMaker::for_shape(spec.shape, &plan.augment);
    let inputs = spec.objective.inputs(&data, &idx, &views, 7);
    let dev = Default::default();
    let model0 = init_model::<B>(spec, &dev, 1)?;

    // The batch and weights the reference loads.
    let weights = cfg.out.join("dpsgd-weights.safetensors");
    let input = cfg.out.join("dpsgd-input.safetensors");
    Weights::from_module(&model0).save(&weights)?;
    let clean = inputs.clean.clone().unwrap_or_else(|| inputs.x.clone());
    Weights {
        tensors: vec![
            WeightTensor {
                name: "x".into(),
                shape: vec![cfg.batch, 1, 28, 28],
                values: inputs.x.clone(),
            },
            WeightTensor {
                name: "clean".into(),
                shape: vec![cfg.batch, 784],
                values: clean,
            },
        ],
    }
    .save(&input)?;

    let loss_of = |m: &fedssl_ml::ssl::SslModel<B>| {
        let cx = LossContext {
            model: m,
            target: None,
            spec,
            ops: Ops::Kernels,
            device: &dev,
        };
        spec.objective.loss(plan.temperature, &cx, inputs.clone())
    };
    let initial_loss = scalar(&loss_of(&model0)) as f64;

    // fedssl, non-private.
    let mut model = model0.clone();
    let mut optim = optimizer::<B>();
    let mut plain = || {
        let loss = loss_of(&model);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(LR, model.clone(), grads);
    };
    let plain_s = time(cfg, &mut plain);

    // fedssl, DP-SGD: every record of the batch sampled, per-record clipping, exact noise.
    let privacy = RoundPrivacy::new(
        &plan,
        cfg.batch,
        trainable_params(spec)?,
        spec.initial_global(0)
            .map_err(anyhow::Error::msg)?
            .num_params(),
        1e-5,
    )?;
    let setup = privacy.dp_sgd.context("the bench's plan runs DP-SGD")?;
    let mut model = model0.clone();
    let mut optim = optimizer::<B>();
    let mut private = || -> anyhow::Result<()> {
        let cx = StepInputs {
            plan: &plan,
            target: None,
            device: &dev,
        };
        let (grads, _stats) =
            privatized_gradient(&model, &cx, &setup, &idx, None, |_| inputs.clone())?;
        model = optim.step(LR, model.clone(), grads);
        Ok(())
    };
    let dp_s = time_fallible(cfg, &mut private)?;

    let reference = run_reference(cfg, &weights, &input);
    let mut t = Table::new(
        "bench dpsgd: one step of the GroupNorm ConvNet-S denoising autoencoder, fedssl vs PyTorch + Opacus (same weights, batch, machine)",
        &[
            "step",
            "fedssl s",
            "fedssl images/s",
            "reference s",
            "reference images/s",
            "fedssl speed / reference",
        ],
    );
    let ips = |s: f64| cfg.batch as f64 / s;
    let (ref_plain, ref_dp) = match &reference {
        Ok(r) => (Some(r.plain_step_s), Some(r.dpsgd_step_s)),
        Err(_) => (None, None),
    };
    for (name, ours, theirs) in [
        ("non-private (PyTorch)", plain_s, ref_plain),
        ("DP-SGD (Opacus)", dp_s, ref_dp),
    ] {
        t.row(vec![
            name.into(),
            num(Some(ours), 3),
            num(Some(ips(ours)), 0),
            num(theirs, 3),
            num(theirs.map(ips), 0),
            theirs
                .map(|s| format!("{:.2}×", s / ours))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    t.row(vec![
        "DP-SGD cost / non-private".into(),
        format!("{:.2}×", dp_s / plain_s),
        "-".into(),
        ref_dp
            .zip(ref_plain)
            .map(|(d, p)| format!("{:.2}×", d / p))
            .unwrap_or_else(|| "-".into()),
        "-".into(),
        "-".into(),
    ]);
    t.note(format!(
        "batch {} images of 28×28, {} timed steps after {} warm-up; σ = {SIGMA}, C = {CLIP}, Adam lr {LR}; fedssl: per-example norms in one backward pass, exact discrete Gaussian noise on all {} parameters; Opacus: per-sample gradients by hooks (GradSampleModule), DPOptimizer",
        cfg.batch, cfg.steps, cfg.warmup, setup.dim
    ));
    match &reference {
        Ok(r) => {
            t.note(format!(
                "initial loss: fedssl {initial_loss:.6}, PyTorch {:.6} (same model and batch)",
                r.initial_loss
            ));
            t.note(format!(
                "reference: torch {}, opacus {}, {} threads",
                r.torch_version, r.opacus_version, r.threads
            ));
        }
        Err(e) => t.note(format!("reference not run: {e:#}")),
    }
    t.note(format!("machine: {}", machine()));
    Ok(t)
}

fn time(cfg: &DpSgdBench, step: &mut impl FnMut()) -> f64 {
    for _ in 0..cfg.warmup {
        step();
    }
    let t = Instant::now();
    for _ in 0..cfg.steps {
        step();
    }
    t.elapsed().as_secs_f64() / cfg.steps.max(1) as f64
}

fn time_fallible(
    cfg: &DpSgdBench,
    step: &mut impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    for _ in 0..cfg.warmup {
        step()?;
    }
    let t = Instant::now();
    for _ in 0..cfg.steps {
        step()?;
    }
    Ok(t.elapsed().as_secs_f64() / cfg.steps.max(1) as f64)
}

/// The venv's python, made and filled with the pinned requirements on first use.
fn reference_python(cfg: &DpSgdBench) -> anyhow::Result<PathBuf> {
    if let Some(p) = &cfg.python {
        return Ok(p.clone());
    }
    let venv = cfg.out.join("venv-opacus");
    let python = venv.join("bin/python");
    if !python.exists() {
        info!(venv = %venv.display(), "making a venv with torch and opacus for the reference (a large download)");
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("cannot run python3 -m venv")?
            .success();
        anyhow::ensure!(ok, "python3 -m venv {} failed", venv.display());
    }
    let ok = Command::new(&python)
        .args(["-m", "pip", "install", "-q", "-r"])
        .arg(&cfg.requirements)
        .status()
        .context("cannot run pip")?
        .success();
    anyhow::ensure!(ok, "pip install -r {} failed", cfg.requirements.display());
    Ok(python)
}

fn run_reference(cfg: &DpSgdBench, weights: &Path, input: &Path) -> anyhow::Result<Reference> {
    let python = reference_python(cfg)?;
    super::run_python_reference(
        &python,
        &cfg.script,
        (weights, input),
        &[
            ("steps", cfg.steps.to_string()),
            ("warmup", cfg.warmup.to_string()),
            ("lr", LR.to_string()),
            ("sigma", SIGMA.to_string()),
            ("clip", CLIP.to_string()),
        ],
        "Opacus",
        "torch or opacus is not installed (pass --python, or let the bench make its venv)",
    )
}
