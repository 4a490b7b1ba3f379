//! Group normalization (Wu & He 2018) on [`Kernels`], the per-record normalization of the
//! models DP-SGD trains (BatchNorm mixes the records of a batch), and the choice between the
//! two ([`Norm`]). Also [`linear`]: a burn `Linear` run through the kernels' linear node, so
//! DP-SGD sees its per-record gradients.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::prelude::*;

use crate::kernels::{reference, Kernels, Ops};
pub use fedssl_core::spec::Norm;

/// Group normalization for `[N, C, H, W]` inputs (or `[N, C]` as `[N, C, 1, 1]`).
#[derive(Module, Debug)]
pub struct GroupNorm2d<B: Backend> {
    /// Scale γ.
    pub gamma: Param<Tensor<B, 1>>,
    /// Shift β.
    pub beta: Param<Tensor<B, 1>>,
    /// Groups of channels.
    pub groups: usize,
    /// Added to the variance for stability.
    pub epsilon: f64,
}

/// Groups for `channels` channels: 8 where they divide (4 to 16 channels a group in the
/// encoders), else one group (layer normalization).
pub fn groups_for(channels: usize) -> usize {
    if channels.is_multiple_of(8) {
        8
    } else {
        1
    }
}

impl<B: Backend> GroupNorm2d<B> {
    /// A layer for `channels` channels with γ = 1, β = 0.
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::ones([channels], device)),
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
            groups: groups_for(channels),
            epsilon: 1e-5,
        }
    }

    /// Normalizes `x`, then ReLU when `relu`.
    pub fn forward_with(&self, x: Tensor<B, 4>, relu: bool, ops: Ops) -> Tensor<B, 4>
    where
        B: Kernels,
    {
        let (g, b) = (self.gamma.val(), self.beta.val());
        match ops {
            Ops::Kernels => B::kernel_group_norm(x, g, b, self.groups, self.epsilon, relu),
            Ops::Burn => reference::group_norm(x, g, b, self.groups, self.epsilon, relu).0,
        }
    }

    /// Normalizes `[N, C]` features, then ReLU when `relu`.
    pub fn forward_2d(&self, x: Tensor<B, 2>, relu: bool, ops: Ops) -> Tensor<B, 2>
    where
        B: Kernels,
    {
        let [n, c] = x.dims();
        self.forward_with(x.reshape([n, c, 1, 1]), relu, ops)
            .reshape([n, c])
    }
}

/// `l`'s affine map on `[M, d_in]` rows through [`Kernels::kernel_linear`].
pub fn linear<B: Kernels>(l: &Linear<B>, x: Tensor<B, 2>, ops: Ops) -> Tensor<B, 2> {
    let (w, b) = (l.weight.val(), l.bias.as_ref().map(|b| b.val()));
    match ops {
        Ops::Kernels => B::kernel_linear(x, w, b),
        Ops::Burn => reference::linear(x, w, b),
    }
}
