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
pub mod tokens;
pub mod topics;
pub mod windows;

pub use partition::Partition;
pub use source::{load_splits, load_test_set, DataSource, SOURCES};

pub use fedssl_core::spec::SampleShape;

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
