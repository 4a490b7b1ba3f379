//! Weighted k-nearest-neighbour classification on L2-normalized features
//! (Wu et al. 2018, as used throughout the self-supervised literature): each of the `k`
//! most cosine-similar training points votes for its class with weight `exp(s / T)`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::linalg::{matmul, MatRef};

/// Settings of the kNN classifier.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KnnConfig {
    /// Neighbours that vote.
    pub k: usize,
    /// Temperature of the vote weights.
    pub temperature: f32,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            k: 200,
            temperature: 0.1,
        }
    }
}

/// Rows of `x` (`n × dim`) scaled to unit L2 norm (zero rows stay zero).
pub fn l2_normalize_rows(x: &[f32], dim: usize) -> Vec<f32> {
    let mut out = x.to_vec();
    out.par_chunks_exact_mut(dim.max(1)).for_each(|row| {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    });
    out
}

/// Test rows scored per block, to bound the similarity matrix's memory.
const BLOCK: usize = 256;

/// Accuracy of weighted kNN on `test_x` with `train_x` as the memory bank.
pub fn knn_accuracy(
    train_x: &[f32],
    train_y: &[u8],
    test_x: &[f32],
    test_y: &[u8],
    dim: usize,
    num_classes: usize,
    cfg: KnnConfig,
) -> f64 {
    let n_train = train_y.len();
    if test_y.is_empty() || n_train == 0 {
        return f64::NAN;
    }
    let k = cfg.k.clamp(1, n_train);
    let classes = num_classes.max(1);
    let bank = l2_normalize_rows(train_x, dim);
    let queries = l2_normalize_rows(test_x, dim);
    let mut correct = 0usize;
    for (qb, yb) in queries.chunks(BLOCK * dim).zip(test_y.chunks(BLOCK)) {
        let m = yb.len();
        let sims = matmul(
            MatRef::new(qb, m, dim),
            MatRef::new(&bank, n_train, dim).t(),
        );
        correct += sims
            .par_chunks_exact(n_train)
            .zip(yb.par_iter())
            // One index buffer per worker, refilled per query.
            .map_init(Vec::<u32>::new, |idx, (row, &label)| {
                idx.clear();
                idx.extend(0..n_train as u32);
                if k < n_train {
                    idx.select_nth_unstable_by(k - 1, |&a, &b| {
                        row[b as usize].total_cmp(&row[a as usize])
                    });
                }
                let mut votes = vec![0.0f64; classes];
                for &j in &idx[..k] {
                    let c = train_y[j as usize] as usize;
                    if c < classes {
                        votes[c] += ((row[j as usize] / cfg.temperature) as f64).exp();
                    }
                }
                let mut best = 0;
                for (c, &v) in votes.iter().enumerate() {
                    if v > votes[best] {
                        best = c;
                    }
                }
                best == label as usize
            })
            .filter(|&hit| hit)
            .count();
    }
    correct as f64 / test_y.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clustered_directions_are_classified_perfectly() {
        // Class c points along e_c with a small, magnitude-varying wobble: cosine
        // similarity ignores the magnitude.
        let (dim, classes, n) = (4, 4, 80);
        let make = |offset: usize| {
            let mut x = vec![0.0f32; n * dim];
            let mut y = vec![0u8; n];
            for i in 0..n {
                let c = i % classes;
                y[i] = c as u8;
                for d in 0..dim {
                    x[i * dim + d] = ((i + d + offset) % 3) as f32 * 0.05;
                }
                x[i * dim + c] = 1.0 + (i % 7) as f32;
            }
            (x, y)
        };
        let (tr, ytr) = make(0);
        let (te, yte) = make(1);
        let acc = knn_accuracy(&tr, &ytr, &te, &yte, dim, classes, KnnConfig::default());
        assert_eq!(acc, 1.0);
    }

    #[test]
    fn votes_are_weighted_by_similarity() {
        // Hand-computed: the query (1, 0) has one class-0 neighbour at similarity 1 and two
        // class-1 neighbours at similarity 0.6. With T = 0.1 the class-0 weight e^10 beats
        // 2·e^6; with T = 10, 1 vote of e^0.1 loses to 2 votes of e^0.06.
        let train = [1.0, 0.0, 0.6, 0.8, 0.6, -0.8];
        let labels = [0u8, 1, 1];
        let query = [1.0, 0.0];
        let sharp = KnnConfig {
            k: 3,
            temperature: 0.1,
        };
        let flat = KnnConfig {
            k: 3,
            temperature: 10.0,
        };
        assert_eq!(
            knn_accuracy(&train, &labels, &query, &[0], 2, 2, sharp),
            1.0
        );
        assert_eq!(knn_accuracy(&train, &labels, &query, &[1], 2, 2, flat), 1.0);
        // k = 1 takes only the nearest point.
        let one = KnnConfig { k: 1, ..flat };
        assert_eq!(knn_accuracy(&train, &labels, &query, &[0], 2, 2, one), 1.0);
    }
}
