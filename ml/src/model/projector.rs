//! The projection head of the pair objectives: Linear → ReLU → Linear (local by default;
//! `[plan.parts] projector = "global"` shares it).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::groupnorm::linear;
use crate::kernels::{Kernels, Ops};

/// Dimensions of the projector.
#[derive(Debug, Clone, Copy)]
pub struct ProjectorConfig {
    /// Input width (the encoder's representation).
    pub input: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Output width (where the loss is computed).
    pub output: usize,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            input: 128,
            hidden: 256,
            output: 128,
        }
    }
}

/// MLP projector 128 → 256 → 128.
#[derive(Module, Debug)]
pub struct Projector<B: Backend> {
    /// First layer.
    pub fc1: Linear<B>,
    /// Second layer.
    pub fc2: Linear<B>,
}

impl ProjectorConfig {
    /// Builds the projector.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Projector<B> {
        Projector {
            fc1: LinearConfig::new(self.input, self.hidden).init(device),
            fc2: LinearConfig::new(self.hidden, self.output).init(device),
        }
    }
}

impl<B: Kernels> Projector<B> {
    /// Projects `[N, input]` to `[N, output]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let h = relu(linear(&self.fc1, x, Ops::Kernels));
        linear(&self.fc2, h, Ops::Kernels)
    }
}
