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

use serde::{Deserialize, Serialize};

use super::knn::l2_normalize_rows;
use super::linalg::{column_moments, matmul, MatRef};

/// Warn when `embedding_std · √d` falls below this (healthy ≈ 1, collapsed → 0).
pub const STD_WARN: f64 = 0.1;
/// Warn when the effective rank falls below this share of the dimension.
pub const RANK_WARN_FRACTION: f64 = 0.02;

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
}

impl CollapseMetrics {
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
        let floor = (RANK_WARN_FRACTION * self.dim as f64).max(2.0);
        if self.effective_rank < floor {
            out.push(format!(
                "dimensional collapse: effective rank {:.2} of {} (warning below {floor:.1})",
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
