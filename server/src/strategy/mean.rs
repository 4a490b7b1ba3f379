//! Streaming FedAvg: each update is folded into one accumulator as it arrives and dropped,
//! so the server's memory does not grow with the number of clients.

use rayon::prelude::*;

use fedssl_ml::model::{Weights, WeightsSpec};

/// Values folded per parallel task (large enough to amortize scheduling).
const FOLD_CHUNK: usize = 1 << 16;

/// Weighted running sum of updates.
#[derive(Debug, Clone)]
pub struct FedAvg {
    spec: WeightsSpec,
    sum: Vec<f64>,
    total_weight: f64,
    count: usize,
}

impl FedAvg {
    /// An empty accumulator for updates of the given spec.
    pub fn new(spec: WeightsSpec) -> Self {
        let n = spec.num_params();
        Self {
            spec,
            sum: vec![0.0; n],
            total_weight: 0.0,
            count: 0,
        }
    }

    /// Adds `weight · update`. The update must match the spec (validated by the caller).
    pub fn fold(&mut self, update: &Weights, weight: f64) -> anyhow::Result<()> {
        anyhow::ensure!(
            update.spec() == self.spec,
            "update does not match the model spec"
        );
        anyhow::ensure!(
            weight.is_finite() && weight > 0.0,
            "FedAvg weight must be positive, got {weight}"
        );
        // Tensor by tensor, in parallel chunks: a contiguous loop the compiler vectorizes.
        let mut offset = 0;
        for t in &update.tensors {
            let dst = &mut self.sum[offset..offset + t.values.len()];
            dst.par_chunks_mut(FOLD_CHUNK)
                .zip(t.values.par_chunks(FOLD_CHUNK))
                .for_each(|(a, v)| {
                    for (acc, &x) in a.iter_mut().zip(v) {
                        *acc += weight * x as f64;
                    }
                });
            offset += t.values.len();
        }
        self.total_weight += weight;
        self.count += 1;
        Ok(())
    }

    /// Number of updates folded.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The weighted sum of the updates folded (zeros if none).
    pub fn sum(&self) -> Weights {
        self.weights(1.0)
    }

    /// The weighted mean update, or `None` if nothing was folded.
    pub fn mean(&self) -> Option<Weights> {
        if self.count == 0 {
            return None;
        }
        Some(self.weights(1.0 / self.total_weight))
    }

    /// The accumulator times `scale`, as weights of the spec.
    fn weights(&self, scale: f64) -> Weights {
        let mut it = self.sum.iter().map(|s| (s * scale) as f32);
        Weights {
            tensors: self
                .spec
                .entries
                .iter()
                .map(|(name, shape)| {
                    let n: usize = shape.iter().product();
                    fedssl_core::weights::WeightTensor {
                        name: name.clone(),
                        shape: shape.clone(),
                        values: it.by_ref().take(n).collect(),
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedssl_core::weights::WeightTensor;

    fn w(a: [f32; 2], b: f32) -> Weights {
        Weights {
            tensors: vec![
                WeightTensor {
                    name: "a".into(),
                    shape: vec![2],
                    values: a.to_vec(),
                },
                WeightTensor {
                    name: "b".into(),
                    shape: vec![1],
                    values: vec![b],
                },
            ],
        }
    }

    #[test]
    fn weighted_mean_by_hand() {
        // Updates (1,2 | 3) with 10 samples, (4,-1 | 0) with 30 samples:
        // a = (10·1 + 30·4)/40 = 3.25, (10·2 − 30)/40 = −0.25; b = 30/40 = 0.75.
        let mut f = FedAvg::new(w([0.0, 0.0], 0.0).spec());
        assert!(f.mean().is_none());
        f.fold(&w([1.0, 2.0], 3.0), 10.0).unwrap();
        f.fold(&w([4.0, -1.0], 0.0), 30.0).unwrap();
        let m = f.mean().unwrap();
        assert_eq!(m, w([3.25, -0.25], 0.75));
        assert_eq!(f.count(), 2);
    }

    #[test]
    fn rejects_wrong_spec() {
        let mut f = FedAvg::new(w([0.0, 0.0], 0.0).spec());
        let mut bad = w([1.0, 1.0], 1.0);
        bad.tensors[1].shape = vec![1, 1];
        assert!(f.fold(&bad, 1.0).is_err());
    }
}
