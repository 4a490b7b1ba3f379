//! The server optimizer shared by FedAdam, FedYogi and FedAdagrad (Reddi et al. 2021,
//! "Adaptive Federated Optimization", Algorithm 2): the round's mean update Δ is a
//! pseudo-gradient, and
//!
//! m ← β₁·m + (1 − β₁)·Δ,  v ← rule(v, Δ²),  w ← w + η·m / (√v + τ),
//!
//! with m = v = 0 before the first round and no bias correction (as in the paper). m, v and
//! the step count are persisted with every commit, so a restarted server resumes exactly.

use crate::strategy::config::{StrategyConfig, StrategyKind};
use anyhow::ensure;
use fedssl_ml::model::{Weights, WeightsSpec};
use serde::{Deserialize, Serialize};

use super::{flat, unflat, Aggregator, Mean, Strategy};

/// A second-moment rule `v ← rule(v, Δ², β₂)` (one per file: `fedadam.rs`, `fedyogi.rs`,
/// `fedadagrad.rs`).
pub type SecondMoment = fn(f64, f64, f64) -> f64;

/// FedAdam, FedYogi or FedAdagrad: the weighted mean of the updates, applied by the shared
/// server step with the rule's second moment.
#[derive(Debug, Clone, Copy)]
pub struct Adaptive {
    /// Which of the three.
    pub kind: StrategyKind,
    /// η, β₁, β₂, τ.
    pub opt: FedOpt,
    /// Its second-moment rule.
    pub rule: SecondMoment,
}

impl Strategy for Adaptive {
    fn kind(&self) -> StrategyKind {
        self.kind
    }
    fn aggregator(&self, spec: &WeightsSpec) -> Box<dyn Aggregator> {
        Box::new(Mean::new(spec))
    }
    fn step(
        &self,
        global: &Weights,
        update: &Weights,
        state: Option<&OptState>,
    ) -> anyhow::Result<(Weights, Option<OptState>)> {
        self.opt.step(global, update, state, self.rule)
    }
}

/// The server optimizer's moments after a commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptState {
    /// Rounds applied so far.
    pub steps: u64,
    /// First moment, one value per parameter.
    pub m: Vec<f32>,
    /// Second moment.
    pub v: Vec<f32>,
}

/// The hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct FedOpt {
    /// η.
    pub eta: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// τ.
    pub tau: f64,
}

impl FedOpt {
    /// From `[plan.strategy]`.
    pub fn of(c: &StrategyConfig) -> Self {
        Self {
            eta: c.server_learning_rate,
            beta1: c.beta1,
            beta2: c.beta2,
            tau: c.tau,
        }
    }

    /// One server step with the second-moment `rule(v, Δ², β₂)`.
    pub fn step(
        &self,
        global: &Weights,
        update: &Weights,
        state: Option<&OptState>,
        rule: impl Fn(f64, f64, f64) -> f64,
    ) -> anyhow::Result<(Weights, Option<OptState>)> {
        ensure!(
            global.spec() == update.spec(),
            "the update does not match the global model"
        );
        let (w, d) = (flat(global), flat(update));
        let n = w.len();
        let (mut m, mut v, steps) = match state {
            Some(s) => {
                ensure!(
                    s.m.len() == n && s.v.len() == n,
                    "the stored server-optimizer state has {} values but the model {n}; it belongs to another model",
                    s.m.len()
                );
                (s.m.clone(), s.v.clone(), s.steps)
            }
            None => (vec![0.0; n], vec![0.0; n], 0),
        };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let di = d[i] as f64;
            let mi = self.beta1 * m[i] as f64 + (1.0 - self.beta1) * di;
            let vi = rule(v[i] as f64, di * di, self.beta2);
            m[i] = mi as f32;
            v[i] = vi as f32;
            out.push((w[i] as f64 + self.eta * mi / (vi.max(0.0).sqrt() + self.tau)) as f32);
        }
        Ok((
            unflat(&global.spec(), out),
            Some(OptState {
                steps: steps + 1,
                m,
                v,
            }),
        ))
    }
}
