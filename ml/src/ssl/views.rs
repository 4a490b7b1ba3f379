//! Augmented views for every modality: images ([`Augmenter`]), time-series windows
//! ([`SeriesAugmenter`]) and tabular records (SCARF: a random subset of the features is
//! replaced by values drawn from each feature's marginal, i.e. the same feature of another
//! local record).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::augment::Augmenter;
use super::series_augment::SeriesAugmenter;
use crate::data::{Dataset, SampleShape};
pub use fedssl_core::spec::{AugmentSettings, ScarfConfig};

/// The random stream `stream` of `seed`: every view and mask draws from its own, so a
/// sample's view does not depend on the others in its batch.
pub fn stream_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Makes views of the samples of one dataset.
#[derive(Debug, Clone)]
pub enum ViewMaker {
    /// Images.
    Image(Augmenter),
    /// Time-series windows.
    Series(SeriesAugmenter),
    /// Tabular records (SCARF).
    Tabular(ScarfConfig),
    /// No augmentation (the view is the sample).
    Identity,
}

impl ViewMaker {
    /// The view maker for samples of `shape`.
    pub fn for_shape(shape: SampleShape, settings: &AugmentSettings) -> Self {
        match shape {
            SampleShape::Image {
                channels,
                height,
                width,
            } => Self::Image(Augmenter::for_shape(
                settings.image,
                channels,
                height,
                width,
            )),
            SampleShape::Series { channels, length } => {
                Self::Series(SeriesAugmenter::new(settings.series, channels, length))
            }
            SampleShape::Tabular { .. } => Self::Tabular(settings.tabular),
            // Captions say where the shape is and how large: crops and flips would make
            // them wrong.
            SampleShape::Text { .. } | SampleShape::Captioned { .. } => Self::Identity,
        }
    }

    /// Writes the view of sample `i` of `data` for `(seed, stream)` into `dst`.
    pub fn view(&self, data: &Dataset, i: usize, dst: &mut [f32], seed: u64, stream: u64) {
        let src = data.sample(i);
        match self {
            Self::Image(a) => a.view(src, dst, seed, stream),
            Self::Series(a) => a.view(src, dst, seed, stream),
            Self::Tabular(s) => {
                let mut rng = stream_rng(seed, stream);
                let n = data.len();
                for (j, (out, &v)) in dst.iter_mut().zip(src).enumerate() {
                    *out = if n > 1 && rng.gen::<f32>() < s.corruption {
                        data.sample(rng.gen_range(0..n))[j]
                    } else {
                        v
                    };
                }
            }
            Self::Identity => dst.copy_from_slice(src),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scarf_replaces_features_with_values_of_the_same_feature() {
        // Feature j of record r is 100·j + r: a replaced value keeps its feature (the
        // hundreds) and comes from another record.
        let (n, f) = (50, 8);
        let data = Dataset {
            samples: (0..n * f).map(|k| (100 * (k % f) + k / f) as f32).collect(),
            shape: SampleShape::Tabular { features: f },
            labels: None,
            num_classes: 0,
        };
        let vm = ViewMaker::Tabular(ScarfConfig { corruption: 0.5 });
        let mut changed = 0;
        for s in 0..20 {
            let mut out = vec![0.0; f];
            vm.view(&data, 3, &mut out, s, 1);
            for (j, v) in out.iter().enumerate() {
                assert_eq!((*v as usize) / 100, j);
                changed += usize::from(*v as usize % 100 != 3);
            }
        }
        // About half of 160 features replaced (a replacement may draw record 3 itself).
        assert!((50..=110).contains(&changed), "{changed}");
    }
}
