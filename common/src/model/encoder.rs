//! The encoder of a run, chosen per modality: ConvNet-S or the ResNet for images, the 1-D
//! CNN for time-series windows, the MLP for tabular records, the byte-level Transformer
//! for text. Every encoder maps flat samples `[N, shape.len()]` to `[N, 128]`
//! representations.

use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::batchnorm::BnMode;
use super::convnet::{grid_side, Cnn1dConfig, ConvNet, ConvNetSConfig, CONVNET_S_DIM};
use super::mlp::{Mlp, MlpConfig};
use super::resnet::{ResNet, ResNetConfig};
use super::transformer::{TextEncoder, TextEncoderConfig};
use crate::data::SampleShape;
use crate::kernels::{Kernels, Ops};

/// Width of every encoder's representation.
pub const REPR_DIM: usize = CONVNET_S_DIM;

/// Which encoder, and its size. The input shape comes from the data ([`SampleShape`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum EncoderConfig {
    /// ConvNet-S (images of any size and channel count).
    ConvnetS,
    /// The ResNet-18 layout for colour images of 32×32 and larger.
    Resnet {
        /// Channels of the first stage (the stages have w, 2w, 4w, 8w; 64 is ResNet-18).
        width: usize,
    },
    /// The 1-D CNN over time-series windows; `width` is its first stage's channel count.
    Cnn1d {
        /// Channels of the first stage (the stages have w, 2w, 4w, 128).
        width: usize,
    },
    /// The MLP for tabular records.
    Mlp {
        /// Width of the hidden layers.
        hidden: usize,
    },
    /// The byte-level Transformer for text.
    Transformer {
        /// Width of the token states.
        dim: usize,
        /// Transformer layers.
        layers: usize,
        /// Attention heads (must divide `dim`).
        heads: usize,
    },
}

impl EncoderConfig {
    /// The default encoder of a modality.
    pub fn default_for(shape: SampleShape) -> Self {
        match shape {
            SampleShape::Image { .. } | SampleShape::Captioned { .. } => Self::ConvnetS,
            SampleShape::Series { .. } => Self::Cnn1d { width: 32 },
            SampleShape::Tabular { .. } => Self::Mlp { hidden: 256 },
            SampleShape::Text { .. } => Self::Transformer {
                dim: 64,
                layers: 2,
                heads: 4,
            },
        }
    }

    /// A short name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ConvnetS => "convnet-s",
            Self::Resnet { .. } => "resnet",
            Self::Cnn1d { .. } => "cnn1d",
            Self::Mlp { .. } => "mlp",
            Self::Transformer { .. } => "transformer",
        }
    }

    /// Checks that the encoder can read samples of `shape`; the error names what to change.
    pub fn check(&self, shape: SampleShape) -> Result<(), String> {
        let fits = matches!(
            (self, shape),
            (
                Self::ConvnetS | Self::Resnet { .. },
                SampleShape::Image { .. } | SampleShape::Captioned { .. }
            ) | (Self::Transformer { .. }, SampleShape::Text { .. })
                | (Self::Cnn1d { .. }, SampleShape::Series { .. })
                | (Self::Mlp { .. }, SampleShape::Tabular { .. })
        );
        if !fits {
            return Err(format!(
                "the {} encoder cannot read {shape} (use {} for {} data)",
                self.name(),
                Self::default_for(shape).name(),
                shape.modality()
            ));
        }
        match (*self, shape) {
            (Self::Cnn1d { width: 0 }, _)
            | (Self::Mlp { hidden: 0 }, _)
            | (Self::Resnet { width: 0 }, _)
            | (Self::Transformer { dim: 0, .. }, _) => {
                Err(format!("the {} encoder needs a width ≥ 1", self.name()))
            }
            (Self::Resnet { width }, _) if width > 256 => Err(format!(
                "the resnet encoder's width = {width} is above 256 (64 is ResNet-18)"
            )),
            (Self::Transformer { dim, layers, heads }, _)
                if layers == 0 || layers > 24 || heads == 0 || dim % heads != 0 || dim > 1024 =>
            {
                Err(format!(
                    "the transformer encoder needs 1..=24 layers, dim ≤ 1024 and heads dividing dim (got dim = {dim}, layers = {layers}, heads = {heads})"
                ))
            }
            (_, s) if s.is_empty() => Err(format!("{s} hold no value")),
            _ => Ok(()),
        }
    }

    /// The pixels `[rows, columns]` of an image each cell of ConvNet-S's last feature map
    /// covers (`None` unless the image divides evenly into the grid): masked image modeling
    /// predicts each cell's patch from that cell's features.
    pub fn cell(&self, shape: SampleShape) -> Option<[usize; 2]> {
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

    /// Channels of the last feature map of the image encoders (what each cell of
    /// [`EncoderConfig::cell`] carries): 128 for ConvNet-S, 8w for the ResNet; the
    /// representation width for the others.
    pub fn feature_channels(&self) -> usize {
        match *self {
            Self::Resnet { width } => 8 * width,
            _ => REPR_DIM,
        }
    }

    /// Builds the encoder for samples of `shape` (checked with [`EncoderConfig::check`]).
    pub fn init<B: Backend>(
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
