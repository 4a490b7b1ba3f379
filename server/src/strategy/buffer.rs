//! The buffer behind the robust rules: every accepted update of the round, flattened
//! (4·d bytes each). The engine selects no more sites than `max_buffer_mib` holds.

use anyhow::ensure;
use fedssl_common::model::{Weights, WeightsSpec};

use super::flat;

/// A round's updates, kept whole.
#[derive(Debug, Clone)]
pub struct Buffer {
    /// The model layout.
    pub spec: WeightsSpec,
    /// One flattened update per accepted site, in arrival order.
    pub updates: Vec<Vec<f32>>,
}

impl Buffer {
    /// An empty buffer for updates of `spec`.
    pub fn new(spec: &WeightsSpec) -> Self {
        Self {
            spec: spec.clone(),
            updates: Vec::new(),
        }
    }

    /// Keeps `update` (the robust rules weigh every site the same; the weight must be 1).
    pub fn push(&mut self, update: Weights, weight: f64) -> anyhow::Result<()> {
        ensure!(
            update.spec() == self.spec,
            "update does not match the model spec"
        );
        ensure!(
            weight == 1.0,
            "robust aggregation weighs every site the same (weight {weight} given)"
        );
        self.updates.push(flat(&update));
        Ok(())
    }

    /// Number of parameters.
    pub fn dim(&self) -> usize {
        self.spec.num_params()
    }

    /// Applies `f` to every coordinate's values across the updates (in parallel chunks),
    /// giving one value per coordinate.
    pub fn per_coordinate(&self, f: impl Fn(&mut [f32]) -> f32 + Sync) -> Vec<f32> {
        use rayon::prelude::*;
        let (d, n) = (self.dim(), self.updates.len());
        let mut out = vec![0.0f32; d];
        out.par_chunks_mut(4096).enumerate().for_each(|(c, chunk)| {
            let mut col = vec![0.0f32; n];
            for (j, o) in chunk.iter_mut().enumerate() {
                let i = c * 4096 + j;
                for (k, u) in self.updates.iter().enumerate() {
                    col[k] = u[i];
                }
                *o = f(&mut col);
            }
        });
        out
    }
}
