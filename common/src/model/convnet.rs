//! ConvNet-S: a small convolutional image encoder for 1×28×28 inputs.
//!
//! conv3×3 1→32 (stride 1), 32→64, 64→128, 128→128 (stride 2), each followed by BatchNorm
//! and ReLU, then global average pooling to a 128-d representation.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;

use super::batchnorm::BatchNorm2d;
pub use super::batchnorm::BnMode;
use super::IMAGE_SIDE;
use crate::kernels::{reference, ConvSpec, Kernels, Ops, StackLayer};

/// Hyper-parameters of [`ConvNetS`].
#[derive(Debug, Clone, Copy)]
pub struct ConvNetSConfig {
    /// Input channels (1 for grayscale).
    pub in_channels: usize,
}

impl Default for ConvNetSConfig {
    fn default() -> Self {
        Self { in_channels: 1 }
    }
}

/// One conv → BN → ReLU stage.
#[derive(Module, Debug)]
pub struct ConvBlock<B: Backend> {
    /// 3×3 convolution without bias (BatchNorm follows).
    pub conv: Conv2d<B>,
    /// Normalization.
    pub bn: BatchNorm2d<B>,
}

impl<B: Backend> ConvBlock<B> {
    fn new(cin: usize, cout: usize, stride: usize, device: &B::Device) -> Self {
        Self {
            conv: Conv2dConfig::new([cin, cout], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            bn: BatchNorm2d::new(cout, device),
        }
    }

    fn spec(&self) -> ConvSpec {
        ConvSpec {
            stride: self.conv.stride,
            padding: [1, 1],
        }
    }

    fn forward(&self, x: Tensor<B, 4>, mode: BnMode, ops: Ops) -> Tensor<B, 4>
    where
        B: Kernels,
    {
        let spec = self.spec();
        let w = self.conv.weight.val();
        let y = match ops {
            Ops::Kernels => B::kernel_conv2d(x, w, spec),
            Ops::Burn => reference::conv2d(x, w, spec),
        };
        self.bn.forward_with(y, mode, true, ops)
    }
}

/// The ConvNet-S encoder.
#[derive(Module, Debug)]
pub struct ConvNetS<B: Backend> {
    /// Stages, in order.
    pub blocks: Vec<ConvBlock<B>>,
}

/// Width of the representation ConvNet-S produces.
pub const CONVNET_S_DIM: usize = 128;

impl ConvNetSConfig {
    /// Builds the encoder with burn's default (Kaiming-uniform) initialization.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ConvNetS<B> {
        let plan = [
            (self.in_channels, 32, 1),
            (32, 64, 2),
            (64, 128, 2),
            (128, CONVNET_S_DIM, 2),
        ];
        ConvNetS {
            blocks: plan
                .iter()
                .map(|&(i, o, s)| ConvBlock::new(i, o, s, device))
                .collect(),
        }
    }
}

impl<B: Kernels> ConvNetS<B> {
    /// Maps `[N, C, 28, 28]` images to `[N, 128]` representations.
    pub fn forward(&self, x: Tensor<B, 4>, mode: BnMode) -> Tensor<B, 2> {
        self.forward_with(x, mode, Ops::Kernels)
    }

    /// [`ConvNetS::forward`] with the chosen implementation of the operations
    /// ([`Ops::Burn`] is the reference the kernels are tested and benchmarked against).
    pub fn forward_with(&self, x: Tensor<B, 4>, mode: BnMode, ops: Ops) -> Tensor<B, 2> {
        let h = if mode == BnMode::Eval && ops == Ops::Kernels {
            // Inference: one fused conv → BN → ReLU stack.
            let layers = self
                .blocks
                .iter()
                .map(|b| {
                    let (scale, shift) = b.bn.eval_affine();
                    StackLayer {
                        weight: b.conv.weight.val(),
                        spec: b.spec(),
                        scale,
                        shift,
                        relu: true,
                    }
                })
                .collect();
            B::kernel_conv_stack(x, layers)
        } else {
            self.blocks.iter().fold(x, |h, b| b.forward(h, mode, ops))
        };
        let [n, c, hh, ww] = h.dims();
        h.reshape([n, c, hh * ww]).mean_dim(2).reshape([n, c])
    }
}

impl<B: Backend> ConvNetS<B> {
    /// Output dimension.
    pub fn output_dim(&self) -> usize {
        CONVNET_S_DIM
    }

    /// Input side length.
    pub fn input_side(&self) -> usize {
        IMAGE_SIDE
    }
}

/// Names of tensors that are local state and never leave a site (BatchNorm statistics).
pub fn is_local_state(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn shapes_and_parameter_count() {
        let dev = Default::default();
        let enc = ConvNetSConfig::default().init::<Flex>(&dev);
        let x = Tensor::<Flex, 4>::zeros([3, 1, 28, 28], &dev);
        assert_eq!(enc.forward(x, BnMode::Train).dims(), [3, 128]);
        let w = crate::model::Weights::global_from_module(&enc);
        let convs = 9 * (32 + 32 * 64 + 64 * 128 + 128 * 128);
        let bns = 2 * (32 + 64 + 128 + 128);
        assert_eq!(w.num_params(), convs + bns);
    }
}
