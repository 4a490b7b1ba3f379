//! Aggregation strategies, one file each, behind two traits (as Flower's `strategy/`):
//! a [`Strategy`] makes a round's [`Aggregator`] and turns the aggregated update into the
//! next global model (a server optimizer, for the FedOpt family).
//!
//! | rule | memory per round | weights | file |
//! |---|---|---|---|
//! | FedAvg, FedProx | one f64 accumulator (8·d bytes) | uniform or capped samples | `fedavg.rs`, `fedprox.rs` |
//! | FedAdam, FedYogi, FedAdagrad | the same, plus m and v (8·d bytes) persisted with each commit | the same | `fedadam.rs`, `fedyogi.rs`, `fedadagrad.rs` |
//! | median, trimmed mean, Krum, multi-Krum | every update (4·d bytes each), bounded by `max_buffer_mib` | uniform | `median.rs`, `trimmed_mean.rs`, `krum.rs` |

mod buffer;
pub mod config;
mod fedadagrad;
mod fedadam;
mod fedavg;
mod fedopt;
mod fedprox;
mod fedyogi;
mod krum;
pub mod mean;
mod median;
mod trimmed_mean;

use std::fmt::Debug;

use fedssl_ml::model::{Weights, WeightsSpec};

pub use buffer::Buffer;
pub use config::{StrategyConfig, StrategyKind, Weighting};
pub use fedavg::{FedAvg, Mean};
pub use fedopt::OptState;

/// Collects one round's accepted updates and reduces them to one update.
pub trait Aggregator: Send + Debug {
    /// Adds an accepted update with its weight (> 0).
    fn fold(&mut self, update: Weights, weight: f64) -> anyhow::Result<()>;
    /// Updates folded so far.
    fn count(&self) -> usize;
    /// The weighted sum of the updates, for rules that are linear (central DP noises it);
    /// `None` for robust rules.
    fn sum(&self) -> Option<Weights>;
    /// The round's update, or `None` when nothing was folded.
    fn aggregate(&self) -> anyhow::Result<Option<Weights>>;
}

/// A way of merging updates into the global model.
pub trait Strategy: Send + Debug {
    /// Which rule this is.
    fn kind(&self) -> StrategyKind;
    /// A fresh aggregator for one round.
    fn aggregator(&self, spec: &WeightsSpec) -> Box<dyn Aggregator>;
    /// The next global model from the current one and the round's update, with the server
    /// optimizer's state before and after (stateless rules: `global + update`, `None`).
    fn step(
        &self,
        global: &Weights,
        update: &Weights,
        state: Option<&OptState>,
    ) -> anyhow::Result<(Weights, Option<OptState>)> {
        let _ = state;
        Ok((global.add(update)?, None))
    }
    /// The fewest updates the rule needs (Krum: 2f + 3).
    fn min_updates(&self) -> usize {
        1
    }
}

/// The strategy `[plan.strategy]` names.
pub fn build(cfg: &StrategyConfig) -> Box<dyn Strategy> {
    match cfg.name {
        StrategyKind::Fedavg => Box::new(FedAvg),
        StrategyKind::Fedprox => Box::new(fedprox::FedProx),
        StrategyKind::Fedadam => adaptive(cfg, fedadam::second_moment),
        StrategyKind::Fedyogi => adaptive(cfg, fedyogi::second_moment),
        StrategyKind::Fedadagrad => adaptive(cfg, fedadagrad::second_moment),
        StrategyKind::Median => Box::new(median::Median),
        StrategyKind::TrimmedMean => Box::new(trimmed_mean::TrimmedMean {
            fraction: cfg.trim_fraction,
        }),
        StrategyKind::Krum | StrategyKind::MultiKrum => Box::new(krum::Krum {
            byzantine: cfg.byzantine,
            keep: if cfg.name == StrategyKind::Krum {
                1
            } else {
                cfg.multi_krum
            },
        }),
    }
}

fn adaptive(cfg: &StrategyConfig, rule: fedopt::SecondMoment) -> Box<dyn Strategy> {
    Box::new(fedopt::Adaptive {
        kind: cfg.name,
        opt: fedopt::FedOpt::of(cfg),
        rule,
    })
}

/// How many updates of `spec` a buffering rule may hold within `max_buffer_mib`
/// (`usize::MAX` for streaming rules).
pub fn capacity(cfg: &StrategyConfig, spec: &WeightsSpec) -> usize {
    if !cfg.name.buffers() {
        return usize::MAX;
    }
    let bytes = 4 * spec.num_params().max(1) as u64;
    ((cfg.max_buffer_mib << 20) / bytes) as usize
}

/// Flattens weights into one vector (the spec's order).
pub(crate) fn flat(w: &Weights) -> Vec<f32> {
    w.tensors
        .iter()
        .flat_map(|t| t.values.iter().copied())
        .collect()
}

/// Weights of `spec` holding `values` in order.
pub(crate) fn unflat(spec: &WeightsSpec, values: impl IntoIterator<Item = f32>) -> Weights {
    let mut it = values.into_iter();
    Weights {
        tensors: spec
            .entries
            .iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                fedssl_ml::model::weights::WeightTensor {
                    name: name.clone(),
                    shape: shape.clone(),
                    values: it.by_ref().take(n).collect(),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// One tensor named `w` holding `v`.
    pub fn w(v: &[f32]) -> Weights {
        unflat(
            &WeightsSpec {
                entries: vec![("w".into(), vec![v.len()])],
            },
            v.iter().copied(),
        )
    }

    /// Folds `updates` (uniform weights) and returns the aggregate's values.
    pub fn run(s: &dyn Strategy, updates: &[&[f32]]) -> anyhow::Result<Vec<f32>> {
        let mut a = s.aggregator(&w(updates[0]).spec());
        for u in updates {
            a.fold(w(u), 1.0)?;
        }
        Ok(flat(&a.aggregate()?.expect("an aggregate")))
    }

    /// Asserts two vectors agree to `tol`.
    pub fn close(got: &[f32], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() <= tol, "{got:?} vs {want:?}");
        }
    }
}
