//! FedProx (Li et al. 2020): FedAvg on the server; each site adds μ/2·‖w − w_global‖² to
//! its local objective. μ reaches the sites in the round's plan (`RoundPlan::proximal_mu`),
//! and the client applies it after every local optimizer step (`client/src/trainer.rs`).

use crate::strategy::config::StrategyKind;
use fedssl_ml::model::WeightsSpec;

use super::{Aggregator, Strategy};

/// FedProx (its μ travels in the plan, not here).
#[derive(Debug, Clone, Copy)]
pub struct FedProx;

impl Strategy for FedProx {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Fedprox
    }
    fn aggregator(&self, spec: &WeightsSpec) -> Box<dyn Aggregator> {
        super::FedAvg.aggregator(spec)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::PlanConfig;
    use crate::strategy::config::{StrategyConfig, StrategyKind};

    #[test]
    fn the_plan_carries_mu_only_under_fedprox() {
        let mut p = PlanConfig::default();
        assert_eq!(p.plan(1).proximal_mu, 0.0);
        p.strategy = StrategyConfig {
            name: StrategyKind::Fedprox,
            proximal_mu: 0.1,
            ..StrategyConfig::default()
        };
        assert_eq!(p.plan(1).proximal_mu, 0.1);
    }
}
