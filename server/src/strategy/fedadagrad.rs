//! FedAdagrad: v ← v + Δ² (see `fedopt.rs` for the shared step).

use fedssl_common::model::{Weights, WeightsSpec};
use fedssl_common::strategy::StrategyKind;

use super::fedopt::{FedOpt, OptState};
use super::{Aggregator, Mean, Strategy};

/// FedAdagrad.
#[derive(Debug, Clone, Copy)]
pub struct FedAdagrad(pub FedOpt);

impl Strategy for FedAdagrad {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Fedadagrad
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
        self.0.step(global, update, state, |v, d2, _| v + d2)
    }
}

#[cfg(test)]
mod tests {
    use super::super::flat;
    use super::super::testing::{close, w};
    use super::*;

    #[test]
    fn two_rounds_by_hand() {
        let s = FedAdagrad(FedOpt {
            eta: 0.5,
            beta1: 0.0,
            beta2: 0.0,
            tau: 0.0,
        });
        // β₁ = 0, τ = 0: each step is η·Δ/√(ΣΔ²): 0.5·3/3 = 0.5, then 0.5·4/5 = 0.4.
        let (g, st) = s.step(&w(&[1.0]), &w(&[3.0]), None).unwrap();
        close(&flat(&g), &[1.5], 1e-6);
        let (g2, st2) = s.step(&g, &w(&[4.0]), st.as_ref()).unwrap();
        close(&flat(&g2), &[1.9], 1e-6);
        close(&st2.unwrap().v, &[25.0], 1e-5);
    }
}
