//! The kind and size of every sample of a dataset.

use serde::{Deserialize, Serialize};

/// Side of the default (Fashion-)MNIST images.
pub const IMAGE_SIDE: usize = 28;
/// Pixels of a default image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;

/// The kind and size of every sample of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleShape {
    /// Images, `channels × height × width` values in `[0, 1]`, channel-major.
    Image {
        /// Colour channels (1 grayscale, 3 RGB).
        channels: usize,
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
    },
    /// Windows of a multichannel time series, `channels × length` values, channel-major.
    Series {
        /// Sensor channels.
        channels: usize,
        /// Time steps per window.
        length: usize,
    },
    /// Tabular records of `features` standardized numbers.
    Tabular {
        /// Features per record.
        features: usize,
    },
    /// Byte-level text, `length` tokens: byte values, then padding
    /// (token 256).
    Text {
        /// Tokens per sample.
        length: usize,
    },
    /// Captioned images: an image (`channels × height × width` values in `[0, 1]`,
    /// channel-major), then its caption as `text` byte-level tokens (byte values, then
    /// padding). Cross-modal alignment (`objective = "clip"`) trains an image encoder and a
    /// text encoder on them; evaluations see the image encoder alone.
    Captioned {
        /// Colour channels of the image.
        channels: usize,
        /// Rows of the image.
        height: usize,
        /// Columns of the image.
        width: usize,
        /// Caption tokens.
        text: usize,
    },
}

impl SampleShape {
    /// The shape of ConvNet-S's 28×28 grayscale images.
    pub const GRAY_28: SampleShape = SampleShape::Image {
        channels: 1,
        height: 28,
        width: 28,
    };

    /// Values per sample.
    pub fn len(&self) -> usize {
        match *self {
            Self::Image {
                channels,
                height,
                width,
            } => channels * height * width,
            Self::Series { channels, length } => channels * length,
            Self::Tabular { features } => features,
            Self::Text { length } => length,
            Self::Captioned {
                channels,
                height,
                width,
                text,
            } => channels * height * width + text,
        }
    }

    /// The image part of captioned images (the shape itself for the other modalities).
    pub fn image_part(&self) -> SampleShape {
        match *self {
            Self::Captioned {
                channels,
                height,
                width,
                ..
            } => Self::Image {
                channels,
                height,
                width,
            },
            s => s,
        }
    }

    /// True when a sample holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The modality's name: `image`, `series`, `tabular`, `text` or `image-text`.
    pub fn modality(&self) -> &'static str {
        match self {
            Self::Image { .. } => "image",
            Self::Series { .. } => "series",
            Self::Tabular { .. } => "tabular",
            Self::Text { .. } => "text",
            Self::Captioned { .. } => "image-text",
        }
    }
}

impl std::fmt::Display for SampleShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Image {
                channels,
                height,
                width,
            } => write!(f, "{channels}×{height}×{width} images"),
            Self::Series { channels, length } => {
                write!(f, "windows of {channels} channels × {length} steps")
            }
            Self::Tabular { features } => write!(f, "records of {features} features"),
            Self::Text { length } => write!(f, "texts of {length} bytes"),
            Self::Captioned {
                channels,
                height,
                width,
                text,
            } => write!(
                f,
                "{channels}×{height}×{width} images with captions of {text} bytes"
            ),
        }
    }
}
