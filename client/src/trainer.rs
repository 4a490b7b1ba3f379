//! Local self-supervised training: the plan's objective on the site's samples, starting
//! from the global model merged into the site's own ([`crate::federation`]).

use fedssl_kernels::{AutodiffKernels, Ops};
use fedssl_ml::prelude::*;
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
use rand_chacha::{ChaCha20Rng, ChaCha8Rng};
use tracing::warn;

use fedssl_core::device::ComputeDevice;
use fedssl_ml::data::Dataset;
use fedssl_ml::model::ema::ema_update;
use fedssl_ml::model::{scalar, ModelSpec, Weights};
use fedssl_ml::ssl::SslModel;
use fedssl_ml::ssl::{LossContext, ViewMaker};
use fedssl_protocol::RoundPlan;

use crate::dp_sgd;
use crate::federation::{merge, MergeReport};

/// What a round of local training produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The global tensors after training (what the update is computed from).
    pub global: Weights,
    /// The whole model after training (kept on the site for its next round).
    pub local: Weights,
    /// The momentum target after training (BYOL), kept on the site.
    pub target: Option<Weights>,
    /// How the global model was merged into the site's.
    pub merge: MergeReport,
    /// Mean loss over all steps.
    pub mean_loss: f32,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Inputs of one round of local training.
pub struct TrainJob<'a> {
    /// The global model (the plan's global tensors).
    pub global: &'a Weights,
    /// The site's whole model from its previous round, if any.
    pub local: Option<&'a Weights>,
    /// The site's momentum target from its previous round (BYOL), if any.
    pub target: Option<&'a Weights>,
    /// The site's FedEMA λ, once set.
    pub lambda: Option<f64>,
    /// Unlabeled local data.
    pub data: &'a Dataset,
    /// Round hyper-parameters.
    pub plan: &'a RoundPlan,
    /// Mixed into the plan's seed so sites draw different views.
    pub site_seed: u64,
    /// Record-level DP-SGD (the plan's mechanism on this site), or plain training.
    pub dp_sgd: Option<crate::privacy::DpSgdSetup>,
    /// Progress bar advanced once per step.
    pub progress: Option<ProgressBar>,
}

/// Runs local training on the requested device.
pub fn train(device: ComputeDevice, job: TrainJob<'_>) -> anyhow::Result<TrainOutcome> {
    match device {
        ComputeDevice::Cpu => train_on::<Autodiff<Flex>>(Default::default(), job),
        #[cfg(feature = "cuda")]
        ComputeDevice::Cuda(i) => {
            let dev = burn::backend::cuda::CudaDevice::new(i);
            train_on::<Autodiff<burn::backend::Cuda>>(dev, job)
        }
        // `device::resolve` maps CUDA to the CPU in a build without the `cuda` feature.
        #[cfg(not(feature = "cuda"))]
        ComputeDevice::Cuda(i) => anyhow::bail!(
            "device cuda:{i}: this fedssl build has no CUDA support; rebuild with \
             `cargo build --release --features cuda`"
        ),
    }
}

/// Number of optimizer steps a round takes on `n` samples.
pub fn steps_per_round(n: usize, plan: &RoundPlan) -> usize {
    let bs = (plan.batch_size as usize).min(n).max(1);
    (n / bs).max(1) * plan.local_epochs as usize
}

/// BYOL's settings when the plan trains BYOL (only BYOL keeps a momentum target).
fn byol_settings(plan: &RoundPlan) -> fedssl_ml::ssl::Byol {
    match plan.model.objective {
        fedssl_ml::ssl::Objective::Byol(b) => b,
        _ => fedssl_ml::ssl::Byol::default(),
    }
}

/// Number of trainable parameters of `spec`'s whole model (what DP-SGD noises).
pub fn trainable_params(spec: &ModelSpec) -> anyhow::Result<usize> {
    let model = init_model::<Flex>(spec, &Default::default(), 0)?;
    Ok(model.num_params())
}

/// A fresh model for `spec`, seeded.
pub fn init_model<B: Backend>(
    spec: &ModelSpec,
    dev: &B::Device,
    seed: u64,
) -> anyhow::Result<SslModel<B>> {
    spec.init_seeded::<B>(dev, seed).map_err(anyhow::Error::msg)
}

/// The optimizer every local step uses: Adam, ε = 1e-8 (PyTorch's default).
pub fn optimizer<B: AutodiffBackend>() -> impl Optimizer<SslModel<B>, B> {
    AdamConfig::new()
        .with_epsilon(1e-8)
        .init::<B, SslModel<B>>()
}

/// Checks that the site's data fit the plan's model.
pub fn check_data(data: &Dataset, plan: &RoundPlan) -> anyhow::Result<()> {
    let spec = &plan.model;
    if data.shape != spec.shape {
        bail!(
            "this site's data are {}, but the server trains on {} (check the data source and the server's plan.data)",
            data.shape,
            spec.shape
        );
    }
    plan.model
        .objective
        .fits(data.shape)
        .map_err(anyhow::Error::msg)?;
    let n = data.len();
    if n < 2 {
        bail!("this site has {n} training samples; every objective compares or normalizes over a batch, so at least 2 are needed");
    }
    Ok(())
}

/// FedProx: after an optimizer step, w ← w − η·μ·(w − w_global) for every shared tensor:
/// the gradient step of μ/2·‖w − w_global‖², taken apart from Adam's scaling (as AdamW does
/// for weight decay). The proximal term involves no data, so it changes nothing in the
/// privacy accounting. A no-op when the plan's μ is 0. It copies the shared tensors through
/// host memory once per step.
pub fn proximal_step<B: burn::tensor::backend::Backend, M: burn::module::Module<B>>(
    model: M,
    global: &Weights,
    plan: &RoundPlan,
) -> anyhow::Result<M> {
    let a = (plan.learning_rate * plan.proximal_mu) as f32;
    if a == 0.0 {
        return Ok(model);
    }
    let anchor: std::collections::HashMap<&str, &[f32]> = global
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.values.as_slice()))
        .collect();
    let mut cur = Weights::from_module(&model).filtered(|n| anchor.contains_key(n));
    for t in &mut cur.tensors {
        if let Some(g) = anchor.get(t.name.as_str()) {
            anyhow::ensure!(
                g.len() == t.values.len(),
                "the global tensor {} does not match the model",
                t.name
            );
            for (x, &gx) in t.values.iter_mut().zip(g.iter()) {
                *x -= a * (*x - gx);
            }
        }
    }
    cur.load_into(model)
        .context("FedProx: cannot write the proximal step back into the model")
}

/// Local training on backend `B`.
pub fn train_on<B: AutodiffKernels>(
    dev: B::Device,
    job: TrainJob<'_>,
) -> anyhow::Result<TrainOutcome> {
    let start = Instant::now();
    let plan = job.plan;
    check_data(job.data, plan)?;
    let spec = &plan.model;
    let n = job.data.len();
    let seed = plan.seed ^ job.site_seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut model = init_model::<B>(spec, &dev, seed)?;
    // The site's own model from its previous round (heads, local BatchNorm, encoder for
    // FedEMA); one saved under another plan does not fit and is started afresh.
    let mut local = job.local;
    if let Some(w) = local {
        match w.load_into(model.clone()) {
            Ok(m) => model = m,
            Err(e) => {
                warn!("the saved local model does not fit this plan ({e}); starting its local parts afresh");
                local = None;
            }
        }
    }
    let (start_weights, merge_report) =
        merge(plan.federation, spec, job.global, local, job.lambda)?;
    model = start_weights
        .load_into(model)
        .context("the global model does not fit the plan's model")?;
    let heads = spec.objective.heads();
    let mut target = if heads.target {
        let fresh = model.clone().no_grad();
        Some(match job.target.map(|w| w.load_into(fresh.clone())) {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                warn!("the saved target network does not fit ({e}); starting it from the online network");
                fresh
            }
            None => fresh,
        })
    } else {
        None
    };
    let mut optim = optimizer::<B>();
    let views = ViewMaker::for_shape(spec.shape, &plan.augment);
    let bs = (plan.batch_size as usize).min(n);
    if n < plan.batch_size as usize {
        warn!(
            samples = n,
            batch_size = plan.batch_size,
            "this site has fewer samples than one batch; training with batches of {n} (the objective {} needs at least 2)",
            spec.objective
        );
    }
    let (mut loss_sum, mut steps) = (0.0f64, 0usize);
    let mut loss_steps = 0usize;
    if let Some(setup) = job.dp_sgd {
        // Record-level DP-SGD: Poisson samples from an OS-seeded generator (kept secret:
        // amplification by sampling depends on it), per-record clipping, exact noise.
        let mut sampler = ChaCha20Rng::from_rng(rand::rngs::OsRng)
            .map_err(|e| anyhow::anyhow!("the operating system gave no entropy: {e}"))?;
        let total_steps = setup.steps as usize;
        let mut seen = dp_sgd::StepStats::default();
        for step in 0..total_steps {
            let sampled = dp_sgd::poisson_sample(&mut sampler, n, setup.sampling_rate);
            let labels = (setup.unit == fedssl_ml::ssl::DpUnit::Group)
                .then(|| dp_sgd::group_labels(&mut sampler, sampled.len(), setup.groups));
            let step_seed = seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let cx = dp_sgd::StepInputs {
                plan,
                target: target.as_ref(),
                device: &dev,
            };
            let (grads, stats) = dp_sgd::privatized_gradient(
                &model,
                &cx,
                &setup,
                &sampled,
                labels.as_deref(),
                |idx| spec.objective.inputs(job.data, idx, &views, step_seed),
            )?;
            let value = stats.mean_loss;
            seen.records += stats.records;
            seen.units += stats.units;
            seen.clipped += stats.clipped;
            seen.norm_sum += stats.norm_sum;
            if !sampled.is_empty() {
                if !value.is_finite() {
                    bail!("local training diverged (loss {value}) at DP-SGD step {step}; lower the learning rate");
                }
                loss_sum += value as f64;
                loss_steps += 1;
            }
            model = optim.step(plan.learning_rate, model, grads);
            model = proximal_step(model, job.global, plan)?;
            steps += 1;
            if let Some(t) = target.take() {
                let tau = byol_settings(plan).momentum(steps, total_steps);
                target = Some(ema_update(t, &model, tau));
            }
            if let Some(p) = &job.progress {
                p.inc(1);
                p.set_message(format!("loss {value:.3}"));
            }
        }
        tracing::info!(
            steps = total_steps,
            records = seen.records,
            clipped = format!(
                "{:.0}%",
                100.0 * seen.clipped as f64 / seen.units.max(1) as f64
            ),
            mean_norm = format!("{:.3}", seen.norm_sum / seen.units.max(1) as f64),
            clip_norm = setup.clip_norm,
            sigma = format!("{:.3}", setup.noise_multiplier()),
            "DP-SGD round: gradient norms per clipped unit (stay on the site)"
        );
    } else {
        let total_steps = steps_per_round(n, plan);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..n).collect();
        for epoch in 0..plan.local_epochs {
            order.shuffle(&mut rng);
            for (b, idx) in order.chunks(bs).enumerate() {
                if idx.len() < bs.max(2) && b > 0 {
                    continue; // drop a short last batch: too few samples to compare
                }
                let step_seed = seed ^ ((epoch as u64) << 32 | b as u64);
                let inputs = spec.objective.inputs(job.data, idx, &views, step_seed);
                let cx = LossContext {
                    model: &model,
                    target: target.as_ref(),
                    spec,
                    ops: Ops::Kernels,
                    device: &dev,
                };
                let loss = spec.objective.loss(plan.temperature, &cx, inputs);
                let value = scalar(&loss);
                if !value.is_finite() {
                    bail!("local training diverged (loss {value}) in epoch {epoch}, batch {b}; lower the learning rate");
                }
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(plan.learning_rate, model, grads);
                model = proximal_step(model, job.global, plan)?;
                steps += 1;
                if let Some(t) = target.take() {
                    let tau = byol_settings(plan).momentum(steps, total_steps);
                    target = Some(ema_update(t, &model, tau));
                }
                loss_sum += value as f64;
                loss_steps += 1;
                if let Some(p) = &job.progress {
                    p.inc(1);
                    p.set_message(format!("loss {value:.3}"));
                }
            }
        }
    }
    Ok(TrainOutcome {
        global: spec.global(&model),
        local: Weights::from_module(&model),
        target: target.as_ref().map(Weights::from_module),
        merge: merge_report,
        mean_loss: (loss_sum / loss_steps.max(1) as f64) as f32,
        steps,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// SimCLR's loss on a batch of flat samples holding two views (first half, second half) of
/// each sample, with the chosen implementation of the encoder's operations (the benchmark
/// and the kernel tests compare [`Ops::Kernels`] with [`Ops::Burn`] on it).
pub fn simclr_loss_with<B: fedssl_kernels::Kernels>(
    model: &SslModel<B>,
    x: Tensor<B, 2>,
    temperature: f64,
    ops: Ops,
) -> Tensor<B, 1> {
    let k = x.dims()[0] / 2;
    let z = model.project(x, fedssl_ml::model::BnMode::Train, ops);
    fedssl_ml::ssl::nt_xent(z.clone().slice(0..k), z.slice(k..2 * k), temperature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedssl_ml::data::{records, sensors, synthetic, SampleShape};
    use fedssl_ml::model::convnet::is_bn_statistic;
    use fedssl_ml::model::{BatchNormPlacement, Parts};
    use fedssl_ml::ssl::pairs::two_views;
    use fedssl_ml::ssl::{AugmentConfig, Augmenter, ObjectiveKind};
    use fedssl_server::config::PlanConfig;

    fn plan_for(objective: ObjectiveKind, shape: SampleShape, epochs: u32) -> RoundPlan {
        PlanConfig {
            local_epochs: epochs,
            batch_size: 32,
            learning_rate: 2e-3,
            temperature: 0.2,
            seed: 5,
            objective,
            data: shape,
            // Colour images train the ResNet (narrow, to stay quick).
            encoder: matches!(shape, SampleShape::Image { channels: 3, .. })
                .then_some(fedssl_ml::model::EncoderConfig::Resnet { width: 8 }),
            // Plain training (no DP-SGD) of the BatchNorm models.
            norm: Some(fedssl_ml::model::Norm::Batch),
            ..PlanConfig::default()
        }
        .plan(1)
    }

    fn run(data: &Dataset, plan: &RoundPlan, target: Option<&Weights>) -> TrainOutcome {
        let global = plan.model.initial_global(1).unwrap();
        train(
            ComputeDevice::Cpu,
            TrainJob {
                global: &global,
                local: None,
                target,
                lambda: None,
                data,
                plan,
                site_seed: 1,
                dp_sgd: None,
                progress: None,
            },
        )
        .unwrap()
    }

    /// Ten Adam steps from the same start on the same views: the loss curve with fedssl's
    /// kernels follows the one with burn's ops.
    #[test]
    fn loss_curve_matches_burn_ops() {
        type A = Autodiff<Flex>;
        let data = synthetic::generate(32, 9).unlabeled();
        let views = ViewMaker::Image(Augmenter::new(AugmentConfig::default()));
        let idx: Vec<usize> = (0..32).collect();
        let curve = |ops: Ops| {
            let dev = Default::default();
            let mut model = init_model::<A>(&ModelSpec::default(), &dev, 5).unwrap();
            let mut optim = optimizer::<A>();
            let mut losses = Vec::new();
            for step in 0..10 {
                let x = two_views(&data, &idx, &views, step).x_tensor::<A>(&dev);
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

    /// Every objective, on a modality it fits: more local steps on structured data reach a
    /// lower mean loss, the encoder moves, and the heads exist as the objective declares.
    #[test]
    fn every_objective_lowers_its_loss_on_structured_data() {
        let images = synthetic::generate(64, 3).unlabeled();
        let series = sensors::generate(64, 6, 64, 3).unlabeled();
        let table = records::generate(64, 16, 3).unlabeled();
        let text = fedssl_ml::data::topics::generate(64, 32, 3).unlabeled();
        let rgb = fedssl_ml::data::synthetic::generate_shaped(
            64,
            SampleShape::Image {
                channels: 3,
                height: 32,
                width: 32,
            },
            3,
        )
        .unlabeled();
        let cases = [
            (ObjectiveKind::SimClr, &images),
            (ObjectiveKind::SimSiam, &images),
            (ObjectiveKind::VicReg, &images),
            (ObjectiveKind::Byol, &images),
            (ObjectiveKind::Masked, &images),
            (ObjectiveKind::Denoising, &images),
            (ObjectiveKind::Masked, &series),
            (ObjectiveKind::Cpc, &series),
            (ObjectiveKind::Clip, &series),
            (ObjectiveKind::SimClr, &table),
            (ObjectiveKind::Denoising, &table),
            (ObjectiveKind::Clip, &table),
            (ObjectiveKind::Masked, &text),
            (ObjectiveKind::SimClr, &rgb),
            (ObjectiveKind::Masked, &rgb),
            // The jigsaw needs more than 12 steps to leave chance (ln 24) on 64 shapes;
            // tests/objectives.rs trains it federated and checks its probe.
            (ObjectiveKind::Reorder, &series),
        ];
        for (objective, data) in cases {
            let what = format!("{objective} on {}", data.shape);
            let first = run(data, &plan_for(objective, data.shape, 1), None);
            let plan = plan_for(objective, data.shape, 6);
            let out = run(data, &plan, None);
            assert_eq!(out.steps, 12, "{what}");
            assert!(out.mean_loss.is_finite(), "{what}");
            assert!(
                out.mean_loss < first.mean_loss,
                "{what}: {} !< {}",
                out.mean_loss,
                first.mean_loss
            );
            let start = plan.model.initial_global(1).unwrap();
            assert!(out.global.sub(&start).unwrap().l2_norm() > 0.0, "{what}");
            let heads = plan.model.objective.heads();
            assert_eq!(out.target.is_some(), heads.target, "{what}");
            let has = |p: &str| out.local.tensors.iter().any(|t| t.name.starts_with(p));
            assert_eq!(has("predictor."), heads.predictor, "{what}");
            assert_eq!(has("decoder."), heads.decoder, "{what}");
            assert_eq!(has("context."), heads.context, "{what}");
            assert_eq!(has("partner."), heads.partner, "{what}");
        }
    }

    /// BYOL's target starts as the online network, trails it by EMA, and continues from
    /// the saved one in the next round.
    #[test]
    fn byol_target_trails_the_online_network_across_rounds() {
        let data = synthetic::generate(64, 4).unlabeled();
        let plan = plan_for(ObjectiveKind::Byol, SampleShape::GRAY_28, 1);
        let first = run(&data, &plan, None);
        let t1 = first.target.clone().unwrap();
        let enc = |w: &Weights| w.filtered(|n| n.starts_with("encoder.") && !is_bn_statistic(n));
        let online = enc(&first.local);
        let start = plan.model.initial_global(1).unwrap();
        let d_online = online.sub(&enc(&start)).unwrap().l2_norm();
        let d_target = enc(&t1).sub(&enc(&start)).unwrap().l2_norm();
        // τ ≥ 0.99: the target moved, by much less than the online network.
        assert!(
            d_target > 0.0 && d_target < 0.1 * d_online,
            "{d_target} vs {d_online}"
        );
        let second = run(&data, &plan, Some(&t1));
        let t2 = second.target.unwrap();
        let from_saved = enc(&t2).sub(&enc(&t1)).unwrap().l2_norm();
        let from_start = enc(&t2).sub(&enc(&start)).unwrap().l2_norm();
        assert!(from_saved < from_start, "{from_saved} vs {from_start}");
    }

    /// The declared parts decide which tensors are global.
    #[test]
    fn declared_parts_decide_what_is_sent() {
        let data = synthetic::generate(32, 4).unlabeled();
        let mut plan = plan_for(ObjectiveKind::SimSiam, SampleShape::GRAY_28, 1);
        let names = |plan: &RoundPlan| -> Vec<String> {
            run(&data, plan, None)
                .global
                .tensors
                .into_iter()
                .map(|t| t.name)
                .collect()
        };
        let default = names(&plan);
        assert!(default.iter().all(|n| n.starts_with("encoder.")));
        assert!(default.iter().any(|n| n.ends_with("bn.gamma")));
        assert!(!default.iter().any(|n| n.ends_with("running_mean")));
        plan.model.parts = Parts {
            projector: fedssl_ml::model::Placement::Global,
            predictor: fedssl_ml::model::Placement::Global,
            batch_norm: BatchNormPlacement::Local,
        };
        let fedbn = names(&plan);
        assert!(fedbn.iter().any(|n| n.starts_with("projector.")));
        assert!(fedbn.iter().any(|n| n.starts_with("predictor.")));
        assert!(!fedbn.iter().any(|n| n.contains("bn.")), "{fedbn:?}");
        plan.model.parts.batch_norm = BatchNormPlacement::Global;
        assert!(names(&plan).iter().any(|n| n.ends_with("running_var")));
    }

    /// FedProx's step by hand: with η·μ = 0.5 every shared value moves halfway to the
    /// global one; local-only tensors (BatchNorm statistics) are untouched; μ = 0 is a no-op.
    #[test]
    fn the_proximal_step_moves_halfway_to_the_global_model() {
        type B = Autodiff<Flex>;
        let dev = Default::default();
        let mut plan = plan_for(ObjectiveKind::SimClr, SampleShape::GRAY_28, 1);
        let model = init_model::<B>(&plan.model, &dev, 1).unwrap();
        let global = Weights::global_from_module(&init_model::<B>(&plan.model, &dev, 2).unwrap());
        let before = Weights::from_module(&model);
        let same = proximal_step(model.clone(), &global, &plan).unwrap();
        assert_eq!(Weights::from_module(&same), before, "μ = 0 changes nothing");
        plan.learning_rate = 0.5;
        plan.proximal_mu = 1.0;
        let after = Weights::from_module(&proximal_step(model, &global, &plan).unwrap());
        let g: std::collections::HashMap<&str, &[f32]> = global
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.values.as_slice()))
            .collect();
        for (a, b) in after.tensors.iter().zip(&before.tensors) {
            match g.get(a.name.as_str()) {
                Some(gv) => {
                    for ((x, x0), gx) in a.values.iter().zip(&b.values).zip(gv.iter()) {
                        assert!((x - (x0 + gx) / 2.0).abs() < 1e-6, "{}", a.name);
                    }
                }
                None => assert_eq!(a.values, b.values, "{} is local", a.name),
            }
        }
    }
}
