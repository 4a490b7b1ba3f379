//! The server's per-round evaluation of the global encoder on a labeled set it holds:
//! collapse monitors every round, linear probe and kNN every `eval.every` rounds.

use std::time::Instant;

use tracing::warn;

use crate::config::ServerEvalConfig;
use fedssl_ml::data::{load_splits, Dataset};
use fedssl_ml::eval::{collapse_metrics, encode_with_weights, init_rank, Labels, Scorer};
use fedssl_ml::model::{ModelSpec, Weights};

use crate::metrics::ServerEval;

/// The labeled evaluation set and its schedule.
#[derive(Debug, Clone)]
pub struct EvalSet {
    train: Dataset,
    test: Dataset,
    every: u64,
    seed: u64,
    spec: ModelSpec,
    /// Effective rank of the random-init encoder on the test set (the collapse reference).
    init_rank: f64,
}

impl EvalSet {
    /// Loads the set the configuration names.
    pub fn load(cfg: &ServerEvalConfig, spec: ModelSpec, seed: u64) -> anyhow::Result<Self> {
        let splits = load_splits(cfg.data.as_deref(), spec.shape, seed)?;
        let train = splits.train.take(cfg.train_samples);
        let test = splits.test.take(cfg.test_samples);
        anyhow::ensure!(
            train.labels.is_some() && test.labels.is_some(),
            "the server's evaluation set has no labels"
        );
        let init_rank = init_rank(&spec, seed, &test)?;
        Ok(Self {
            train,
            test,
            every: cfg.every,
            seed,
            spec,
            init_rank,
        })
    }

    /// Evaluates the model committed in `round` (`last`: the run's final round).
    pub fn evaluate(&self, model: &Weights, round: u64, last: bool) -> anyhow::Result<ServerEval> {
        let started = Instant::now();
        let probe = last || (self.every > 0 && round.is_multiple_of(self.every));
        let sets: Vec<&Dataset> = if probe {
            vec![&self.test, &self.train]
        } else {
            vec![&self.test]
        };
        let feats = encode_with_weights(&self.spec, Some(model), self.seed, &self.train, &sets)?;
        let dim = feats[0].len() / self.test.len().max(1);
        let collapse = collapse_metrics(&feats[0], dim).with_reference(self.init_rank);
        for w in collapse.warnings() {
            warn!(round, "{w}");
        }
        let (mut lp, mut knn) = (None, None);
        if let (true, Some(ytr), Some(yte)) = (probe, &self.train.labels, &self.test.labels) {
            let labels = Labels {
                train: ytr,
                test: yte,
                classes: self.train.num_classes.max(self.test.num_classes),
            };
            let s = Scorer::seeded(self.seed).score(&feats[1], &feats[0], dim, labels, &[]);
            lp = Some(s.probe.test_accuracy);
            knn = Some(s.knn);
        }
        Ok(ServerEval {
            collapse,
            linear_probe_accuracy: lp,
            knn_accuracy: knn,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}
