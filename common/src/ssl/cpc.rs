//! Contrastive predictive coding (van den Oord et al., 2018) for time series: a window is
//! cut into `segments` consecutive segments, the encoder maps each to a latent `z_t`, a GRU
//! summarizes `z_0..z_t` into a context `c_t`, and a linear map per step ahead `k`
//! predicts `z_{t+k}` from `c_t`. InfoNCE scores each prediction against the latents of
//! the same step in the other windows of the batch, averaged over `t` and `k = 1..steps`.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::info_nce::info_nce;
use super::objective::{Heads, Inputs, LossContext, SslObjective};
use super::views::ViewMaker;
use crate::data::{Dataset, SampleShape};
use crate::kernels::Kernels;
use crate::model::BnMode;

/// CPC's segments and steps ahead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cpc {
    /// Segments per window (the window's length must be a multiple).
    pub segments: usize,
    /// Steps ahead predicted.
    pub steps: usize,
    /// InfoNCE temperature (on L2-normalized latents).
    pub temperature: f64,
}

impl Default for Cpc {
    fn default() -> Self {
        Self {
            segments: 8,
            steps: 2,
            temperature: 0.1,
        }
    }
}

impl Cpc {
    /// At least 2 segments, 1 ≤ steps < segments, a positive temperature.
    pub fn validate(&self) -> Result<(), String> {
        if self.segments < 2 || self.steps == 0 || self.steps >= self.segments {
            return Err(format!(
                "cpc: needs segments ≥ 2 and 1 ≤ steps < segments (got {} and {})",
                self.segments, self.steps
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err("cpc.temperature must be positive".into());
        }
        Ok(())
    }

    /// Whether windows of `shape` can be cut into this many segments of ≥ 4 steps.
    pub fn check_shape(&self, shape: SampleShape) -> Result<(), String> {
        match shape {
            SampleShape::Series { length, .. }
                if length % self.segments == 0 && length / self.segments >= 4 =>
            {
                Ok(())
            }
            SampleShape::Series { length, .. } => Err(format!(
                "CPC cuts a window of {length} steps into {} segments: the length must be a multiple of the segments, each of at least 4 steps (set plan.cpc.segments)",
                self.segments
            )),
            s => Err(format!("CPC needs time series, not {s}")),
        }
    }
}

impl SslObjective for Cpc {
    fn dp_sgd(&self) -> Result<super::objective::DpUnit, String> {
        Err("its InfoNCE loss scores each prediction against the other windows of the batch, so one record's gradient depends on the others".into())
    }

    fn heads(&self) -> Heads {
        Heads {
            context: true,
            ..Heads::default()
        }
    }

    fn fits(&self, shape: SampleShape) -> Result<(), String> {
        self.check_shape(shape)
    }

    fn inputs(&self, data: &Dataset, idx: &[usize], views: &ViewMaker, seed: u64) -> Inputs {
        super::pairs::one_view(data, idx, views, seed)
    }

    fn loss<B: Kernels>(&self, cx: &LossContext<'_, B>, inputs: Inputs) -> Tensor<B, 1> {
        let SampleShape::Series { channels, length } = cx.spec.shape else {
            return Tensor::zeros([1], cx.device);
        };
        let (n, k) = (inputs.rows, self.segments);
        let s = length / k;
        let x = inputs
            .x_tensor::<B>(cx.device)
            .reshape([n, channels, k, s])
            .swap_dims(1, 2)
            .reshape([n * k, channels * s]);
        let z = cx.model.encoder.forward_with(x, BnMode::Train, cx.ops);
        let d = z.dims()[1];
        let z = z.reshape([n, k, d]);
        let Some(net) = cx.model.context.as_ref() else {
            return z.sum().mul_scalar(0.0).reshape([1]);
        };
        let ctx = net.contexts(z.clone());
        let mut total: Option<Tensor<B, 1>> = None;
        let mut terms = 0usize;
        for (j, pred) in net.predictors.iter().enumerate().take(self.steps) {
            let ahead = j + 1;
            for t in 0..k.saturating_sub(ahead) {
                let c_t = ctx.clone().slice([0..n, t..t + 1, 0..d]).reshape([n, d]);
                let target = z
                    .clone()
                    .slice([0..n, t + ahead..t + ahead + 1, 0..d])
                    .reshape([n, d]);
                let l = info_nce(pred.forward(c_t), target, self.temperature, true);
                total = Some(match total {
                    Some(acc) => acc.add(l),
                    None => l,
                });
                terms += 1;
            }
        }
        total
            .map(|t| t.div_scalar(terms.max(1) as f64))
            .unwrap_or_else(|| Tensor::zeros([1], cx.device))
    }
}
