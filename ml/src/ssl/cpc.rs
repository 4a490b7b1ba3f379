//! Contrastive predictive coding (van den Oord et al., 2018) for time series: a window is
//! cut into `segments` consecutive segments, the encoder maps each to a latent `z_t`, a GRU
//! summarizes `z_0..z_t` into a context `c_t`, and a linear map per step ahead `k`
//! predicts `z_{t+k}` from `c_t`. InfoNCE scores each prediction against the latents of
//! the same step in the other windows of the batch, averaged over `t` and `k = 1..steps`.

use burn::prelude::*;

use super::info_nce::info_nce;
use super::objective::{Heads, Inputs, LossContext, SslObjective};
use super::views::ViewMaker;
use crate::data::{Dataset, SampleShape};
use crate::kernels::Kernels;
use crate::model::BnMode;
pub use fedssl_core::spec::Cpc;

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
