//! A small ResNet in the ResNet-18 layout (He et al., 2016) for colour images of 32×32 and
//! larger: a stem, four stages of two basic residual blocks each (widths w, 2w, 4w, 8w;
//! stages 2–4 halve the resolution), global average pooling, and a linear map to the
//! 128-d representation when 8w differs from 128.
//!
//! The stem follows the image size: a 3×3 stride-1 convolution for sides up to 64 (the
//! CIFAR variant, which keeps the detail of small images), the original 7×7 stride-2
//! convolution and 3×3 stride-2 max pooling above. With `width = 64` this is ResNet-18
//! itself (11 M parameters); the default width 16 has 0.7 M.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::module::max_pool2d;

use super::batchnorm::BnMode;
use super::convnet::ConvBlock;
use super::encoder::REPR_DIM;
use super::groupnorm::Norm;
use crate::kernels::{Kernels, Ops};

/// Image sides above which the stem downsamples by 4 (7×7 stride-2 conv + max pooling).
pub const LARGE_IMAGE_SIDE: usize = 64;

/// Hyper-parameters of the ResNet.
#[derive(Debug, Clone, Copy)]
pub struct ResNetConfig {
    /// Input channels (3 for RGB).
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Channels `w` of the first stage (the stages have w, 2w, 4w, 8w); 64 is ResNet-18.
    pub base: usize,
    /// Normalization layers.
    pub norm: Norm,
}

/// A basic residual block: two 3×3 conv → BN layers, the first with a ReLU, plus a
/// shortcut (identity, or a 1×1 conv → BN where the shape changes), then a ReLU.
#[derive(Module, Debug)]
pub struct BasicBlock<B: Backend> {
    /// First convolution (carries the block's stride).
    pub conv1: ConvBlock<B>,
    /// Second convolution.
    pub conv2: ConvBlock<B>,
    /// Projection shortcut, where the width or resolution changes.
    pub shortcut: Option<ConvBlock<B>>,
}

impl<B: Backend> BasicBlock<B> {
    fn new(cin: usize, cout: usize, stride: usize, norm: Norm, device: &B::Device) -> Self {
        Self {
            conv1: ConvBlock::new(cin, cout, [3, 3], [stride, stride], norm, device),
            conv2: ConvBlock::new(cout, cout, [3, 3], [1, 1], norm, device),
            shortcut: (stride != 1 || cin != cout)
                .then(|| ConvBlock::new(cin, cout, [1, 1], [stride, stride], norm, device)),
        }
    }
}

impl<B: Kernels> BasicBlock<B> {
    fn forward(&self, x: Tensor<B, 4>, mode: BnMode, ops: Ops) -> Tensor<B, 4> {
        let h = self.conv1.forward_act(x.clone(), mode, true, ops);
        let h = self.conv2.forward_act(h, mode, false, ops);
        let skip = match &self.shortcut {
            Some(s) => s.forward_act(x, mode, false, ops),
            None => x,
        };
        burn::tensor::activation::relu(h + skip)
    }
}

/// The ResNet encoder.
#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    /// The stem convolution.
    pub stem: ConvBlock<B>,
    /// The residual blocks, two per stage.
    pub blocks: Vec<BasicBlock<B>>,
    /// Map from the last stage's 8w channels to the 128-d representation (absent when
    /// 8w = 128).
    pub head: Option<Linear<B>>,
    /// Input `[channels, height, width]`.
    #[module(skip)]
    pub input: [usize; 3],
}

/// Whether the stem of the ResNet for `height × width` images downsamples (images larger
/// than [`LARGE_IMAGE_SIDE`]).
fn large(height: usize, width: usize) -> bool {
    height.min(width) > LARGE_IMAGE_SIDE
}

impl ResNetConfig {
    /// Whether the stem downsamples (images larger than [`LARGE_IMAGE_SIDE`]).
    pub fn large(&self) -> bool {
        large(self.height, self.width)
    }

    /// The factor by which the network shrinks each side before pooling.
    pub fn downsampling(&self) -> usize {
        if self.large() {
            32
        } else {
            8
        }
    }

    /// Builds the encoder with burn's default (Kaiming-uniform) initialization.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResNet<B> {
        let w = self.base.max(1);
        let stem = if self.large() {
            ConvBlock::new(self.channels, w, [7, 7], [2, 2], self.norm, device)
        } else {
            ConvBlock::new(self.channels, w, [3, 3], [1, 1], self.norm, device)
        };
        let mut blocks = Vec::with_capacity(8);
        let mut cin = w;
        for (stage, mult) in [1, 2, 4, 8].into_iter().enumerate() {
            let cout = w * mult;
            let stride = if stage == 0 { 1 } else { 2 };
            blocks.push(BasicBlock::new(cin, cout, stride, self.norm, device));
            blocks.push(BasicBlock::new(cout, cout, 1, self.norm, device));
            cin = cout;
        }
        ResNet {
            stem,
            blocks,
            head: (cin != REPR_DIM).then(|| LinearConfig::new(cin, REPR_DIM).init(device)),
            input: [self.channels, self.height, self.width],
        }
    }
}

impl<B: Kernels> ResNet<B> {
    /// The last stage's feature map `[N, 8w, H/8, W/8]` (`H/32` for large images) of flat
    /// samples `[N, C·H·W]`.
    pub fn feature_map_flat(&self, x: Tensor<B, 2>, mode: BnMode, ops: Ops) -> Tensor<B, 4> {
        let [n, _] = x.dims();
        let [c, h, w] = self.input;
        let mut y = self
            .stem
            .forward_act(x.reshape([n, c, h, w]), mode, true, ops);
        let [_, _, kh, _] = self.stem.conv.weight.dims();
        if kh == 7 {
            y = max_pool2d(y, [3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        self.blocks.iter().fold(y, |y, b| b.forward(y, mode, ops))
    }

    /// Maps flat samples `[N, C·H·W]` to `[N, 128]` representations.
    pub fn forward_flat(&self, x: Tensor<B, 2>, mode: BnMode, ops: Ops) -> Tensor<B, 2> {
        let f = self.feature_map_flat(x, mode, ops);
        let [n, c, h, w] = f.dims();
        let pooled = f.reshape([n, c, h * w]).mean_dim(2).reshape([n, c]);
        match &self.head {
            Some(l) => super::groupnorm::linear(l, pooled, ops),
            None => pooled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::ModuleWeights;
    use burn::backend::Flex;

    #[test]
    fn resnet18_layout_shapes_and_parameter_count() {
        let dev = Default::default();
        let cfg = ResNetConfig {
            channels: 3,
            height: 32,
            width: 32,
            base: 16,
            norm: Norm::Batch,
        };
        let net = cfg.init::<Flex>(&dev);
        assert_eq!(net.blocks.len(), 8);
        let x = Tensor::<Flex, 2>::zeros([2, 3 * 32 * 32], &dev);
        let f = net.feature_map_flat(x.clone(), BnMode::Train, Ops::Kernels);
        assert_eq!(f.dims(), [2, 128, 4, 4]);
        assert_eq!(
            net.forward_flat(x, BnMode::Train, Ops::Kernels).dims(),
            [2, 128]
        );
        // Independent count of ResNet-18's convolutions at width w = 16 (CIFAR stem):
        // stem 3·w·9; per stage two blocks of two 3×3 convs; 1×1 shortcuts in stages 2–4.
        let w = 16;
        let mut convs = 3 * w * 9;
        let mut bn_channels = w;
        let mut cin = w;
        for m in [1, 2, 4, 8] {
            let c = w * m;
            convs += 9 * (cin * c + c * c) + 9 * (2 * c * c);
            bn_channels += 4 * c;
            if cin != c {
                convs += cin * c;
                bn_channels += c;
            }
            cin = c;
        }
        let w = crate::model::Weights::global_from_module(&net);
        assert_eq!(w.num_params(), convs + 2 * bn_channels);
        // At width 64 the count is ResNet-18's 11.17 M (without its 1000-class head).
        let big = ResNetConfig { base: 64, ..cfg }.init::<Flex>(&dev);
        let n = crate::model::Weights::global_from_module(&big).num_params();
        assert_eq!(n - 512 * 128 - 128, 11_168_832);
    }

    #[test]
    fn large_images_use_the_downsampling_stem() {
        let dev = Default::default();
        let cfg = ResNetConfig {
            channels: 3,
            height: 96,
            width: 96,
            base: 8,
            norm: Norm::Batch,
        };
        assert_eq!(cfg.downsampling(), 32);
        let net = cfg.init::<Flex>(&dev);
        let x = Tensor::<Flex, 2>::zeros([1, 3 * 96 * 96], &dev);
        let f = net.feature_map_flat(x, BnMode::Train, Ops::Kernels);
        assert_eq!(f.dims(), [1, 64, 3, 3]);
    }
}
