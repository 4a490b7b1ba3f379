//! Denoising autoencoder: corrupt each sample with Gaussian noise and random dropped values,
//! and reconstruct the clean sample from the encoder's representation through a decoder
//! (mean squared error over all values).

use burn::prelude::*;
use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::masked::{corrupted_inputs, reconstruction_loss, reconstruction_losses};
use super::objective::{Heads, Inputs, LossContext, SslObjective};
use super::views::ViewMaker;
use crate::data::{Dataset, SampleShape};
use crate::kernels::Kernels;
pub use fedssl_core::spec::Denoising;

/// The denoising autoencoder's corruption.
pub trait DenoisingExt {
    /// The corrupted copy of `s`.
    fn corrupt(&self, s: &[f32], rng: &mut impl Rng) -> Vec<f32>;
}

impl DenoisingExt for Denoising {
    fn corrupt(&self, s: &[f32], rng: &mut impl Rng) -> Vec<f32> {
        let normal = Normal::new(0.0f32, self.noise_std.max(1e-12)).ok();
        s.iter()
            .map(|&v| {
                if rng.gen::<f32>() < self.drop {
                    0.0
                } else {
                    v + normal.as_ref().map_or(0.0, |n| n.sample(rng))
                }
            })
            .collect()
    }
}

impl SslObjective for Denoising {
    fn heads(&self) -> Heads {
        Heads {
            decoder: true,
            ..Heads::default()
        }
    }

    fn fits(&self, shape: SampleShape) -> Result<(), String> {
        match shape {
            SampleShape::Text { .. } => Err("denoising needs numeric samples, not text".into()),
            _ => Ok(()),
        }
    }

    fn inputs(&self, data: &Dataset, idx: &[usize], _views: &ViewMaker, seed: u64) -> Inputs {
        corrupted_inputs(data, idx, seed, |s, rng| (self.corrupt(s, rng), None))
    }

    fn loss<B: Kernels>(&self, cx: &LossContext<'_, B>, inputs: Inputs) -> Tensor<B, 1> {
        reconstruction_loss(cx, inputs)
    }

    fn dp_sgd(&self) -> Result<super::objective::DpUnit, String> {
        Ok(super::objective::DpUnit::Record)
    }

    fn record_losses<B: Kernels>(
        &self,
        cx: &LossContext<'_, B>,
        inputs: Inputs,
    ) -> Result<Tensor<B, 1>, String> {
        Ok(reconstruction_losses(cx, inputs))
    }
}
