//! The buffer behind the robust rules: every accepted update of the round, flattened
//! (4·d bytes each). The engine selects no more sites than `max_buffer_mib` holds.

use anyhow::ensure;
use fedssl_ml::model::{Weights, WeightsSpec};

use super::{flat, unflat, Aggregator};

/// How a buffering rule turns the round's (non-empty) updates into one flattened update.
pub type Reduce = Box<dyn Fn(&Buffer) -> anyhow::Result<Vec<f32>> + Send>;

/// The aggregator of every buffering rule: keep the updates, reduce them at the end.
pub struct Buffered {
    buf: Buffer,
    reduce: Reduce,
}

impl Buffered {
    /// An empty buffer for updates of `spec`, reduced by `reduce`.
    pub fn new(spec: &WeightsSpec, reduce: Reduce) -> Self {
        Self {
            buf: Buffer::new(spec),
            reduce,
        }
    }
}

impl std::fmt::Debug for Buffered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffered")
            .field("updates", &self.buf.updates.len())
            .finish()
    }
}

impl Aggregator for Buffered {
    fn fold(&mut self, update: Weights, weight: f64) -> anyhow::Result<()> {
        self.buf.push(update, weight)
    }
    fn count(&self) -> usize {
        self.buf.updates.len()
    }
    fn sum(&self) -> Option<Weights> {
        None
    }
    fn aggregate(&self) -> anyhow::Result<Option<Weights>> {
        if self.buf.updates.is_empty() {
            return Ok(None);
        }
        Ok(Some(unflat(&self.buf.spec, (self.reduce)(&self.buf)?)))
    }
}

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
