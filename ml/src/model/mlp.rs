//! The MLP encoder for tabular records: Linear → BN → ReLU, Linear → BN → ReLU, Linear to
//! the 128-d representation.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::batchnorm::{BatchNorm2d, BnMode};
use super::groupnorm::{linear, GroupNorm2d, Norm};
use crate::kernels::{Kernels, Ops};

/// Hyper-parameters of [`Mlp`].
#[derive(Debug, Clone, Copy)]
pub struct MlpConfig {
    /// Features per record.
    pub features: usize,
    /// Width of the two hidden layers.
    pub hidden: usize,
    /// Width of the representation.
    pub output: usize,
    /// Normalization layers.
    pub norm: Norm,
}

/// One Linear → norm → ReLU layer.
#[derive(Module, Debug)]
pub struct MlpLayer<B: Backend> {
    /// Linear map without bias (a normalization follows).
    pub fc: Linear<B>,
    /// BatchNorm ([`Norm::Batch`]).
    pub bn: Option<BatchNorm2d<B>>,
    /// GroupNorm ([`Norm::Group`]).
    pub gn: Option<GroupNorm2d<B>>,
}

/// The MLP encoder.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Hidden layers.
    pub layers: Vec<MlpLayer<B>>,
    /// Output layer.
    pub out: Linear<B>,
}

impl MlpConfig {
    /// Builds the encoder with burn's default initialization.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mlp<B> {
        let layer = |i: usize, o: usize| MlpLayer {
            fc: LinearConfig::new(i, o).with_bias(false).init(device),
            bn: (self.norm == Norm::Batch).then(|| BatchNorm2d::new(o, device)),
            gn: (self.norm == Norm::Group).then(|| GroupNorm2d::new(o, device)),
        };
        Mlp {
            layers: vec![
                layer(self.features, self.hidden),
                layer(self.hidden, self.hidden),
            ],
            out: LinearConfig::new(self.hidden, self.output).init(device),
        }
    }
}

impl<B: Kernels> Mlp<B> {
    /// Maps `[N, F]` records to `[N, output]` representations.
    pub fn forward_with(&self, x: Tensor<B, 2>, mode: BnMode, ops: Ops) -> Tensor<B, 2> {
        let h = self.layers.iter().fold(x, |h, l| {
            let y = linear(&l.fc, h, ops);
            let [n, c] = y.dims();
            match (&l.bn, &l.gn) {
                (Some(bn), _) => bn
                    .forward_with(y.reshape([n, c, 1, 1]), mode, true, ops)
                    .reshape([n, c]),
                (None, Some(gn)) => gn.forward_2d(y, true, ops),
                (None, None) => burn::tensor::activation::relu(y),
            }
        });
        linear(&self.out, h, ops)
    }
}
