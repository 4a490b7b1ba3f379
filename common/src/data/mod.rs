//! Data sources and datasets. Every source — the IDX reader ([`idx`]), CSV files of
//! records or time series ([`csv_source`]) and the generators of each modality ([`synthetic`] images, [`sensors`] time series, [`records`] tabular) —
//! produces a [`Dataset`]: fixed-size samples of one [`SampleShape`], with optional labels
//! used only for evaluation and fine-tuning. [`partition`] splits a pool across simulated
//! clients.

pub mod csv_source;
pub mod idx;
pub mod partition;
pub mod records;
pub mod sensors;
pub mod synthetic;

pub use partition::Partition;

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
    /// Byte-level text, `length` byte values (no encoder reads text yet).
    Text {
        /// Tokens per sample.
        length: usize,
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
        }
    }

    /// True when a sample holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The modality's name: `image`, `series`, `tabular` or `text`.
    pub fn modality(&self) -> &'static str {
        match self {
            Self::Image { .. } => "image",
            Self::Series { .. } => "series",
            Self::Tabular { .. } => "tabular",
            Self::Text { .. } => "text",
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

/// Loads data of `shape` from `path`, or generates the default set of `shape`'s modality
/// when `path` is `None`:
/// - 28×28 images: an IDX folder (its own train and test files);
/// - tabular records: a CSV file ([`csv_source::load_table`]);
/// - time series: a CSV file or a folder of them ([`csv_source::load_series`], windows
///   every half window).
///
/// A CSV source has no test split: its last 20 % (after a seeded shuffle) is held out.
pub fn load_splits(
    path: Option<&std::path::Path>,
    shape: SampleShape,
    seed: u64,
) -> anyhow::Result<Splits> {
    let holdout = |d: Dataset| -> Splits {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut idx: Vec<usize> = (0..d.len()).collect();
        idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        let cut = d.len() - d.len() / 5;
        Splits {
            train: d.subset(&idx[..cut]),
            test: d.subset(&idx[cut..]),
        }
    };
    match (path, shape) {
        (Some(d), SampleShape::GRAY_28) => idx::load_dir(d),
        (Some(p), SampleShape::Tabular { features }) => {
            Ok(holdout(csv_source::load_table(p, features)?))
        }
        (Some(p), SampleShape::Series { channels, length }) => Ok(holdout(
            csv_source::load_series(p, channels, length, (length / 2).max(1))?,
        )),
        (Some(d), s) => anyhow::bail!(
            "{}: no reader for {s} here (IDX folders hold 28×28 images; CSV files hold records or time series)",
            d.display()
        ),
        (None, SampleShape::GRAY_28) => Ok(synthetic::default_splits(seed)),
        (None, SampleShape::Series { channels, length }) => {
            Ok(sensors::splits(channels, length, seed))
        }
        (None, SampleShape::Tabular { features }) => Ok(records::splits(features, seed)),
        (None, s) => anyhow::bail!("fedssl generates no default data of {s}"),
    }
}
