//! Record-level DP-SGD (Abadi et al. 2016) on a site: each step draws a Poisson sample of
//! the site's records with rate q, clips each sampled record's gradient to L2 norm C, sums,
//! adds N(0, σ²C²) per coordinate from the exact sampler, divides by the expected batch q·n
//! and takes an optimizer step. Everything the site trains is noised (local heads too: the
//! global encoder's later gradients depend on them), so every model state, and the update
//! the site uploads, is post-processing of the noised steps.
//!
//! Two ways to the clipped sum, same result:
//! - [`clipped_sum_per_example`]: one forward and one backward pass over a chunk of records
//!   with fedssl's per-example kernels ([`fedssl_kernels::per_example`]), on the CPU
//!   backend for encoders built from convolutions, linear layers and group normalization;
//! - [`clipped_sum_one_at_a_time`]: one forward and backward pass per record (microbatches
//!   of one), on any backend and model: the CUDA path, the Transformer's, and the reference
//!   the tests hold the first against.
//!
//! Poisson sampling draws from ChaCha20 seeded by the operating system: amplification by
//! sampling assumes nobody outside the site learns which records a step used.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use fedssl_ml::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha20Rng;

use fedssl_kernels::{per_example, AutodiffKernels, Kernels};
use fedssl_ml::data::SampleShape;
use fedssl_ml::model::{scalar, EncoderConfig};
use fedssl_ml::ssl::SslModel;
use fedssl_ml::ssl::{Inputs, LossContext};
use fedssl_protocol::RoundPlan;

use crate::privacy::DpSgdSetup;

/// Records per forward / backward pass of the per-example path (bounds activation memory;
/// clipping is per record, so chunking changes nothing in the result).
pub const CHUNK_RECORDS: usize = 256;

/// Flat gradients of every float parameter of a model, in visit order.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatGrads {
    /// `(parameter id, shape, values)`.
    pub params: Vec<(ParamId, Vec<usize>, Vec<f32>)>,
}

impl FlatGrads {
    /// Zeros shaped like `model`'s float parameters.
    pub fn zeros<B: Backend, M: Module<B>>(model: &M) -> Self {
        struct Shapes(Vec<(ParamId, Vec<usize>, Vec<f32>)>);
        impl<B: Backend> ModuleVisitor<B> for Shapes {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let shape = p.val().dims().to_vec();
                let n = shape.iter().product();
                self.0.push((p.id, shape, vec![0.0; n]));
            }
        }
        let mut s = Shapes(Vec::new());
        model.visit(&mut s);
        Self { params: s.0 }
    }

    /// Adds `scale ×` the gradients of `model`'s parameters found in `grads`.
    pub fn add_scaled<B: AutodiffBackend, M: Module<B>>(
        &mut self,
        model: &M,
        grads: &B::Gradients,
        scale: f32,
    ) {
        struct Add<'a, B: AutodiffBackend> {
            grads: &'a B::Gradients,
            out: std::slice::IterMut<'a, (ParamId, Vec<usize>, Vec<f32>)>,
            scale: f32,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Add<'_, B> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let Some((_, _, acc)) = self.out.next() else {
                    return;
                };
                if let Some(g) = p.val().grad(self.grads) {
                    let v: Vec<f32> = g.into_data().convert::<f32>().to_vec().unwrap_or_default();
                    for (a, x) in acc.iter_mut().zip(v) {
                        *a += self.scale * x;
                    }
                }
            }
        }
        model.visit(&mut Add::<B> {
            grads,
            out: self.params.iter_mut(),
            scale,
        });
    }

    /// The L2 norm over every parameter.
    pub fn norm(&self) -> f64 {
        self.values()
            .map(|&x| x as f64 * x as f64)
            .sum::<f64>()
            .sqrt()
    }

    /// Every value, parameter after parameter.
    pub fn values(&self) -> impl Iterator<Item = &f32> {
        self.params.iter().flat_map(|(_, _, v)| v)
    }

    /// The number of coordinates.
    pub fn len(&self) -> usize {
        self.params.iter().map(|(_, _, v)| v.len()).sum()
    }

    /// Whether there are no coordinates.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn add(&mut self, other: &FlatGrads) {
        for ((_, _, a), (_, _, b)) in self.params.iter_mut().zip(&other.params) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }

    /// The gradients of `model`'s parameters as burn's optimizer takes them.
    pub fn into_params<B: AutodiffBackend, M: Module<B>>(
        self,
        model: &M,
        dev: &B::Device,
    ) -> GradientsParams {
        struct Build<'a, B: AutodiffBackend> {
            it: std::vec::IntoIter<(ParamId, Vec<usize>, Vec<f32>)>,
            out: GradientsParams,
            dev: &'a B::Device,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Build<'_, B> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let Some((id, shape, values)) = self.it.next() else {
                    return;
                };
                if id != p.id {
                    return;
                }
                let t = Tensor::<B::InnerBackend, D>::from_data(
                    TensorData::new(values, shape),
                    self.dev,
                );
                self.out.register::<B::InnerBackend, D>(id, t);
            }
        }
        let mut b = Build::<B> {
            it: self.params.into_iter(),
            out: GradientsParams::new(),
            dev,
        };
        model.visit(&mut b);
        b.out
    }
}

/// A batch's clipped gradient sum and what it saw.
#[derive(Debug, Clone)]
pub struct ClippedSum {
    /// `Σ_u min(1, C/‖g_u‖)·g_u` over the clipped units (records, or groups of records).
    pub sum: FlatGrads,
    /// `‖g_u‖` per unit.
    pub norms: Vec<f64>,
    /// Each unit's loss.
    pub losses: Vec<f32>,
}

/// Everything a loss needs besides the model.
pub struct StepInputs<'a, B: AutodiffKernels> {
    /// The round's plan.
    pub plan: &'a RoundPlan,
    /// The momentum target (BYOL).
    pub target: Option<&'a SslModel<B>>,
    /// The device.
    pub device: &'a B::Device,
}

/// The units a batch's records are clipped in: record r belongs to unit `of_record[r]`.
#[derive(Debug, Clone)]
pub struct Units {
    /// Unit of each record of the batch.
    pub of_record: Vec<u32>,
    /// Number of units.
    pub count: usize,
    /// Units are groups of records (the objective's group losses) rather than records.
    pub grouped: bool,
}

impl Units {
    /// One unit per record.
    pub fn records(n: usize) -> Self {
        Self {
            of_record: (0..n as u32).collect(),
            count: n,
            grouped: false,
        }
    }
}

fn clip_factor(norm: f64, clip: f64) -> f32 {
    if norm > clip {
        (clip / norm) as f32
    } else {
        1.0
    }
}

/// The clipped sum over the units of `inputs` (all of them in one pass) with the
/// per-example kernels.
pub fn clipped_sum_per_example<B: AutodiffKernels>(
    model: &SslModel<B>,
    cx: &StepInputs<'_, B>,
    inputs: Inputs,
    units: &Units,
    clip: f64,
) -> anyhow::Result<ClippedSum> {
    let plan = cx.plan;
    let spec = &plan.model;
    let per = spec.objective.rows_per_record(spec.shape);
    let records = inputs.rows / per.max(1);
    anyhow::ensure!(units.of_record.len() == records, "one unit per record");
    let lcx = LossContext {
        model,
        target: cx.target,
        spec,
        ops: fedssl_kernels::Ops::Kernels,
        device: cx.device,
    };
    let losses = if units.grouped {
        spec.objective.group_losses(
            plan.temperature,
            &lcx,
            inputs,
            &units.of_record,
            units.count,
        )
    } else {
        spec.objective.record_losses(plan.temperature, &lcx, inputs)
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let loss_values: Vec<f32> = losses
        .clone()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap_or_default();
    let owner: Vec<u32> = (0..records * per)
        .map(|i| units.of_record[i % records])
        .collect();
    let (mut grads, pe) = per_example::collect(owner, units.count, || losses.sum().backward());
    // Every parameter's gradient must come from the per-example kernels: one that got a
    // gradient from anywhere else would be summed without clipping.
    struct Stray<'a, B: AutodiffBackend> {
        grads: &'a B::Gradients,
        found: usize,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Stray<'_, B> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            if p.val().grad(self.grads).is_some() {
                self.found += 1;
            }
        }
    }
    let mut stray = Stray::<B> {
        grads: &grads,
        found: 0,
    };
    model.visit(&mut stray);
    anyhow::ensure!(
        stray.found == 0,
        "{} parameter(s) of the model got a gradient outside fedssl's per-example kernels; this model cannot use the per-example path",
        stray.found
    );
    let norms: Vec<f64> = pe.sq_norms.iter().map(|s| s.sqrt()).collect();
    let factors: Vec<f32> = norms.iter().map(|&n| clip_factor(n, clip)).collect();
    pe.finish(&factors, &mut grads)
        .map_err(|e| anyhow::anyhow!("per-example gradients: {e}"))?;
    let mut sum = FlatGrads::zeros(model);
    sum.add_scaled::<B, _>(model, &grads, 1.0);
    Ok(ClippedSum {
        sum,
        norms,
        losses: loss_values,
    })
}

/// The rows of `inputs` that belong to `members` of `records` (`per` rows each,
/// view-major), in the same layout.
fn member_rows(inputs: &Inputs, members: &[usize], records: usize, per: usize) -> Inputs {
    let d = inputs.dim;
    let pick = |v: &Vec<f32>| -> Vec<f32> {
        (0..per)
            .flat_map(|k| {
                members.iter().flat_map(move |&r| {
                    let row = k * records + r;
                    v[row * d..(row + 1) * d].iter().copied()
                })
            })
            .collect()
    };
    Inputs {
        x: pick(&inputs.x),
        rows: per * members.len(),
        dim: d,
        clean: inputs.clean.as_ref().map(pick),
        mask: inputs.mask.as_ref().map(pick),
        // One class per record, not per row.
        targets: inputs
            .targets
            .as_ref()
            .map(|t| members.iter().filter_map(|&r| t.get(r).copied()).collect()),
    }
}

/// The clipped sum over the units of `inputs`, one forward and backward pass per unit with
/// the objective's ordinary loss on the unit's records (any backend, any model).
pub fn clipped_sum_one_at_a_time<B: AutodiffKernels>(
    model: &SslModel<B>,
    cx: &StepInputs<'_, B>,
    inputs: Inputs,
    units: &Units,
    clip: f64,
    ops: fedssl_kernels::Ops,
) -> anyhow::Result<ClippedSum> {
    let plan = cx.plan;
    let spec = &plan.model;
    let per = spec.objective.rows_per_record(spec.shape);
    let records = inputs.rows / per.max(1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); units.count];
    for (r, &u) in units.of_record.iter().enumerate() {
        members[u as usize].push(r);
    }
    let mut sum = FlatGrads::zeros(model);
    let (mut norms, mut losses) = (Vec::new(), Vec::new());
    for m in &members {
        // A group of fewer than 2 records has no loss term (see group_losses).
        if m.is_empty() || (units.grouped && m.len() < 2) {
            norms.push(0.0);
            losses.push(0.0);
            continue;
        }
        let lcx = LossContext {
            model,
            target: cx.target,
            spec,
            ops,
            device: cx.device,
        };
        let loss = spec.objective.loss(
            plan.temperature,
            &lcx,
            member_rows(&inputs, m, records, per),
        );
        losses.push(scalar(&loss));
        let grads = loss.backward();
        let mut g = FlatGrads::zeros(model);
        g.add_scaled::<B, _>(model, &grads, 1.0);
        let norm = g.norm();
        let f = clip_factor(norm, clip);
        for (_, _, v) in &mut g.params {
            v.iter_mut().for_each(|x| *x *= f);
        }
        sum.add(&g);
        norms.push(norm);
    }
    Ok(ClippedSum { sum, norms, losses })
}

/// Whether the per-example kernels cover `plan`'s model on backend `B`: fedssl's own CPU
/// kernels, and an encoder built from convolutions, linear layers and group normalization
/// (not the Transformer, as encoder or as the caption tower of captioned images).
pub fn per_example_kernels<B: Kernels>(plan: &RoundPlan) -> bool {
    B::OWN_KERNELS
        && !matches!(plan.model.encoder, EncoderConfig::Transformer { .. })
        && !matches!(plan.model.shape, SampleShape::Captioned { .. })
}

/// What one DP-SGD step saw (kept on the site; logged, never sent).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepStats {
    /// The mean loss over the clipped units (NaN for an empty sample).
    pub mean_loss: f32,
    /// Records sampled.
    pub records: usize,
    /// Units clipped (records, or groups of records).
    pub units: usize,
    /// Units whose gradient norm exceeded C.
    pub clipped: usize,
    /// Sum of the units' gradient norms.
    pub norm_sum: f64,
}

/// One DP-SGD step's privatized gradient: clip per unit, sum, noise, normalize.
/// `sampled` are the step's Poisson-sampled records; `groups` their group labels under
/// group-level clipping (`None`: each record is its own unit).
pub fn privatized_gradient<B: AutodiffKernels>(
    model: &SslModel<B>,
    cx: &StepInputs<'_, B>,
    setup: &DpSgdSetup,
    sampled: &[usize],
    groups: Option<&[u32]>,
    make_inputs: impl Fn(&[usize]) -> Inputs,
) -> anyhow::Result<(GradientsParams, StepStats)> {
    let fast = per_example_kernels::<B>(cx.plan);
    let mut total = FlatGrads::zeros(model);
    let mut loss_sum = 0.0f64;
    let mut stats = StepStats {
        records: sampled.len(),
        ..StepStats::default()
    };
    for (chunk, units) in chunks(sampled, groups) {
        let inputs = make_inputs(&chunk);
        let part = if fast {
            clipped_sum_per_example(model, cx, inputs, &units, setup.clip_norm)?
        } else {
            clipped_sum_one_at_a_time(
                model,
                cx,
                inputs,
                &units,
                setup.clip_norm,
                fedssl_kernels::Ops::Kernels,
            )?
        };
        loss_sum += part.losses.iter().map(|&l| l as f64).sum::<f64>();
        stats.units += part.norms.len();
        stats.clipped += part.norms.iter().filter(|&&n| n > setup.clip_norm).count();
        stats.norm_sum += part.norms.iter().sum::<f64>();
        total.add(&part.sum);
    }
    // The noise goes on every coordinate, sampled records or not, then the sum is divided
    // by the expected batch size (a constant, so the result stays post-processing).
    let scale = (1.0 / setup.expected_batch) as f32;
    for (_, _, v) in &mut total.params {
        setup.noise.add_noise(v)?;
        v.iter_mut().for_each(|x| *x *= scale);
    }
    stats.mean_loss = if stats.units == 0 {
        f32::NAN
    } else {
        (loss_sum / stats.units as f64) as f32
    };
    Ok((total.into_params(model, cx.device), stats))
}

/// Splits a step's sample into chunks of about [`CHUNK_RECORDS`] records, whole groups
/// each, with the units of each chunk's records.
fn chunks(sampled: &[usize], groups: Option<&[u32]>) -> Vec<(Vec<usize>, Units)> {
    let Some(labels) = groups else {
        return sampled
            .chunks(CHUNK_RECORDS)
            .map(|c| (c.to_vec(), Units::records(c.len())))
            .collect();
    };
    let mut by_group: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for (&r, &g) in sampled.iter().zip(labels) {
        by_group.entry(g).or_default().push(r);
    }
    let mut out: Vec<(Vec<usize>, Units)> = Vec::new();
    let mut current: (Vec<usize>, Vec<u32>, usize) = (Vec::new(), Vec::new(), 0);
    for members in by_group.into_values() {
        if !current.0.is_empty() && current.0.len() + members.len() > CHUNK_RECORDS {
            let (recs, of, count) = std::mem::take(&mut current);
            out.push((
                recs,
                Units {
                    of_record: of,
                    count,
                    grouped: true,
                },
            ));
        }
        let unit = current.2 as u32;
        current.1.extend(std::iter::repeat_n(unit, members.len()));
        current.0.extend(members);
        current.2 += 1;
    }
    if !current.0.is_empty() {
        let (recs, of, count) = current;
        out.push((
            recs,
            Units {
                of_record: of,
                count,
                grouped: true,
            },
        ));
    }
    out
}

/// Group labels for a step's sampled records: each uniform in `0..groups`, drawn from the
/// site's secret generator, independently of the data and of the other records.
pub fn group_labels(rng: &mut ChaCha20Rng, records: usize, groups: usize) -> Vec<u32> {
    (0..records)
        .map(|_| rng.gen_range(0..groups.max(1) as u32))
        .collect()
}

/// A Poisson sample of `0..n` at rate `q`.
pub fn poisson_sample(rng: &mut ChaCha20Rng, n: usize, q: f64) -> Vec<usize> {
    (0..n).filter(|_| rng.gen_bool(q.clamp(0.0, 1.0))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use fedssl_kernels::Ops;
    use fedssl_ml::data::{records, sensors, synthetic, Dataset, SampleShape};
    use fedssl_ml::ssl::{ObjectiveKind, ViewMaker};
    use fedssl_privacy::plan::{PrivacyMechanism, PrivacyPlan};
    use fedssl_server::config::PlanConfig;

    type A = Autodiff<Flex>;

    fn plan(
        objective: ObjectiveKind,
        shape: SampleShape,
        encoder: Option<EncoderConfig>,
    ) -> RoundPlan {
        let cfg = PlanConfig {
            objective,
            data: shape,
            encoder,
            privacy: PrivacyPlan {
                mechanism: PrivacyMechanism::DpSgd,
                ..PrivacyPlan::default()
            },
            ..PlanConfig::default()
        };
        cfg.validate().unwrap();
        cfg.plan(1)
    }

    /// Per-record norms and the clipped sum from the per-example kernels against the same
    /// records taken one at a time through burn's own ops.
    fn check(what: &str, plan: &RoundPlan, data: &Dataset, clip: f64, units: impl Fn() -> Units) {
        let dev = Default::default();
        let model = plan.model.init_seeded::<A>(&dev, 7).unwrap();
        let target = plan
            .model
            .objective
            .heads()
            .target
            .then(|| model.clone().no_grad());
        let cx = StepInputs {
            plan,
            target: target.as_ref(),
            device: &dev,
        };
        let views = ViewMaker::for_shape(plan.model.shape, &plan.augment);
        let idx: Vec<usize> = (0..6).collect();
        let inputs = || plan.model.objective.inputs(data, &idx, &views, 11);
        let units = units();
        let ours = clipped_sum_per_example(&model, &cx, inputs(), &units, clip).unwrap();
        let reference =
            clipped_sum_one_at_a_time(&model, &cx, inputs(), &units, clip, Ops::Burn).unwrap();
        assert_eq!(ours.norms.len(), units.count, "{what}");
        for (a, b) in ours.norms.iter().zip(&reference.norms) {
            assert!(
                (a - b).abs() <= 1e-5 * b,
                "{what}: record norm {a} vs {b} one at a time"
            );
        }
        for (a, b) in ours.losses.iter().zip(&reference.losses) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1e-3),
                "{what}: record loss {a} vs {b}"
            );
        }
        let diff: f64 = ours
            .sum
            .values()
            .zip(reference.sum.values())
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm = reference.sum.norm();
        assert!(
            diff <= 1e-5 * norm,
            "{what}: clipped sums differ by {diff} (norm {norm})"
        );
        let clipped = reference.norms.iter().filter(|&&n| n > clip).count();
        assert!(
            clipped > 0 && clipped < units.count,
            "{what}: pick a clip that clips some units ({:?})",
            reference.norms
        );
    }

    #[test]
    fn per_example_gradients_equal_records_taken_one_at_a_time() {
        let images = synthetic::generate(16, 3).unlabeled();
        let series = sensors::generate(16, 6, 64, 3).unlabeled();
        let table = records::generate(16, 16, 3).unlabeled();
        let rgb = synthetic::generate_shaped(
            16,
            SampleShape::Image {
                channels: 3,
                height: 32,
                width: 32,
            },
            3,
        )
        .unlabeled();
        let cases: Vec<(&str, RoundPlan, &Dataset)> = vec![
            // Convolutions, group norm, a linear decoder on the cells of the feature map.
            (
                "masked images, ConvNet-S",
                plan(ObjectiveKind::Masked, images.shape, None),
                &images,
            ),
            // Two views per record; projector and predictor (linear, group norm); target.
            (
                "BYOL images, ConvNet-S",
                plan(ObjectiveKind::Byol, images.shape, None),
                &images,
            ),
            (
                "SimSiam records, MLP",
                plan(ObjectiveKind::SimSiam, table.shape, None),
                &table,
            ),
            (
                "denoising series, 1-D CNN",
                plan(ObjectiveKind::Denoising, series.shape, None),
                &series,
            ),
            // Shuffled segments, a permutation classifier (per-record cross entropy).
            (
                "segment order series, 1-D CNN",
                plan(ObjectiveKind::Reorder, series.shape, None),
                &series,
            ),
            // Residual blocks, 1×1 shortcut convolutions, the linear head to 128.
            (
                "SimSiam colour images, ResNet",
                plan(
                    ObjectiveKind::SimSiam,
                    rgb.shape,
                    Some(EncoderConfig::Resnet { width: 4 }),
                ),
                &rgb,
            ),
        ];
        for (what, p, data) in cases {
            // A clip bound between the records' norms, so that some are clipped.
            let dev = Default::default();
            let model = p.model.init_seeded::<A>(&dev, 7).unwrap();
            let target = p
                .model
                .objective
                .heads()
                .target
                .then(|| model.clone().no_grad());
            let cx = StepInputs {
                plan: &p,
                target: target.as_ref(),
                device: &dev,
            };
            let views = ViewMaker::for_shape(p.model.shape, &p.augment);
            let idx: Vec<usize> = (0..6).collect();
            let norms = clipped_sum_one_at_a_time(
                &model,
                &cx,
                p.model.objective.inputs(data, &idx, &views, 11),
                &Units::records(6),
                1e9,
                Ops::Burn,
            )
            .unwrap()
            .norms;
            let mut sorted = norms.clone();
            sorted.sort_by(f64::total_cmp);
            check(what, &p, data, 0.5 * (sorted[2] + sorted[3]), || {
                Units::records(6)
            });
        }
    }

    /// Group-level clipping (SimCLR's negatives, VICReg's batch statistics): the per-group
    /// norms and clipped sum from one pass equal the groups taken one at a time through
    /// burn's ops.
    #[test]
    fn per_group_gradients_equal_groups_taken_one_at_a_time() {
        let images = synthetic::generate(16, 3).unlabeled();
        let table = records::generate(16, 16, 3).unlabeled();
        let series = sensors::generate(16, 6, 64, 3).unlabeled();
        for (what, p, data) in [
            (
                "SimCLR images, ConvNet-S",
                plan(ObjectiveKind::SimClr, images.shape, None),
                &images,
            ),
            (
                "VICReg records, MLP",
                plan(ObjectiveKind::VicReg, table.shape, None),
                &table,
            ),
            (
                "cross-modal sensor windows, two 1-D CNNs",
                plan(ObjectiveKind::Clip, series.shape, None),
                &series,
            ),
        ] {
            // 12 records in 4 groups of 3, plus a lone record whose group has no term.
            let units = || Units {
                of_record: vec![0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3],
                count: 4,
                grouped: true,
            };
            let dev = Default::default();
            let model = p.model.init_seeded::<A>(&dev, 7).unwrap();
            let cx = StepInputs {
                plan: &p,
                target: None,
                device: &dev,
            };
            let views = ViewMaker::for_shape(p.model.shape, &p.augment);
            let idx: Vec<usize> = (0..12).collect();
            let inputs = || p.model.objective.inputs(data, &idx, &views, 11);
            let norms = clipped_sum_one_at_a_time(&model, &cx, inputs(), &units(), 1e9, Ops::Burn)
                .unwrap()
                .norms;
            let mut sorted = norms.clone();
            sorted.sort_by(f64::total_cmp);
            let clip = 0.5 * (sorted[1] + sorted[2]);
            // check() draws 6 records; here all 12 take part.
            let ours = clipped_sum_per_example(&model, &cx, inputs(), &units(), clip).unwrap();
            let reference =
                clipped_sum_one_at_a_time(&model, &cx, inputs(), &units(), clip, Ops::Burn)
                    .unwrap();
            for (a, b) in ours.norms.iter().zip(&reference.norms) {
                assert!((a - b).abs() <= 1e-5 * b, "{what}: group norm {a} vs {b}");
            }
            let diff: f64 = ours
                .sum
                .values()
                .zip(reference.sum.values())
                .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(
                diff <= 1e-5 * reference.sum.norm(),
                "{what}: sums differ by {diff}"
            );
        }
    }

    /// The sensitivity group-level clipping is accounted with: removing one record changes
    /// only its own group's clipped gradient, so the step's clipped sum moves by at most 2C.
    #[test]
    fn one_record_moves_a_grouped_step_by_at_most_twice_the_clip() {
        let images = synthetic::generate(16, 5).unlabeled();
        let p = plan(ObjectiveKind::SimClr, images.shape, None);
        let dev = Default::default();
        let model = p.model.init_seeded::<A>(&dev, 3).unwrap();
        let cx = StepInputs {
            plan: &p,
            target: None,
            device: &dev,
        };
        let views = ViewMaker::for_shape(p.model.shape, &p.augment);
        let labels: Vec<u32> = vec![0, 1, 2, 0, 1, 2, 0, 1, 2, 0];
        let run = |keep: &[usize]| {
            let units = Units {
                of_record: keep.iter().map(|&r| labels[r]).collect(),
                count: 3,
                grouped: true,
            };
            let inputs = p.model.objective.inputs(&images, keep, &views, 4);
            clipped_sum_per_example(&model, &cx, inputs, &units, 0.05).unwrap()
        };
        let all: Vec<usize> = (0..10).collect();
        let full = run(&all);
        assert!(
            full.norms.iter().all(|&n| n > 0.05),
            "every group is clipped: {:?}",
            full.norms
        );
        for r in [0usize, 4, 8] {
            let without: Vec<usize> = all.iter().copied().filter(|&i| i != r).collect();
            let part = run(&without);
            let moved: f64 = full
                .sum
                .values()
                .zip(part.sum.values())
                .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(
                moved > 0.0 && moved <= 2.0 * 0.05 * (1.0 + 1e-4),
                "record {r}: moved {moved}"
            );
            // The other groups' terms did not change.
            for g in 0..3 {
                if g != labels[r] as usize {
                    let (a, b) = (full.norms[g], part.norms[g]);
                    assert!(
                        (a - b).abs() <= 1e-6 * a,
                        "record {r} changed group {g}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn batch_norm_and_coupled_objectives_are_refused_with_the_reason() {
        let mut cfg = PlanConfig {
            objective: ObjectiveKind::Masked,
            norm: Some(fedssl_ml::model::Norm::Batch),
            ..PlanConfig::default()
        };
        cfg.privacy.mechanism = PrivacyMechanism::DpSgd;
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("plan.norm") && e.contains("BatchNorm"), "{e}");
        cfg.norm = None;
        cfg.validate().unwrap();
        cfg.objective = ObjectiveKind::Cpc;
        cfg.data = fedssl_ml::data::SampleShape::Series {
            channels: 6,
            length: 64,
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(
            e.contains("plan.objective") && e.contains("DP-SGD") && e.contains("clip"),
            "cpc: {e}"
        );
        // Cross-modal alignment clips per group, as SimCLR does.
        cfg.objective = ObjectiveKind::Clip;
        cfg.validate().unwrap();
    }
}
