//! What a site measures on its own data and reports next to its update: collapse monitors
//! of the locally trained encoder, and (federated evaluation) a linear probe and kNN of the
//! global model on the site's few labels. Only the resulting numbers leave the site.

use tracing::warn;

use fedssl_ml::data::Dataset;
use fedssl_ml::eval::{collapse_metrics, encode_with_weights, Labels, Scorer};
use fedssl_ml::model::{ModelSpec, Weights};
use fedssl_protocol::{LocalCollapse, SiteEval};

/// Local samples the collapse monitors look at.
const MONITOR_SAMPLES: usize = 512;

/// A site's labeled samples for federated evaluation: half fit the probe, half test it.
#[derive(Debug, Clone)]
pub struct LocalLabels {
    train: Dataset,
    test: Dataset,
}

impl LocalLabels {
    /// Splits off the first `n` labeled samples of `data` (`None` if `data` has no labels
    /// or `n < 4`).
    pub fn from_data(data: &Dataset, n: usize) -> Option<Self> {
        let n = n.min(data.len());
        if n < 4 || data.labels.is_none() {
            return None;
        }
        let half = n / 2;
        Some(Self {
            train: data.subset(&(0..half).collect::<Vec<_>>()),
            test: data.subset(&(half..n).collect::<Vec<_>>()),
        })
    }

    /// Probes `global` on these labels (BatchNorm calibrated on the site's `data`).
    pub fn evaluate(
        &self,
        spec: &ModelSpec,
        global: &Weights,
        data: &Dataset,
        seed: u64,
    ) -> anyhow::Result<SiteEval> {
        let (Some(ytr), Some(yte)) = (&self.train.labels, &self.test.labels) else {
            anyhow::bail!("local evaluation labels are missing");
        };
        let feats =
            encode_with_weights(spec, Some(global), seed, data, &[&self.train, &self.test])?;
        let dim = feats[0].len() / self.train.len().max(1);
        let labels = Labels {
            train: ytr,
            test: yte,
            classes: self.train.num_classes.max(self.test.num_classes),
        };
        let s = Scorer::seeded(seed).score(&feats[0], &feats[1], dim, labels, &[]);
        Ok(SiteEval {
            probe_accuracy: s.probe.test_accuracy as f32,
            knn_accuracy: s.knn as f32,
            train_samples: self.train.len() as u32,
            test_samples: self.test.len() as u32,
        })
    }
}

/// Collapse monitors of `encoder` (global weights of `spec`'s model) on (up to 512 of) the
/// site's samples, against `reference` (the random-init encoder's effective rank on the
/// same samples; measured here when `None`). Returns the monitors and the reference used.
pub fn local_collapse(
    spec: &ModelSpec,
    encoder: &Weights,
    data: &Dataset,
    seed: u64,
    reference: Option<f64>,
) -> anyhow::Result<(LocalCollapse, f64)> {
    let sample = data.take(MONITOR_SAMPLES);
    let feats = encode_with_weights(spec, Some(encoder), seed, &sample, &[&sample])?;
    let dim = feats[0].len() / sample.len().max(1);
    let reference = match reference {
        Some(r) => r,
        None => fedssl_ml::eval::init_rank(spec, seed, &sample)?,
    };
    let c = collapse_metrics(&feats[0], dim).with_reference(reference);
    for w in c.warnings() {
        warn!("local encoder: {w}");
    }
    Ok((
        LocalCollapse {
            std_ratio: c.std_ratio as f32,
            effective_rank: c.effective_rank as f32,
        },
        reference,
    ))
}
