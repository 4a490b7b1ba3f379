//! Data sources and datasets. Every on-disk format is one file behind one trait
//! ([`DataSource`], chosen in [`source`]): IDX folders ([`idx`]), folders of PNG / JPEG
//! images ([`image_folder`]), CSV records or time series ([`csv_source`]), NPY time series
//! ([`npy_source`]) and plain-text lines ([`text_lines`]); the time-series readers share
//! [`windows`]. Each modality also has a generator: [`synthetic`] shapes (images),
//! [`sensors`] (time series), [`records`] (tabular), [`topics`] (text). All produce a
//! [`Dataset`]: fixed-size samples of one [`SampleShape`], with optional labels used only
//! for evaluation and fine-tuning. [`partition`] splits a pool across simulated clients.

pub mod captions;
pub mod csv_source;
pub mod idx;
pub mod image_folder;
pub mod npy_source;
pub mod partition;
pub mod records;
pub mod sensors;
pub mod source;
pub mod synthetic;
pub mod text_lines;
pub mod topics;
pub mod windows;

pub use partition::Partition;
pub use source::{load_splits, load_test_set, DataSource, SOURCES};

use serde::{Deserialize, Serialize};

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
    /// ([`transformer::PAD`](crate::model::transformer::PAD)).
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

/// Fixed-size samples with optional labels (used only for evaluation and fine-tuning).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Row-major values, `len() × shape.len()`.
    pub samples: Vec<f32>,
    /// The shape of every sample.
    pub shape: SampleShape,
    /// One label per sample, when known.
    pub labels: Option<Vec<u8>>,
    /// Number of classes (for labeled data).
    pub num_classes: usize,
}

impl Dataset {
    /// Values per sample.
    pub fn dim(&self) -> usize {
        self.shape.len()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len() / self.dim().max(1)
    }

    /// True when there is no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values of sample `i`.
    pub fn sample(&self, i: usize) -> &[f32] {
        let d = self.dim();
        &self.samples[i * d..(i + 1) * d]
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut samples = Vec::with_capacity(indices.len() * self.dim());
        for &i in indices {
            samples.extend_from_slice(self.sample(i));
        }
        Dataset {
            samples,
            shape: self.shape,
            labels: self
                .labels
                .as_ref()
                .map(|l| indices.iter().map(|&i| l[i]).collect()),
            num_classes: self.num_classes,
        }
    }

    /// The first `n` samples (or all of them).
    pub fn take(&self, n: usize) -> Dataset {
        let idx: Vec<usize> = (0..n.min(self.len())).collect();
        self.subset(&idx)
    }

    /// The images of captioned images, without their captions (the dataset itself for the
    /// other modalities).
    pub fn image_part(&self) -> Dataset {
        let (image, d) = (self.shape.image_part(), self.dim());
        if image == self.shape {
            return self.clone();
        }
        let k = image.len();
        Dataset {
            samples: self
                .samples
                .chunks_exact(d.max(1))
                .flat_map(|s| s[..k].iter().copied())
                .collect(),
            shape: image,
            labels: self.labels.clone(),
            num_classes: self.num_classes,
        }
    }

    /// The same samples without labels.
    pub fn unlabeled(mut self) -> Dataset {
        self.labels = None;
        self
    }
}

/// Train and test splits of one dataset.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Pretraining pool (labels kept for partitioning and probing only).
    pub train: Dataset,
    /// Held-out test split.
    pub test: Dataset,
}
