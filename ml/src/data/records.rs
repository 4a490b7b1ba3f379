//! The generated tabular set: records of standardized features in five classes.
//!
//! Each record draws a latent vector (4 factors) around one of two centers of its class;
//! the features are fixed
//! nonlinear mixtures of the factors (a random `sin` layer shared by all records) plus
//! noise, and a quarter of the features are pure noise. Classes overlap in every single
//! feature, and both halves of the features carry information about the factors (what
//! cross-modal alignment between feature groups learns from).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::{Dataset, SampleShape, Splits};

/// Classes of the generated records.
pub const CLASSES: usize = 5;
/// Default features per record.
pub const FEATURES: usize = 16;
const FACTORS: usize = 4;

/// `n` labeled records of `features` values, classes round-robin, deterministic for `seed`
/// (the feature map is the same for every seed).
pub fn generate(n: usize, features: usize, seed: u64) -> Dataset {
    let mut map_rng = ChaCha8Rng::seed_from_u64(0x7ab1e);
    let weights: Vec<f32> = (0..features * FACTORS)
        .map(|_| map_rng.gen_range(-2.0f32..2.0))
        .collect();
    // Two clusters per class, placed independently: classes are unions of clusters, which
    // a linear map of the features cannot separate but a clustering representation can.
    let centers: Vec<f32> = (0..2 * CLASSES * FACTORS)
        .map(|_| map_rng.gen_range(-1.5f32..1.5))
        .collect();
    let informative = features - features / 4;
    let normal = Normal::new(0.0f32, 1.0).ok();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut samples = Vec::with_capacity(n * features);
    for i in 0..n {
        let c = i % CLASSES + CLASSES * rng.gen_range(0..2usize);
        let z: Vec<f32> = (0..FACTORS)
            .map(|k| {
                centers[c * FACTORS + k]
                    + 0.25 * normal.as_ref().map_or(0.0, |d| d.sample(&mut rng))
            })
            .collect();
        for f in 0..features {
            let e = 0.7 * normal.as_ref().map_or(0.0, |d| d.sample(&mut rng));
            let v = if f < informative {
                let a: f32 = (0..FACTORS).map(|k| weights[f * FACTORS + k] * z[k]).sum();
                a.sin() * 1.5 + e
            } else {
                normal.as_ref().map_or(0.0, |d| d.sample(&mut rng))
            };
            samples.push(v);
        }
    }
    Dataset {
        samples,
        shape: SampleShape::Tabular { features },
        labels: Some((0..n).map(|i| (i % CLASSES) as u8).collect()),
        num_classes: CLASSES,
    }
}

/// Default train / test splits of records with `features` values.
pub fn splits(features: usize, seed: u64) -> Splits {
    Splits {
        train: generate(4000, features, seed),
        test: generate(1000, features, seed ^ 0x7e57),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_labeled_and_finite() {
        let a = generate(50, 16, 3);
        assert_eq!(a, generate(50, 16, 3));
        assert_eq!((a.len(), a.dim(), a.num_classes), (50, 16, 5));
        assert!(a.samples.iter().all(|v| v.is_finite()));
        assert_ne!(generate(50, 16, 4).samples, a.samples);
    }
}
