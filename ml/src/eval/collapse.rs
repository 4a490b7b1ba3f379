//! Representation-collapse monitors.
//!
//! * The mean per-dimension standard deviation of the L2-normalized embeddings: about
//!   `1/√d` when embeddings spread over the sphere, 0 when they all coincide
//!   (Chen & He 2021, SimSiam §4).
//! * The effective rank (Roy & Vetterli 2007) of the covariance of the normalized embeddings:
//!   `exp(H(p))` where `p` are its eigenvalues normalized to sum to 1. `d` when every
//!   direction varies equally, 1 when all embeddings vary along one line (dimensional
//!   collapse), and 1 by convention when they all coincide (no variance at all). Centering
//!   matters: encoder outputs after ReLU share a large mean direction that would otherwise
//!   dominate the spectrum of a healthy encoder.
//!
//! A fixed share of `d` does not see dimensional collapse: a random-init ConvNet-S already
//! spreads its 128-d output over an effective rank of about 22 on Fashion-MNIST, and an
//! encoder that trained down to 7 stayed above `0.02·d`. The monitor therefore compares a
//! trained encoder with a reference ([`CollapseMetrics::with_reference`]): the effective
//! rank of the random-init encoder of the same architecture on the same samples
//! ([`init_rank`]), and warns below [`RANK_WARN_OF_REFERENCE`] of it.

use crate::prelude::*;
use serde::{Deserialize, Serialize};

use super::features::encode_with_weights;
use super::knn::l2_normalize_rows;
use super::linalg::{column_moments, matmul, MatRef};
use crate::data::Dataset;
use crate::model::ModelSpec;

/// Warn when `embedding_std · √d` falls below this (healthy ≈ 1, collapsed → 0).
pub const STD_WARN: f64 = 0.1;
/// Warn when the effective rank falls below this share of the reference rank (the
/// random-init encoder's on the same samples).
pub const RANK_WARN_OF_REFERENCE: f64 = 0.5;
/// Without a reference, warn when the effective rank falls below this: every embedding
/// then varies along about one direction.
pub const RANK_WARN_FLOOR: f64 = 2.0;

/// Collapse figures of one set of embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CollapseMetrics {
    /// Mean over dimensions of the standard deviation of the normalized embeddings.
    pub embedding_std: f64,
    /// `embedding_std · √d`: about 1 for spread embeddings, 0 for collapsed ones.
    pub std_ratio: f64,
    /// Effective rank of the covariance of the normalized embeddings, in `[1, d]`.
    pub effective_rank: f64,
    /// Embedding dimension.
    pub dim: usize,
    /// Embeddings measured.
    pub samples: usize,
    /// Effective rank of the random-init encoder of the same architecture on the same
    /// samples, when measured: the rank the monitor compares against.
    #[serde(default)]
    pub reference_rank: Option<f64>,
}

impl CollapseMetrics {
    /// These figures compared against `reference_rank` (the random-init encoder's effective
    /// rank on the same samples, see [`init_rank`]).
    pub fn with_reference(self, reference_rank: f64) -> Self {
        Self {
            reference_rank: Some(reference_rank),
            ..self
        }
    }

    /// The effective rank below which [`CollapseMetrics::warnings`] warns.
    pub fn rank_floor(&self) -> f64 {
        match self.reference_rank {
            Some(r) if r.is_finite() => (RANK_WARN_OF_REFERENCE * r).max(RANK_WARN_FLOOR),
            _ => RANK_WARN_FLOOR,
        }
    }

    /// Human-readable warnings when a figure falls below its threshold.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.samples < 2 {
            return out;
        }
        if self.std_ratio < STD_WARN {
            out.push(format!(
                "embedding collapse: std of normalized embeddings is {:.4} ({:.3}/√d; healthy ≈ 1/√d, warning below {STD_WARN}/√d)",
                self.embedding_std, self.std_ratio
            ));
        }
        let floor = self.rank_floor();
        if self.effective_rank < floor {
            let against = match self.reference_rank {
                Some(r) => {
                    format!("below {RANK_WARN_OF_REFERENCE} × the random-init encoder's {r:.1}")
                }
                None => format!("below {floor:.1}"),
            };
            out.push(format!(
                "dimensional collapse: effective rank {:.2} of {} ({against}); the representation uses few directions: try a lower learning rate, a larger projector or batch, or VICReg's covariance term",
                self.effective_rank, self.dim
            ));
        }
        out
    }
}

/// Collapse figures of `emb` (`n × dim`, not necessarily normalized).
pub fn collapse_metrics(emb: &[f32], dim: usize) -> CollapseMetrics {
    let n = emb.len() / dim.max(1);
    if n == 0 || dim == 0 {
        return CollapseMetrics {
            embedding_std: 0.0,
            std_ratio: 0.0,
            effective_rank: 0.0,
            dim,
            samples: n,
            reference_rank: None,
        };
    }
    let z = l2_normalize_rows(emb, dim);
    let (mean, var) = column_moments(&z, dim);
    let embedding_std = var.iter().map(|s| s.sqrt()).sum::<f64>() / dim as f64;

    // Covariance = E[zzᵀ] − μμᵀ.
    let second = matmul(MatRef::new(&z, n, dim).t(), MatRef::new(&z, n, dim));
    let m = nalgebra::DMatrix::from_fn(dim, dim, |i, j| {
        second[i * dim + j] as f64 / n as f64 - mean[i] * mean[j]
    });
    let eig = nalgebra::SymmetricEigen::new(m).eigenvalues;
    let total: f64 = eig.iter().map(|&l| l.max(0.0)).sum();
    let effective_rank = if total > 1e-9 {
        let h: f64 = eig
            .iter()
            .map(|&l| l.max(0.0) / total)
            .filter(|&p| p > 0.0)
            .map(|p| -p * p.ln())
            .sum();
        h.exp()
    } else {
        1.0 // every embedding is the same point
    };
    CollapseMetrics {
        embedding_std,
        std_ratio: embedding_std * (dim as f64).sqrt(),
        effective_rank,
        dim,
        samples: n,
        reference_rank: None,
    }
}

/// The effective rank of the random-init encoder of `spec` (seeded with `seed`) on `data`:
/// the reference a trained encoder's rank is compared against.
pub fn init_rank(spec: &ModelSpec, seed: u64, data: &Dataset) -> anyhow::Result<f64> {
    let f = encode_with_weights(spec, None, seed, data, &[data])?;
    let dim = spec.repr_dim();
    Ok(collapse_metrics(&f[0], dim).effective_rank)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ConvNet-S whose last stage copies six channels over all 128 (the dimensional
    /// collapse measured on Fashion-MNIST: rank 7 of 128, above the old 0.02·d floor) is
    /// flagged against its random-init reference; a healthy random-init encoder is not.
    #[test]
    fn sees_dimensional_collapse_of_a_real_encoder_against_its_init_rank() {
        let spec = ModelSpec::default();
        let data = crate::data::synthetic::generate(256, 3).unlabeled();
        let reference = init_rank(&spec, 1, &data).unwrap();
        assert!(reference > 8.0, "random-init rank {reference}");

        let healthy = spec.initial_global(2).unwrap();
        let f = encode_with_weights(&spec, Some(&healthy), 2, &data, &[&data]).unwrap();
        let h = collapse_metrics(&f[0], 128).with_reference(reference);
        assert!(h.warnings().is_empty(), "{h:?}: {:?}", h.warnings());

        let mut collapsed = healthy.clone();
        let last = collapsed
            .tensors
            .iter_mut()
            .find(|t| t.name.contains("blocks.3.conv.weight"))
            .expect("ConvNet-S's last convolution");
        let per = last.values.len() / last.shape[0];
        for k in 6..last.shape[0] {
            let from = (k % 6) * per;
            let src: Vec<f32> = last.values[from..from + per].to_vec();
            last.values[k * per..(k + 1) * per].copy_from_slice(&src);
        }
        let f = encode_with_weights(&spec, Some(&collapsed), 2, &data, &[&data]).unwrap();
        let c = collapse_metrics(&f[0], 128);
        assert!(c.effective_rank < 6.5, "{c:?}");
        assert!(c.effective_rank > RANK_WARN_FLOOR, "{c:?}");
        assert!(
            c.warnings().is_empty(),
            "without a reference only the floor applies"
        );
        let w = c.with_reference(reference).warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("dimensional collapse") && w[0].contains("random-init"),
            "{w:?}"
        );
    }

    #[test]
    fn identical_embeddings_have_zero_std_and_rank_one() {
        let row = [0.3f32, -1.2, 0.5, 2.0];
        let emb: Vec<f32> = row.iter().cycle().take(4 * 50).copied().collect();
        let m = collapse_metrics(&emb, 4);
        assert!(m.embedding_std < 1e-7, "{}", m.embedding_std);
        assert!(
            (m.effective_rank - 1.0).abs() < 1e-4,
            "{}",
            m.effective_rank
        );
        assert_eq!(m.warnings().len(), 2);
    }

    #[test]
    fn orthonormal_directions_used_equally_have_full_rank() {
        // ±e_i for each of d dimensions, equally often: the second-moment matrix is I/d,
        // so the effective rank is d; each coordinate takes ±1 on 2 of 2d rows, so its
        // standard deviation is √(1/d) exactly (mean 0).
        let d = 8;
        let mut emb = Vec::new();
        for i in 0..d {
            for s in [1.0f32, -1.0] {
                let mut r = vec![0.0f32; d];
                r[i] = s * 3.0;
                emb.extend(r);
            }
        }
        let m = collapse_metrics(&emb, d);
        assert!(
            (m.effective_rank - d as f64).abs() < 1e-6,
            "{}",
            m.effective_rank
        );
        assert!((m.embedding_std - (1.0 / d as f64).sqrt()).abs() < 1e-6);
        assert!((m.std_ratio - 1.0).abs() < 1e-6);
        assert!(m.warnings().is_empty());
    }

    #[test]
    fn two_unequal_directions_match_the_entropy_formula() {
        // ±e_0 twice each and ±e_1 once each: mean 0, covariance diag(4/6, 2/6), so
        // rank = exp(H(2/3, 1/3)).
        let emb = [
            1.0f32, 0.0, -2.0, 0.0, 3.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -4.0,
        ];
        let m = collapse_metrics(&emb, 2);
        let (a, b) = (2.0f64 / 3.0, 1.0f64 / 3.0);
        let h = -(a * a.ln() + b * b.ln());
        assert!((m.effective_rank - h.exp()).abs() < 1e-6);
    }

    #[test]
    fn a_shared_offset_does_not_hide_a_healthy_spread() {
        // Every row = (10, 10, 10, 10) + a small ±e_i: normalized, they share one dominant
        // direction, yet they vary along 4 directions equally; the centered rank sees that.
        let d = 4;
        let mut emb = Vec::new();
        for i in 0..d {
            for s in [1.0f32, -1.0] {
                let mut r = vec![10.0f32; d];
                r[i] += s;
                emb.extend(r);
            }
        }
        let m = collapse_metrics(&emb, d);
        assert!(m.effective_rank > 2.9, "{}", m.effective_rank);
    }
}
