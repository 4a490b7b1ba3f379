//! How a site merges the global model into its own before training: plain FedAvg, FedEMA or
//! FedU. Both are computed on the client, from the global model it received and its own
//! model from its previous round, so they stay compatible with client-side DP and with
//! secure aggregation.

use serde::{Deserialize, Serialize};

/// The federated self-supervised algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Federation {
    /// Every round starts from the global model (FedAvg; with BYOL and a local target
    /// this is FedBYOL).
    #[default]
    FedAvg,
    /// FedEMA (Zhuang et al., 2022): the site's online model becomes
    /// `μ·W_local + (1 − μ)·W_global` with `μ = min(λ·‖W_global − W_local‖, 1)`; λ is set in
    /// the site's first round with a local model so that μ = `tau` there.
    FedEma {
        /// μ in the round λ is set.
        tau: f64,
    },
    /// FedU (Zhuang et al., 2021): the encoder always takes the global weights; the
    /// predictor takes the global predictor only when the encoder's divergence
    /// `‖W_global − W_local‖` is below `threshold` (the predictor must be global).
    FedU {
        /// Divergence below which the global predictor replaces the local one.
        threshold: f64,
    },
}

impl Federation {
    /// Parameters must be finite and positive.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Self::FedAvg => Ok(()),
            Self::FedEma { tau } if tau > 0.0 && tau <= 1.0 => Ok(()),
            Self::FedEma { tau } => Err(format!("federation.tau = {tau} must lie in (0, 1]")),
            Self::FedU { threshold } if threshold > 0.0 && threshold.is_finite() => Ok(()),
            Self::FedU { threshold } => Err(format!(
                "federation.threshold = {threshold} must be positive"
            )),
        }
    }

    /// A short name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::FedAvg => "fedavg",
            Self::FedEma { .. } => "fedema",
            Self::FedU { .. } => "fedu",
        }
    }
}
