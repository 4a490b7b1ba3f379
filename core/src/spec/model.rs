//! What every site and the server build the same model from: the encoder, the objective's
//! heads, which parts are global, and the normalization layers.

use serde::{Deserialize, Serialize};

use super::objective::Objective;
use super::shape::SampleShape;

/// Width of every encoder's representation.
pub const REPR_DIM: usize = 128;

/// Where a part of the model lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Averaged by the server and sent back to every site.
    Global,
    /// Trained and kept on the site; never sent.
    #[default]
    Local,
}

/// Where BatchNorm's parameters and statistics live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BatchNormPlacement {
    /// Scale, shift and running statistics are all averaged.
    Global,
    /// Scale and shift are averaged; running statistics (direct aggregates of local data)
    /// stay on the site, and whoever evaluates recalibrates them on its own data.
    #[default]
    StatsLocal,
    /// FedBN: scale, shift and statistics all stay on the site.
    Local,
}

/// Which parts of the model are global. The encoder always is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Parts {
    /// The projector, and the heads in its role (masked-modeling decoder, CPC context).
    pub projector: Placement,
    /// The predictor (SimSiam, BYOL).
    pub predictor: Placement,
    /// BatchNorm layers, in every part.
    pub batch_norm: BatchNormPlacement,
}

impl Parts {
    /// Whether the tensor named `name` (a path in [`SslModel`]) is global.
    pub fn is_global(&self, name: &str) -> bool {
        let part = name.split('.').next().unwrap_or_default();
        let part_global = match part {
            "encoder" | "partner" => true,
            "projector" | "decoder" | "context" => self.projector == Placement::Global,
            "predictor" => self.predictor == Placement::Global,
            _ => false,
        };
        let is_stat = crate::weights::is_bn_statistic(name);
        let is_bn_affine =
            name.contains("bn.") && (name.ends_with(".gamma") || name.ends_with(".beta"));
        part_global
            && match self.batch_norm {
                BatchNormPlacement::Global => true,
                BatchNormPlacement::StatsLocal => !is_stat,
                BatchNormPlacement::Local => !is_stat && !is_bn_affine,
            }
    }
}

/// Everything needed to build the same model on every site and on the server.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The samples' shape.
    pub shape: SampleShape,
    /// The encoder.
    pub encoder: EncoderConfig,
    /// The objective with its settings (decides the heads).
    pub objective: Objective,
    /// Global and local parts.
    pub parts: Parts,
    /// Cross-modal objectives: channels (series) or features (tabular) of the first tower;
    /// the rest go to the second.
    pub split: usize,
    /// CPC: steps ahead predicted.
    pub cpc_steps: usize,
    /// Reordering: permutation classes the head tells apart.
    #[serde(default)]
    pub classes: usize,
    /// Reordering: pieces each sample is cut into (the head reads one representation each).
    #[serde(default)]
    pub pieces: usize,
    /// Normalization layers of the encoder and the predictor (group for DP-SGD).
    pub norm: Norm,
}

impl Default for ModelSpec {
    /// ConvNet-S on 28×28 grayscale images, SimCLR, heads local.
    fn default() -> Self {
        Self {
            shape: SampleShape::GRAY_28,
            encoder: EncoderConfig::ConvnetS,
            objective: Objective::SimClr,
            parts: Parts::default(),
            split: 0,
            cpc_steps: 2,
            classes: 24,
            pieces: 4,
            norm: Norm::Batch,
        }
    }
}

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

    /// Channels of the last feature map of the image encoders (what each cell of
    /// [`EncoderConfig::cell`] carries): 128 for ConvNet-S, 8w for the ResNet; the
    /// representation width for the others.
    pub fn feature_channels(&self) -> usize {
        match *self {
            Self::Resnet { width } => 8 * width,
            _ => REPR_DIM,
        }
    }
}

/// The normalization layers of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Norm {
    /// BatchNorm: statistics over the batch (and running statistics for evaluation).
    #[default]
    Batch,
    /// GroupNorm: statistics per sample and group of channels; no running statistics.
    Group,
}

impl std::str::FromStr for Norm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "batch" => Ok(Norm::Batch),
            "group" => Ok(Norm::Group),
            other => Err(format!(
                "unknown normalization {other:?} (expected batch or group)"
            )),
        }
    }
}

impl Norm {
    /// `"batch"` or `"group"`.
    pub fn name(&self) -> &'static str {
        match self {
            Norm::Batch => "batch",
            Norm::Group => "group",
        }
    }
}
