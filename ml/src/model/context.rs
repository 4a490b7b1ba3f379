//! CPC's autoregressive context network: a GRU over the latents of consecutive segments,
//! and one linear predictor per step ahead.

use burn::module::Module;
use burn::nn::gru::{Gru, GruConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// The context network and its step-ahead predictors.
#[derive(Module, Debug)]
pub struct ContextNet<B: Backend> {
    /// Autoregressive summary of the latents so far.
    pub gru: Gru<B>,
    /// `predictors[k]` maps the context at `t` to the latent expected at `t + k + 1`.
    pub predictors: Vec<Linear<B>>,
}

/// Builds the context network for `dim`-wide latents predicting `steps` steps ahead.
pub fn context_net<B: Backend>(dim: usize, steps: usize, device: &B::Device) -> ContextNet<B> {
    ContextNet {
        gru: GruConfig::new(dim, dim, true).init(device),
        predictors: (0..steps)
            .map(|_| LinearConfig::new(dim, dim).with_bias(false).init(device))
            .collect(),
    }
}

impl<B: Backend> ContextNet<B> {
    /// Contexts `[N, T, dim]` of latents `[N, T, dim]` (the context at `t` has seen steps
    /// `0..=t` only).
    pub fn contexts(&self, latents: Tensor<B, 3>) -> Tensor<B, 3> {
        self.gru.forward(latents, None)
    }
}
