//! Evaluation of an encoder on a labeled set the evaluator holds: linear probe on frozen
//! features, next to the same probe on a random-init encoder and on raw pixels.

use serde::{Deserialize, Serialize};

use fedssl_common::data::Dataset;
use fedssl_common::eval::{encode_with_weights, linear_probe, ProbeConfig};
use fedssl_common::model::{Weights, IMAGE_PIXELS};

/// Probe accuracies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Linear probe on the trained encoder.
    pub linear_probe_accuracy: f64,
    /// Linear probe on a random-init encoder of the same architecture.
    pub random_init_linear_probe_accuracy: f64,
    /// Logistic regression on raw pixels.
    pub raw_pixel_linear_probe_accuracy: f64,
    /// Labeled training samples used by the probe.
    pub probe_train_samples: usize,
    /// Test samples.
    pub probe_test_samples: usize,
}

/// Probes `encoder` (and the baselines) with `train` (labeled) and `test`.
pub fn evaluate(
    encoder: &Weights,
    train: &Dataset,
    test: &Dataset,
    seed: u64,
) -> anyhow::Result<EvalReport> {
    let (ytr, yte) = match (&train.labels, &test.labels) {
        (Some(a), Some(b)) => (a, b),
        _ => anyhow::bail!("evaluation needs labeled train and test splits"),
    };
    let classes = train.num_classes.max(test.num_classes);
    let cfg = ProbeConfig::default();
    let probe = |tr: &[f32], te: &[f32], dim: usize| {
        linear_probe(tr, ytr, te, yte, dim, classes, cfg).test_accuracy
    };
    let trained = encode_with_weights(Some(encoder), seed, train, &[train, test])?;
    let random = encode_with_weights(None, seed ^ 0xA5A5, train, &[train, test])?;
    let dim = trained[0].len() / train.len().max(1);
    Ok(EvalReport {
        linear_probe_accuracy: probe(&trained[0], &trained[1], dim),
        random_init_linear_probe_accuracy: probe(&random[0], &random[1], dim),
        raw_pixel_linear_probe_accuracy: probe(&train.images, &test.images, IMAGE_PIXELS),
        probe_train_samples: train.len(),
        probe_test_samples: test.len(),
    })
}
