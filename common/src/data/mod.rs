//! Data sources: the generated default dataset ([`synthetic`]), the IDX reader ([`idx`]) and
//! partitioning across simulated clients ([`partition`]).

pub mod idx;
pub mod partition;
pub mod synthetic;

pub use partition::Partition;

use crate::model::IMAGE_PIXELS;

/// 28×28 grayscale images in `[0, 1]`, with optional labels (used only for evaluation).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    /// Row-major pixels, `len() × 784` values.
    pub images: Vec<f32>,
    /// One label per image, when known.
    pub labels: Option<Vec<u8>>,
    /// Number of classes (for labeled data).
    pub num_classes: usize,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len() / IMAGE_PIXELS
    }

    /// True when there is no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * IMAGE_PIXELS);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            labels: self
                .labels
                .as_ref()
                .map(|l| indices.iter().map(|&i| l[i]).collect()),
            num_classes: self.num_classes,
        }
    }

    /// The first `n` images (or all of them).
    pub fn take(&self, n: usize) -> Dataset {
        let idx: Vec<usize> = (0..n.min(self.len())).collect();
        self.subset(&idx)
    }

    /// The same images without labels.
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

/// Loads an IDX folder, or generates the default dataset when `dir` is `None`.
pub fn load_splits(dir: Option<&std::path::Path>, seed: u64) -> anyhow::Result<Splits> {
    match dir {
        Some(d) => idx::load_dir(d),
        None => Ok(synthetic::default_splits(seed)),
    }
}
