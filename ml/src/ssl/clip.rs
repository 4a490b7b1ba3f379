//! Cross-modal contrastive alignment, CLIP-style (Radford et al., 2021): two encoders see
//! two groups of channels (e.g. accelerometer and gyroscope of one recording) or of
//! features (two feature groups of one record); the symmetric InfoNCE loss pulls the two
//! representations of the same sample together and pushes those of other samples apart:
//! `L = ½·(CE(S/τ) + CE(Sᵀ/τ))` with `S` the cosine similarities. Evaluation sees both
//! towers' representations side by side.
//!
//! On captioned images ([`SampleShape::Captioned`]) the towers are an image encoder and
//! the byte-level Transformer reading the caption: image–text alignment as in CLIP itself.
//! Evaluation then sees the image encoder alone, and classifies zero-shot by comparing an
//! image with each class's captions (`eval::zero_shot`, one layer up).

use burn::prelude::*;

use super::info_nce::info_nce;
use super::objective::{group_terms, DpUnit, Heads, Inputs, LossContext, SslObjective};
use super::views::ViewMaker;
use crate::data::{Dataset, SampleShape};
use crate::kernels::Kernels;
use crate::model::BnMode;
pub use fedssl_core::spec::CrossModal;

impl SslObjective for CrossModal {
    /// The InfoNCE loss uses the batch's other records as negatives, so DP-SGD clips per
    /// group of records (as for SimCLR).
    fn dp_sgd(&self) -> Result<DpUnit, String> {
        Ok(DpUnit::Group)
    }

    fn group_losses<B: Kernels>(
        &self,
        cx: &LossContext<'_, B>,
        inputs: Inputs,
        group_of: &[u32],
        groups: usize,
    ) -> Result<Tensor<B, 1>, String> {
        // One forward pass of both towers over every record, then the loss on each group.
        let x = inputs.x_tensor::<B>(cx.device);
        let (a, Some(b)) = cx.model.towers(x, BnMode::Train, cx.ops) else {
            return Err("cross-modal alignment needs a second tower".into());
        };
        group_terms(group_of, groups, cx.device, &a, |idx| {
            self.symmetric(a.clone().select(0, idx.clone()), b.clone().select(0, idx))
        })
    }

    fn heads(&self) -> Heads {
        Heads {
            partner: true,
            ..Heads::default()
        }
    }

    fn fits(&self, shape: SampleShape) -> Result<(), String> {
        match shape {
            SampleShape::Series { channels, .. } if channels >= 2 => Ok(()),
            SampleShape::Tabular { features } if features >= 2 => Ok(()),
            SampleShape::Captioned { text, .. } if text >= 1 => Ok(()),
            s => Err(format!(
                "cross-modal alignment needs two groups of channels or features; {s} cannot be split"
            )),
        }
    }

    fn inputs(&self, data: &Dataset, idx: &[usize], views: &ViewMaker, seed: u64) -> Inputs {
        super::pairs::one_view(data, idx, views, seed)
    }

    fn loss<B: Kernels>(&self, cx: &LossContext<'_, B>, inputs: Inputs) -> Tensor<B, 1> {
        let x = inputs.x_tensor::<B>(cx.device);
        let (a, Some(b)) = cx.model.towers(x, BnMode::Train, cx.ops) else {
            // A misconfigured caller: no second tower, nothing to align.
            return Tensor::zeros([1], cx.device);
        };
        self.symmetric(a, b)
    }
}

/// The symmetric InfoNCE of two towers.
trait CrossModalLoss {
    /// `½·(InfoNCE(a, b) + InfoNCE(b, a))` on the two towers' representations.
    fn symmetric<B: Backend>(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1>;
}

impl CrossModalLoss for CrossModal {
    fn symmetric<B: Backend>(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
        let ab = info_nce(a.clone(), b.clone(), self.temperature, true);
        let ba = info_nce(b, a, self.temperature, true);
        ab.add(ba).div_scalar(2.0)
    }
}
