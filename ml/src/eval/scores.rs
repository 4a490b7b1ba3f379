//! The figures every evaluator computes on a pair of feature sets: linear probe, weighted kNN,
//! and probes on class-balanced fractions of the labels. Shared by the server's evaluations,
//! the sites' federated evaluation and the benchmarks, so all report the same thing.

use serde::{Deserialize, Serialize};

use super::knn::{knn_accuracy, KnnConfig};
use super::linalg::gather_rows;
use super::linear_probe::{linear_probe, ProbeConfig, ProbeResult};
use super::subsets::balanced_subset;

/// Labels of an evaluator's training and test sets.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    /// One label per training row.
    pub train: &'a [u8],
    /// One label per test row.
    pub test: &'a [u8],
    /// Number of classes.
    pub classes: usize,
}

/// How features are scored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scorer {
    /// Linear probe settings (its `seed` also seeds the label subsets).
    pub probe: ProbeConfig,
    /// kNN settings.
    pub knn: KnnConfig,
}

/// A probe trained on a class-balanced fraction of the training labels.
#[derive(Debug, Clone, PartialEq)]
pub struct FractionProbe {
    /// Fraction of the training labels.
    pub fraction: f64,
    /// Rows of the training set in the subset.
    pub subset: Vec<usize>,
    /// Test accuracy of the probe.
    pub accuracy: f64,
}

/// Scores of one pair of feature sets.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureScores {
    /// Probe on all training labels.
    pub probe: ProbeResult,
    /// Weighted-kNN test accuracy.
    pub knn: f64,
    /// One probe per requested fraction, in order.
    pub fractions: Vec<FractionProbe>,
}

impl Scorer {
    /// A scorer whose probe (and label subsets) use `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self {
            probe: ProbeConfig {
                seed,
                ..ProbeConfig::default()
            },
            knn: KnnConfig::default(),
        }
    }

    /// Scores `train` / `test` features (`n × dim`, row-major).
    pub fn score(
        &self,
        train: &[f32],
        test: &[f32],
        dim: usize,
        labels: Labels<'_>,
        fractions: &[f64],
    ) -> FeatureScores {
        let probe = |x: &[f32], y: &[u8]| {
            linear_probe(x, y, test, labels.test, dim, labels.classes, &self.probe)
        };
        let fractions = fractions
            .iter()
            .map(|&fraction| {
                let subset = balanced_subset(labels.train, fraction, self.probe.seed);
                let y: Vec<u8> = subset.iter().map(|&i| labels.train[i]).collect();
                let accuracy = probe(&gather_rows(train, dim, &subset), &y).test_accuracy;
                FractionProbe {
                    fraction,
                    subset,
                    accuracy,
                }
            })
            .collect();
        FeatureScores {
            probe: probe(train, labels.train),
            knn: knn_accuracy(
                train,
                labels.train,
                test,
                labels.test,
                dim,
                labels.classes,
                self.knn,
            ),
            fractions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_features_score_perfectly_on_every_fraction() {
        // Class c at 4·e_c plus a small wobble; 20 rows per class.
        let (dim, k, n) = (3, 3, 60);
        let make = |offset: usize| {
            let mut x = vec![0.0f32; n * dim];
            let y: Vec<u8> = (0..n).map(|i| (i % k) as u8).collect();
            for i in 0..n {
                for d in 0..dim {
                    x[i * dim + d] = ((i + d + offset) % 4) as f32 * 0.1;
                }
                x[i * dim + i % k] += 4.0;
            }
            (x, y)
        };
        let ((tr, ytr), (te, yte)) = (make(0), make(1));
        let labels = Labels {
            train: &ytr,
            test: &yte,
            classes: k,
        };
        let s = Scorer::seeded(3).score(&tr, &te, dim, labels, &[0.1, 1.0]);
        assert_eq!((s.probe.test_accuracy, s.knn), (1.0, 1.0));
        assert_eq!(s.fractions.len(), 2);
        assert_eq!(s.fractions[0].subset.len(), 6, "2 of 20 per class");
        assert_eq!(s.fractions[1].subset.len(), n);
        assert!(s.fractions.iter().all(|f| f.accuracy == 1.0));
    }
}
