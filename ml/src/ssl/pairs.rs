//! What every pair objective shares: two augmented views of each sample, and the forward
//! pass to projections, predictions and (BYOL) the momentum target's projections.

use burn::prelude::*;
use rayon::prelude::*;

use super::objective::{Inputs, LossContext, PairOutputs};
use super::views::ViewMaker;
use crate::data::Dataset;
use crate::kernels::Kernels;
use crate::model::BnMode;

/// Two augmented views of the samples at `idx`, as `2·|idx|` rows (all first views, then
/// all second views).
pub fn two_views(data: &Dataset, idx: &[usize], views: &ViewMaker, seed: u64) -> Inputs {
    augmented(data, idx, views, seed, 2)
}

/// One augmented view (the first of [`two_views`]) of each sample at `idx`.
pub fn one_view(data: &Dataset, idx: &[usize], views: &ViewMaker, seed: u64) -> Inputs {
    augmented(data, idx, views, seed, 1)
}

/// `count` views of each sample, view-major; view `v` of sample `i` draws from stream
/// `2i + v`.
fn augmented(data: &Dataset, idx: &[usize], views: &ViewMaker, seed: u64, count: usize) -> Inputs {
    let (b, d) = (idx.len(), data.dim());
    let mut x = vec![0.0f32; count * b * d];
    x.par_chunks_mut(d.max(1)).enumerate().for_each(|(j, out)| {
        let (view, k) = (j / b, j % b);
        let i = idx[k];
        views.view(data, i, out, seed, ((i as u64) << 1) | view as u64);
    });
    Inputs {
        x,
        rows: count * b,
        dim: d,
        clean: None,
        mask: None,
        targets: None,
    }
}

/// Projections (and predictions, target projections) of both views of a pair batch.
pub fn pair_outputs<B: Kernels>(cx: &LossContext<'_, B>, inputs: &Inputs) -> PairOutputs<B> {
    let k = inputs.rows / 2;
    let x = inputs.x_tensor::<B>(cx.device);
    let z = cx.model.project(x.clone(), BnMode::Train, cx.ops);
    let p = cx
        .model
        .predictor
        .as_ref()
        .map(|pred| pred.forward(z.clone()));
    let t = cx
        .target
        .map(|t| t.project(x, BnMode::Train, cx.ops).detach());
    let halves = |t: Tensor<B, 2>| (t.clone().slice(0..k), t.slice(k..2 * k));
    let (z1, z2) = halves(z);
    let (p1, p2) = p.map(halves).unzip();
    let (t1, t2) = t.map(halves).unzip();
    PairOutputs {
        z1,
        z2,
        p1,
        p2,
        t1,
        t2,
    }
}
