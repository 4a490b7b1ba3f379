//! The reconstruction head of masked modeling and the denoising autoencoder: an MLP from the
//! 128-d representation back to the flat sample (128 → 256 → ReLU → D).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::groupnorm::linear;
use crate::kernels::{Kernels, Ops};

/// The reconstruction head.
#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
    /// Representation → hidden.
    pub fc1: Linear<B>,
    /// Hidden → sample.
    pub fc2: Linear<B>,
}

/// Builds a decoder from `input`-wide representations to `output` values per sample.
pub fn decoder<B: Backend>(input: usize, output: usize, device: &B::Device) -> Decoder<B> {
    Decoder {
        fc1: LinearConfig::new(input, 256).init(device),
        fc2: LinearConfig::new(256, output).init(device),
    }
}

impl<B: Kernels> Decoder<B> {
    /// Reconstructs flat samples `[N, output]` from representations `[N, input]`.
    pub fn forward(&self, z: Tensor<B, 2>) -> Tensor<B, 2> {
        let h = relu(linear(&self.fc1, z, Ops::Kernels));
        linear(&self.fc2, h, Ops::Kernels)
    }
}
