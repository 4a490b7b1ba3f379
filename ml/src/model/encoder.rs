//! The encoder of a run, chosen per modality: ConvNet-S or the ResNet for images, the 1-D
//! CNN for time-series windows, the MLP for tabular records, the byte-level Transformer
//! for text. Every encoder maps flat samples `[N, shape.len()]` to `[N, 128]`
//! representations.

use burn::module::Module;
use burn::prelude::*;

use super::batchnorm::BnMode;
use super::convnet::{grid_side, Cnn1dConfig, ConvNet, ConvNetSConfig, CONVNET_S_DIM};
use super::mlp::{Mlp, MlpConfig};
use super::resnet::{ResNet, ResNetConfig};
use super::transformer::{TextEncoder, TextEncoderConfig};
use crate::data::SampleShape;
use crate::kernels::{Kernels, Ops};

pub use fedssl_core::spec::{EncoderConfig, REPR_DIM};
const _: () = assert!(REPR_DIM == CONVNET_S_DIM);

/// Building an encoder, and what depends on the encoders' layout.
pub trait EncoderConfigExt {
    /// The pixels `[rows, columns]` of an image each cell of ConvNet-S's last feature map
    /// covers (`None` unless the image divides evenly into the grid): masked image modeling
    /// predicts each cell's patch from that cell's features.
    fn cell(&self, shape: SampleShape) -> Option<[usize; 2]>;

    /// Builds the encoder for samples of `shape` (checked with [`EncoderConfig::check`]).
    fn init<B: Backend>(
        &self,
        shape: SampleShape,
        norm: super::groupnorm::Norm,
        device: &B::Device,
    ) -> Result<Encoder<B>, String>;
}

impl EncoderConfigExt for EncoderConfig {
    fn cell(&self, shape: SampleShape) -> Option<[usize; 2]> {
        let SampleShape::Image {
            channels,
            height,
            width,
        } = shape
        else {
            return None;
        };
        let (gh, gw) = match *self {
            Self::ConvnetS => (grid_side(height), grid_side(width)),
            Self::Resnet { width: base } => {
                let halvings = ResNetConfig {
                    channels,
                    height,
                    width,
                    base,
                    norm: super::groupnorm::Norm::Batch,
                }
                .downsampling()
                .trailing_zeros();
                let shrink = |s: usize| (0..halvings).fold(s, |s, _| s.div_ceil(2));
                (shrink(height), shrink(width))
            }
            _ => return None,
        };
        (height % gh == 0 && width % gw == 0).then_some([height / gh, width / gw])
    }

    fn init<B: Backend>(
        &self,
        shape: SampleShape,
        norm: super::groupnorm::Norm,
        device: &B::Device,
    ) -> Result<Encoder<B>, String> {
        self.check(shape)?;
        Ok(match (*self, shape) {
            (
                Self::ConvnetS,
                SampleShape::Image {
                    channels,
                    height,
                    width,
                },
            ) => Encoder::Conv(
                ConvNetSConfig {
                    in_channels: channels,
                    height,
                    width,
                    norm,
                }
                .init(device),
            ),
            (
                Self::Resnet { width: base },
                SampleShape::Image {
                    channels,
                    height,
                    width,
                },
            ) => Encoder::Resnet(
                ResNetConfig {
                    channels,
                    height,
                    width,
                    base,
                    norm,
                }
                .init(device),
            ),
            (Self::Transformer { dim, layers, heads }, SampleShape::Text { length }) => {
                Encoder::Text(
                    TextEncoderConfig {
                        length,
                        dim,
                        layers,
                        heads,
                    }
                    .init(device),
                )
            }
            (Self::Cnn1d { width }, SampleShape::Series { channels, length }) => Encoder::Conv(
                Cnn1dConfig {
                    channels,
                    length,
                    width,
                    norm,
                }
                .init(device),
            ),
            (Self::Mlp { hidden }, SampleShape::Tabular { features }) => Encoder::Mlp(
                MlpConfig {
                    features,
                    hidden,
                    output: REPR_DIM,
                    norm,
                }
                .init(device),
            ),
            _ => return Err(format!("no {} encoder for {shape}", self.name())),
        })
    }
}

/// An encoder of any kind (its parameters are named as the inner network's).
// One encoder per model, never stored in bulk: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Encoder<B: Backend> {
    /// ConvNet-S or the 1-D CNN.
    Conv(ConvNet<B>),
    /// The MLP.
    Mlp(Mlp<B>),
    /// The ResNet.
    Resnet(ResNet<B>),
    /// The byte-level Transformer.
    Text(TextEncoder<B>),
}

impl<B: Kernels> Encoder<B> {
    /// Maps flat samples `[N, D]` to `[N, 128]` representations.
    pub fn forward(&self, x: Tensor<B, 2>, mode: BnMode) -> Tensor<B, 2> {
        self.forward_with(x, mode, Ops::Kernels)
    }

    /// [`Encoder::forward`] with the chosen implementation of the operations.
    pub fn forward_with(&self, x: Tensor<B, 2>, mode: BnMode, ops: Ops) -> Tensor<B, 2> {
        match self {
            Self::Conv(c) => c.forward_flat(x, mode, ops),
            Self::Mlp(m) => m.forward_with(x, mode, ops),
            Self::Resnet(r) => r.forward_flat(x, mode, ops),
            Self::Text(t) => t.forward(x),
        }
    }

    /// The last feature map `[N, C, H', W']` of image encoders (before pooling): each cell
    /// covers one patch of the image ([`EncoderConfig::cell`]). `None` for other encoders.
    pub fn feature_map_flat(
        &self,
        x: Tensor<B, 2>,
        mode: BnMode,
        ops: Ops,
    ) -> Option<Tensor<B, 4>> {
        match self {
            Self::Conv(c) => Some(c.feature_map_flat(x, mode, ops)),
            Self::Resnet(r) => Some(r.feature_map_flat(x, mode, ops)),
            _ => None,
        }
    }
}

impl<B: Backend> Encoder<B> {
    /// Values per input sample the encoder was built for.
    pub fn input_len(&self) -> usize {
        match self {
            Self::Conv(c) => c.input.iter().product(),
            Self::Mlp(m) => m.layers.first().map_or(0, |l| l.fc.weight.dims()[0]),
            Self::Resnet(r) => r.input.iter().product(),
            Self::Text(t) => t.length(),
        }
    }
}
