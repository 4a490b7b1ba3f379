//! FedAdam: v ← β₂·v + (1 − β₂)·Δ² (see `fedopt.rs` for the shared step).

use fedssl_common::model::{Weights, WeightsSpec};
use fedssl_common::strategy::StrategyKind;

use super::fedopt::{FedOpt, OptState};
use super::{Aggregator, Mean, Strategy};

/// FedAdam.
#[derive(Debug, Clone, Copy)]
pub struct FedAdam(pub FedOpt);

impl Strategy for FedAdam {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Fedadam
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
        self.0
            .step(global, update, state, |v, d2, b2| b2 * v + (1.0 - b2) * d2)
    }
}

#[cfg(test)]
mod tests {
    use super::super::flat;
    use super::super::testing::{close, w};
    use super::*;

    #[test]
    fn two_rounds_by_hand() {
        let s = FedAdam(FedOpt {
            eta: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            tau: 1e-3,
        });
        // Round 1, Δ = (1, −2): m = (0.1, −0.2), v = (0.01, 0.04),
        // w = 0 + 0.1·m/(√v + τ) = (0.1·0.1/0.101, −0.1·0.2/0.201).
        let (g, st) = s.step(&w(&[0.0, 0.0]), &w(&[1.0, -2.0]), None).unwrap();
        close(&flat(&g), &[0.01 / 0.101, -0.02 / 0.201], 1e-6);
        let st = st.unwrap();
        close(&st.m, &[0.1, -0.2], 1e-7);
        close(&st.v, &[0.01, 0.04], 1e-7);
        // Round 2, Δ = (1, 0): m = (0.19, −0.18), v = (0.0199, 0.0396).
        let (g2, st2) = s.step(&g, &w(&[1.0, 0.0]), Some(&st)).unwrap();
        let want = [
            0.01 / 0.101 + 0.1 * 0.19 / (0.0199f64.sqrt() + 1e-3),
            -0.02 / 0.201 + 0.1 * -0.18 / (0.0396f64.sqrt() + 1e-3),
        ];
        close(&flat(&g2), &want, 1e-6);
        assert_eq!(st2.unwrap().steps, 2);
    }
}
