//! Convolutional encoders: stages of conv → BatchNorm → ReLU, then global average pooling.
//!
//! - ConvNet-S ([`ConvNetSConfig`]), for images: conv3×3 C→32 (stride 1), 32→64, 64→128,
//!   128→128 (stride 2), a 128-d representation.
//! - The 1-D CNN ([`Cnn1dConfig`]), for windows of a multichannel time series: kernel-5
//!   convolutions C→w (stride 1), w→2w, 2w→4w (stride 2), 4w→128 (stride 2), run as
//!   `[N, C, 1, L]` images with `1×5` kernels on the same kernels.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;

use super::batchnorm::BatchNorm2d;
pub use super::batchnorm::BnMode;
use super::groupnorm::{GroupNorm2d, Norm};
use super::IMAGE_SIDE;
use crate::kernels::{reference, ConvSpec, Kernels, Ops, StackLayer};

/// Hyper-parameters of ConvNet-S.
#[derive(Debug, Clone, Copy)]
pub struct ConvNetSConfig {
    /// Input channels (1 for grayscale).
    pub in_channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Normalization layers.
    pub norm: Norm,
}

impl Default for ConvNetSConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            height: IMAGE_SIDE,
            width: IMAGE_SIDE,
            norm: Norm::Batch,
        }
    }
}

/// Hyper-parameters of the 1-D CNN for time-series windows.
#[derive(Debug, Clone, Copy)]
pub struct Cnn1dConfig {
    /// Sensor channels.
    pub channels: usize,
    /// Time steps per window.
    pub length: usize,
    /// Width `w` of the first stage (the stages have w, 2w, 4w, 128 channels).
    pub width: usize,
    /// Normalization layers.
    pub norm: Norm,
}

/// One conv → norm → ReLU stage.
#[derive(Module, Debug)]
pub struct ConvBlock<B: Backend> {
    /// 3×3 convolution without bias (a normalization follows).
    pub conv: Conv2d<B>,
    /// BatchNorm ([`Norm::Batch`]).
    pub bn: Option<BatchNorm2d<B>>,
    /// GroupNorm ([`Norm::Group`]).
    pub gn: Option<GroupNorm2d<B>>,
}

impl<B: Backend> ConvBlock<B> {
    /// A stage with a `kernel` convolution, "same" padding and the given stride.
    pub(crate) fn new(
        cin: usize,
        cout: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        norm: Norm,
        device: &B::Device,
    ) -> Self {
        let [ph, pw] = [kernel[0] / 2, kernel[1] / 2];
        Self {
            conv: Conv2dConfig::new([cin, cout], kernel)
                .with_stride(stride)
                .with_padding(PaddingConfig2d::Explicit(ph, pw, ph, pw))
                .with_bias(false)
                .init(device),
            bn: (norm == Norm::Batch).then(|| BatchNorm2d::new(cout, device)),
            gn: (norm == Norm::Group).then(|| GroupNorm2d::new(cout, device)),
        }
    }

    fn spec(&self) -> ConvSpec {
        let [_, _, kh, kw] = self.conv.weight.dims();
        ConvSpec {
            stride: self.conv.stride,
            padding: [kh / 2, kw / 2],
        }
    }

    fn forward(&self, x: Tensor<B, 4>, mode: BnMode, ops: Ops) -> Tensor<B, 4>
    where
        B: Kernels,
    {
        self.forward_act(x, mode, true, ops)
    }

    /// Convolution then BatchNorm, with a ReLU when `relu` (residual blocks add their
    /// shortcut before the last one).
    pub(crate) fn forward_act(
        &self,
        x: Tensor<B, 4>,
        mode: BnMode,
        relu: bool,
        ops: Ops,
    ) -> Tensor<B, 4>
    where
        B: Kernels,
    {
        let spec = self.spec();
        let w = self.conv.weight.val();
        let y = match ops {
            Ops::Kernels => B::kernel_conv2d(x, w, spec),
            Ops::Burn => reference::conv2d(x, w, spec),
        };
        match (&self.bn, &self.gn) {
            (Some(bn), _) => bn.forward_with(y, mode, relu, ops),
            (None, Some(gn)) => gn.forward_with(y, relu, ops),
            (None, None) if relu => burn::tensor::activation::relu(y),
            (None, None) => y,
        }
    }
}

/// A convolutional encoder: conv → BN → ReLU stages, then global average pooling.
#[derive(Module, Debug)]
pub struct ConvNet<B: Backend> {
    /// Stages, in order.
    pub blocks: Vec<ConvBlock<B>>,
    /// Input `[channels, height, width]` (height 1 for time series).
    #[module(skip)]
    pub input: [usize; 3],
}

/// The ConvNet-S encoder (a [`ConvNet`] with ConvNet-S's stages).
pub type ConvNetS<B> = ConvNet<B>;

/// Width of the representation the convolutional encoders produce.
pub const CONVNET_S_DIM: usize = 128;

/// Strides of ConvNet-S's four stages (and of the 1-D CNN's, along time).
pub const CONVNET_STRIDES: [usize; 4] = [1, 2, 2, 2];

/// Side of the last feature map for an input side of `side` ("same" padding).
pub fn grid_side(side: usize) -> usize {
    CONVNET_STRIDES.iter().fold(side, |s, &k| s.div_ceil(k))
}

fn build<B: Backend>(
    plan: &[(usize, usize, usize)],
    kernel: [usize; 2],
    one_d: bool,
    input: [usize; 3],
    norm: Norm,
    device: &B::Device,
) -> ConvNet<B> {
    ConvNet {
        blocks: plan
            .iter()
            .map(|&(i, o, s)| {
                let stride = if one_d { [1, s] } else { [s, s] };
                ConvBlock::new(i, o, kernel, stride, norm, device)
            })
            .collect(),
        input,
    }
}

impl ConvNetSConfig {
    /// Builds the encoder with burn's default (Kaiming-uniform) initialization.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ConvNet<B> {
        let [s0, s1, s2, s3] = CONVNET_STRIDES;
        let plan = [
            (self.in_channels, 32, s0),
            (32, 64, s1),
            (64, 128, s2),
            (128, CONVNET_S_DIM, s3),
        ];
        let input = [self.in_channels, self.height, self.width];
        build(&plan, [3, 3], false, input, self.norm, device)
    }
}

impl Cnn1dConfig {
    /// Builds the encoder with burn's default (Kaiming-uniform) initialization.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ConvNet<B> {
        let w = self.width;
        let [s0, s1, s2, s3] = CONVNET_STRIDES;
        let plan = [
            (self.channels, w, s0),
            (w, 2 * w, s1),
            (2 * w, 4 * w, s2),
            (4 * w, CONVNET_S_DIM, s3),
        ];
        build(
            &plan,
            [1, 5],
            true,
            [self.channels, 1, self.length],
            self.norm,
            device,
        )
    }
}

impl<B: Kernels> ConvNet<B> {
    /// Maps flat samples `[N, C·H·W]` to `[N, 128]` representations. Time series may be
    /// shorter or longer than the configured window (the pooling is global).
    pub fn forward_flat(&self, x: Tensor<B, 2>, mode: BnMode, ops: Ops) -> Tensor<B, 2> {
        let [n, d] = x.dims();
        let [c, h, _] = self.input;
        let w = d / (c * h).max(1);
        self.forward_with(x.reshape([n, c, h, w]), mode, ops)
    }

    /// Maps `[N, C, H, W]` inputs to `[N, 128]` representations.
    pub fn forward(&self, x: Tensor<B, 4>, mode: BnMode) -> Tensor<B, 2> {
        self.forward_with(x, mode, Ops::Kernels)
    }

    /// [`ConvNetS::forward`] with the chosen implementation of the operations
    /// ([`Ops::Burn`] is the reference the kernels are tested and benchmarked against).
    pub fn forward_with(&self, x: Tensor<B, 4>, mode: BnMode, ops: Ops) -> Tensor<B, 2> {
        let h = self.feature_map(x, mode, ops);
        let [n, c, hh, ww] = h.dims();
        h.reshape([n, c, hh * ww]).mean_dim(2).reshape([n, c])
    }

    /// The last stage's feature map `[N, 128, H', W']` of flat samples (before pooling).
    pub fn feature_map_flat(&self, x: Tensor<B, 2>, mode: BnMode, ops: Ops) -> Tensor<B, 4> {
        let [n, d] = x.dims();
        let [c, h, _] = self.input;
        let w = d / (c * h).max(1);
        self.feature_map(x.reshape([n, c, h, w]), mode, ops)
    }

    /// The last stage's feature map `[N, 128, H', W']` (before pooling).
    pub fn feature_map(&self, x: Tensor<B, 4>, mode: BnMode, ops: Ops) -> Tensor<B, 4> {
        let batch_norms: Option<Vec<&BatchNorm2d<B>>> =
            self.blocks.iter().map(|b| b.bn.as_ref()).collect();
        if let (BnMode::Eval, Ops::Kernels, Some(bns)) = (mode, ops, batch_norms) {
            // Inference: one fused conv → BN → ReLU stack.
            let layers = self
                .blocks
                .iter()
                .zip(bns)
                .map(|(b, bn)| {
                    let (scale, shift) = bn.eval_affine();
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
        }
    }
}

pub use fedssl_core::weights::is_bn_statistic;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::ModuleWeights;
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
