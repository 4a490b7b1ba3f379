//! The encoder of a run, chosen per modality: ConvNet-S for images, the 1-D CNN for
//! time-series windows, the MLP for tabular records. Every encoder maps flat samples
//! `[N, shape.len()]` to `[N, 128]` representations.

use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::batchnorm::BnMode;
use super::convnet::{grid_side, Cnn1dConfig, ConvNet, ConvNetSConfig, CONVNET_S_DIM};
use super::mlp::{Mlp, MlpConfig};
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
}

impl EncoderConfig {
    /// The default encoder of a modality.
    pub fn default_for(shape: SampleShape) -> Self {
        match shape {
            SampleShape::Image { .. } => Self::ConvnetS,
            SampleShape::Series { .. } => Self::Cnn1d { width: 32 },
            SampleShape::Tabular { .. } | SampleShape::Text { .. } => Self::Mlp { hidden: 256 },
        }
    }

    /// A short name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ConvnetS => "convnet-s",
            Self::Cnn1d { .. } => "cnn1d",
            Self::Mlp { .. } => "mlp",
        }
    }

    /// Checks that the encoder can read samples of `shape`; the error names what to change.
    pub fn check(&self, shape: SampleShape) -> Result<(), String> {
        let fits = matches!(
            (self, shape),
            (Self::ConvnetS, SampleShape::Image { .. })
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
            (Self::Cnn1d { width: 0 }, _) | (Self::Mlp { hidden: 0 }, _) => {
                Err(format!("the {} encoder needs a width ≥ 1", self.name()))
            }
            (_, s) if s.is_empty() => Err(format!("{s} hold no value")),
            _ => Ok(()),
        }
    }

    /// The pixels `[rows, columns]` of an image each cell of ConvNet-S's last feature map
    /// covers (`None` unless the image divides evenly into the grid): masked image modeling
    /// predicts each cell's patch from that cell's features.
    pub fn cell(&self, shape: SampleShape) -> Option<[usize; 2]> {
        let (Self::ConvnetS, SampleShape::Image { height, width, .. }) = (self, shape) else {
            return None;
        };
        let (gh, gw) = (grid_side(height), grid_side(width));
        (height % gh == 0 && width % gw == 0).then_some([height / gh, width / gw])
    }

    /// Builds the encoder for samples of `shape` (checked with [`EncoderConfig::check`]).
    pub fn init<B: Backend>(
        &self,
        shape: SampleShape,
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
                }
                .init(device),
            ),
            (Self::Cnn1d { width }, SampleShape::Series { channels, length }) => Encoder::Conv(
                Cnn1dConfig {
                    channels,
                    length,
                    width,
                }
                .init(device),
            ),
            (Self::Mlp { hidden }, SampleShape::Tabular { features }) => Encoder::Mlp(
                MlpConfig {
                    features,
                    hidden,
                    output: REPR_DIM,
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
        }
    }
}

impl<B: Backend> Encoder<B> {
    /// Values per input sample the encoder was built for.
    pub fn input_len(&self) -> usize {
        match self {
            Self::Conv(c) => c.input.iter().product(),
            Self::Mlp(m) => m.layers.first().map_or(0, |l| l.fc.weight.dims()[0]),
        }
    }
}
