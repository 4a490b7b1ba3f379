//! The self-supervised objective of a run, behind one small trait.
//!
//! An objective ([`SslObjective`]) declares the heads it trains next to the encoder
//! ([`Heads`]) and the modalities it fits, makes the inputs of one batch from local samples
//! ([`Inputs`], on the CPU), and computes the batch's loss from the model. Adding an
//! objective is one file implementing the trait, a variant of [`Objective`] that carries
//! its settings, and its line in `with_objective!`.
//!
//! Pair objectives (SimCLR, SimSiam, VICReg, BYOL) only define a loss on the projections of
//! two augmented views ([`PairObjective`]); [`pairs`](super::pairs) makes their views and
//! runs the forward pass for all of them.

use burn::prelude::*;

use super::model::SslModel;
use super::simclr::SimClr;
use super::simsiam::SimSiam;
use super::views::ViewMaker;
use crate::data::{Dataset, SampleShape};
use crate::kernels::{Kernels, Ops};
use crate::model::ModelSpec;
pub use fedssl_core::spec::{Objective, ObjectiveKind, ALL_OBJECTIVES};

/// The heads an objective trains next to the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heads {
    /// A projection head after the encoder.
    pub projector: bool,
    /// A prediction head after the projector.
    pub predictor: bool,
    /// A momentum (EMA) copy of encoder and projector, kept on the site.
    pub target: bool,
    /// A reconstruction head.
    pub decoder: bool,
    /// An autoregressive context network.
    pub context: bool,
    /// A second encoder for a second group of channels or features.
    pub partner: bool,
}

/// The inputs of one batch, made on the CPU from local samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    /// Encoder inputs, `rows × dim` values.
    pub x: Vec<f32>,
    /// Rows of `x`.
    pub rows: usize,
    /// Values per row.
    pub dim: usize,
    /// Reconstruction targets (`rows × dim`), for objectives that reconstruct.
    pub clean: Option<Vec<f32>>,
    /// Weight of each target value (1 = masked, to be reconstructed; 0 = ignored).
    pub mask: Option<Vec<f32>>,
    /// The class of each row, for objectives that classify (reordering: the permutation).
    pub targets: Option<Vec<u32>>,
}

impl Inputs {
    /// `x` as a `[rows, dim]` tensor.
    pub fn x_tensor<B: Backend>(&self, dev: &B::Device) -> Tensor<B, 2> {
        tensor2(self.x.clone(), self.rows, self.dim, dev)
    }
}

/// A `[rows, dim]` tensor of `values`.
pub fn tensor2<B: Backend>(
    values: Vec<f32>,
    rows: usize,
    dim: usize,
    dev: &B::Device,
) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(values, [rows, dim]), dev)
}

/// What a loss sees besides its inputs.
pub struct LossContext<'a, B: Backend> {
    /// The model being trained.
    pub model: &'a SslModel<B>,
    /// The momentum target (objectives with [`Heads::target`]); its outputs are constants.
    pub target: Option<&'a SslModel<B>>,
    /// The model's structure.
    pub spec: &'a ModelSpec,
    /// Implementation of the encoder's operations.
    pub ops: Ops,
    /// Device of the tensors.
    pub device: &'a B::Device,
}

/// A self-supervised objective.
pub trait SslObjective {
    /// The heads the objective trains next to the encoder.
    fn heads(&self) -> Heads;

    /// Whether the objective can train on samples of `shape`; the error says why not.
    fn fits(&self, shape: SampleShape) -> Result<(), String> {
        let _ = shape;
        Ok(())
    }

    /// The inputs of a batch of the samples `idx` of `data`, reproducible for `seed`.
    fn inputs(&self, data: &Dataset, idx: &[usize], views: &ViewMaker, seed: u64) -> Inputs;

    /// The loss of one batch.
    fn loss<B: Kernels>(&self, cx: &LossContext<'_, B>, inputs: Inputs) -> Tensor<B, 1>;

    /// How DP-SGD bounds one record's influence on this objective's step, or why it cannot.
    fn dp_sgd(&self) -> Result<DpUnit, String> {
        Err("its loss is not a sum of per-record terms".into())
    }

    /// Rows of [`SslObjective::inputs`] per record of `shape` (two views: 2), laid out
    /// view-major: row `i` belongs to record `i mod records`.
    fn rows_per_record(&self, shape: SampleShape) -> usize {
        let _ = shape;
        1
    }

    /// DP-SGD's per-record loss terms `[records]`: term r depends on record r alone and
    /// equals [`SslObjective::loss`] on a batch of record r only.
    fn record_losses<B: Kernels>(
        &self,
        cx: &LossContext<'_, B>,
        inputs: Inputs,
    ) -> Result<Tensor<B, 1>, String> {
        let _ = (cx, inputs);
        Err(self.dp_sgd().err().unwrap_or_default())
    }

    /// DP-SGD's per-group loss terms `[groups]` ([`DpUnit::Group`]): record r belongs to
    /// group `group_of[r]`; term g is the objective's loss on group g's records alone (0 for
    /// a group of fewer than 2 records).
    fn group_losses<B: Kernels>(
        &self,
        cx: &LossContext<'_, B>,
        inputs: Inputs,
        group_of: &[u32],
        groups: usize,
    ) -> Result<Tensor<B, 1>, String> {
        let _ = (cx, inputs, group_of, groups);
        Err(self.dp_sgd().err().unwrap_or_default())
    }
}

/// The unit whose gradient DP-SGD clips for an objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpUnit {
    /// The loss is a sum of per-record terms: each record's gradient is clipped to C, so one
    /// record moves a step's sum by at most C.
    Record,
    /// The loss couples the records of its batch (negatives, batch statistics): each step's
    /// records are put into small groups by labels drawn independently of the data, the loss
    /// is a sum of per-group terms, and each group's gradient is clipped to C. One record
    /// changes only its own group's clipped gradient, by at most 2C (docs/privacy.md).
    Group,
}

impl DpUnit {
    /// The L2 sensitivity of a step's clipped sum to one record, in units of C.
    pub fn sensitivity(&self) -> f64 {
        match self {
            DpUnit::Record => 1.0,
            DpUnit::Group => 2.0,
        }
    }
}

/// What a pair objective sees of one batch.
#[derive(Debug, Clone)]
pub struct PairOutputs<B: Backend> {
    /// Projections of the first views, `[N, D]`.
    pub z1: Tensor<B, 2>,
    /// Projections of the second views, `[N, D]`.
    pub z2: Tensor<B, 2>,
    /// Predictions from the first views (objectives with a predictor), `[N, D]`.
    pub p1: Option<Tensor<B, 2>>,
    /// Predictions from the second views.
    pub p2: Option<Tensor<B, 2>>,
    /// The momentum target's projections of the first views (constants), `[N, D]`.
    pub t1: Option<Tensor<B, 2>>,
    /// The momentum target's projections of the second views.
    pub t2: Option<Tensor<B, 2>>,
}

/// A loss on two augmented views of each sample.
pub trait PairObjective {
    /// Whether the objective needs a predictor head on top of the projector.
    fn uses_predictor(&self) -> bool {
        false
    }

    /// Whether the objective needs a momentum target network.
    fn uses_target(&self) -> bool {
        false
    }

    /// The loss of one batch. Objectives with a predictor may assume `p1`, `p2` are set,
    /// objectives with a target `t1`, `t2`.
    fn pair_loss<B: Backend>(&self, out: PairOutputs<B>) -> Tensor<B, 1>;

    /// The loss per pair `[N]` (DP-SGD), or why the loss does not split into pairs.
    fn pair_losses<B: Backend>(&self, out: PairOutputs<B>) -> Result<Tensor<B, 1>, String> {
        let _ = out;
        Err(self.pairs_coupled())
    }

    /// Why one pair's loss depends on other pairs of the batch (`""`: it does not).
    fn pairs_coupled(&self) -> String;
}

impl<T: PairObjective> SslObjective for T {
    fn heads(&self) -> Heads {
        Heads {
            projector: true,
            predictor: self.uses_predictor(),
            target: self.uses_target(),
            ..Heads::default()
        }
    }

    fn fits(&self, shape: SampleShape) -> Result<(), String> {
        match shape {
            SampleShape::Text { .. } => Err(
                "it compares two augmented views of each sample, and fedssl has no text augmentations (use masked for text)"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    fn inputs(&self, data: &Dataset, idx: &[usize], views: &ViewMaker, seed: u64) -> Inputs {
        super::pairs::two_views(data, idx, views, seed)
    }

    fn loss<B: Kernels>(&self, cx: &LossContext<'_, B>, inputs: Inputs) -> Tensor<B, 1> {
        self.pair_loss(super::pairs::pair_outputs(cx, &inputs))
    }

    fn dp_sgd(&self) -> Result<DpUnit, String> {
        Ok(if self.pairs_coupled().is_empty() {
            DpUnit::Record
        } else {
            DpUnit::Group
        })
    }

    fn rows_per_record(&self, _shape: SampleShape) -> usize {
        2
    }

    fn record_losses<B: Kernels>(
        &self,
        cx: &LossContext<'_, B>,
        inputs: Inputs,
    ) -> Result<Tensor<B, 1>, String> {
        match self.pairs_coupled() {
            why if why.is_empty() => self.pair_losses(super::pairs::pair_outputs(cx, &inputs)),
            why => Err(why),
        }
    }

    fn group_losses<B: Kernels>(
        &self,
        cx: &LossContext<'_, B>,
        inputs: Inputs,
        group_of: &[u32],
        groups: usize,
    ) -> Result<Tensor<B, 1>, String> {
        // One forward pass over every record, then the pair loss on each group's rows.
        let out = super::pairs::pair_outputs(cx, &inputs);
        group_terms(group_of, groups, cx.device, &out.z1, |idx| {
            let pick = |t: &Tensor<B, 2>| t.clone().select(0, idx.clone());
            self.pair_loss(PairOutputs {
                z1: pick(&out.z1),
                z2: pick(&out.z2),
                p1: out.p1.as_ref().map(pick),
                p2: out.p2.as_ref().map(pick),
                t1: out.t1.as_ref().map(pick),
                t2: out.t2.as_ref().map(pick),
            })
        })
    }
}

/// DP-SGD's per-group loss terms `[groups]` from outputs already computed for every record:
/// record r belongs to group `group_of[r]`; `term` gets the row indices of one group's
/// records and returns its loss `[1]`. A group of fewer than 2 records has the term 0 (kept
/// in `any_output`'s graph, so every term has a gradient path).
pub fn group_terms<B: Backend>(
    group_of: &[u32],
    groups: usize,
    device: &B::Device,
    any_output: &Tensor<B, 2>,
    mut term: impl FnMut(Tensor<B, 1, Int>) -> Tensor<B, 1>,
) -> Result<Tensor<B, 1>, String> {
    let mut members: Vec<Vec<i64>> = vec![Vec::new(); groups];
    for (r, &g) in group_of.iter().enumerate() {
        members
            .get_mut(g as usize)
            .ok_or_else(|| format!("record {r} is in group {g} of {groups}"))?
            .push(r as i64);
    }
    let terms = members
        .into_iter()
        .map(|m| {
            if m.len() < 2 {
                return any_output.clone().sum().mul_scalar(0.0).reshape([1]);
            }
            let n = m.len();
            term(Tensor::<B, 1, Int>::from_data(
                TensorData::new(m, [n]),
                device,
            ))
        })
        .collect();
    Ok(Tensor::cat(terms, 0))
}

/// Calls `$body` with `$o` bound to the objective's implementation of [`SslObjective`]:
/// the registry, one line per objective.
macro_rules! with_objective {
    ($obj:expr, $temperature:expr, |$o:ident| $body:expr) => {
        match $obj {
            Objective::SimClr => {
                let $o = SimClr {
                    temperature: $temperature,
                };
                $body
            }
            Objective::SimSiam => {
                let $o = SimSiam;
                $body
            }
            Objective::VicReg($o) => $body,
            Objective::Byol($o) => $body,
            Objective::Masked($o) => $body,
            Objective::Denoising($o) => $body,
            Objective::Cpc($o) => $body,
            Objective::Clip($o) => $body,
            Objective::Reorder($o) => $body,
        }
    };
}

/// What an objective trains, checks and computes (dispatched to its [`SslObjective`]).
pub trait ObjectiveExt {
    /// The heads the objective trains next to the encoder.
    fn heads(&self) -> Heads;

    /// Whether the objective uses a predictor head.
    fn uses_predictor(&self) -> bool;

    /// Whether the objective with its settings can train on samples of `shape`.
    fn fits(&self, shape: SampleShape) -> Result<(), String>;

    /// The inputs of one batch.
    fn inputs(&self, data: &Dataset, idx: &[usize], views: &ViewMaker, seed: u64) -> Inputs;

    /// The loss of one batch.
    fn loss<B: Kernels>(
        &self,
        temperature: f64,
        cx: &LossContext<'_, B>,
        inputs: Inputs,
    ) -> Tensor<B, 1>;

    /// How DP-SGD clips for the objective; the error says why it cannot train it.
    fn dp_sgd(&self) -> Result<DpUnit, String>;

    /// Rows of a batch's inputs per record of `shape`.
    fn rows_per_record(&self, shape: SampleShape) -> usize;

    /// DP-SGD's per-record loss terms of one batch.
    fn record_losses<B: Kernels>(
        &self,
        temperature: f64,
        cx: &LossContext<'_, B>,
        inputs: Inputs,
    ) -> Result<Tensor<B, 1>, String>;

    /// DP-SGD's per-group loss terms of one batch ([`DpUnit::Group`]).
    fn group_losses<B: Kernels>(
        &self,
        temperature: f64,
        cx: &LossContext<'_, B>,
        inputs: Inputs,
        group_of: &[u32],
        groups: usize,
    ) -> Result<Tensor<B, 1>, String>;
}

impl ObjectiveExt for Objective {
    fn heads(&self) -> Heads {
        with_objective!(*self, 1.0, |o| o.heads())
    }

    fn uses_predictor(&self) -> bool {
        self.heads().predictor
    }

    fn fits(&self, shape: SampleShape) -> Result<(), String> {
        if matches!(shape, SampleShape::Captioned { .. }) && self.kind() != ObjectiveKind::Clip {
            return Err(format!(
                "objective {self} does not read captions; captioned images train with objective = \"clip\" (image–text alignment)"
            ));
        }
        with_objective!(*self, 1.0, |o| o.fits(shape)).map_err(|e| format!("objective {self}: {e}"))
    }

    fn inputs(&self, data: &Dataset, idx: &[usize], views: &ViewMaker, seed: u64) -> Inputs {
        with_objective!(*self, 1.0, |o| o.inputs(data, idx, views, seed))
    }

    fn loss<B: Kernels>(
        &self,
        temperature: f64,
        cx: &LossContext<'_, B>,
        inputs: Inputs,
    ) -> Tensor<B, 1> {
        with_objective!(*self, temperature, |o| o.loss(cx, inputs))
    }

    fn dp_sgd(&self) -> Result<DpUnit, String> {
        with_objective!(*self, 1.0, |o| o.dp_sgd())
            .map_err(|e| format!("objective {self} cannot be trained with DP-SGD: {e}"))
    }

    fn rows_per_record(&self, shape: SampleShape) -> usize {
        with_objective!(*self, 1.0, |o| o.rows_per_record(shape))
    }

    fn record_losses<B: Kernels>(
        &self,
        temperature: f64,
        cx: &LossContext<'_, B>,
        inputs: Inputs,
    ) -> Result<Tensor<B, 1>, String> {
        with_objective!(*self, temperature, |o| o.record_losses(cx, inputs))
    }

    fn group_losses<B: Kernels>(
        &self,
        temperature: f64,
        cx: &LossContext<'_, B>,
        inputs: Inputs,
        group_of: &[u32],
        groups: usize,
    ) -> Result<Tensor<B, 1>, String> {
        with_objective!(*self, temperature, |o| o
            .group_losses(cx, inputs, group_of, groups))
    }
}
