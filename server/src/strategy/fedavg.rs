//! FedAvg (McMahan et al. 2017): the weighted mean of the updates, streamed into one f64
//! accumulator as they arrive, so memory does not grow with the number of sites.

use crate::strategy::config::StrategyKind;
use fedssl_ml::model::{Weights, WeightsSpec};

use super::{Aggregator, Strategy};

/// FedAvg.
#[derive(Debug, Clone, Copy)]
pub struct FedAvg;

impl Strategy for FedAvg {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Fedavg
    }
    fn aggregator(&self, spec: &WeightsSpec) -> Box<dyn Aggregator> {
        Box::new(Mean::new(spec))
    }
}

/// The streaming weighted mean every mean-based strategy uses.
#[derive(Debug, Clone)]
pub struct Mean(crate::strategy::mean::FedAvg);

impl Mean {
    /// An empty mean of updates of `spec`.
    pub fn new(spec: &WeightsSpec) -> Self {
        Self(crate::strategy::mean::FedAvg::new(spec.clone()))
    }
}

impl Aggregator for Mean {
    fn fold(&mut self, update: Weights, weight: f64) -> anyhow::Result<()> {
        self.0.fold(&update, weight)
    }
    fn count(&self) -> usize {
        self.0.count()
    }
    fn sum(&self) -> Option<Weights> {
        Some(self.0.sum())
    }
    fn aggregate(&self) -> anyhow::Result<Option<Weights>> {
        Ok(self.0.mean())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{close, w};
    use super::*;

    #[test]
    fn weighted_mean_by_hand() {
        // (1·(1, 2) + 3·(5, −2)) / 4 = (4, −1)
        let mut a = FedAvg.aggregator(&w(&[0.0, 0.0]).spec());
        a.fold(w(&[1.0, 2.0]), 1.0).unwrap();
        a.fold(w(&[5.0, -2.0]), 3.0).unwrap();
        let m = super::super::flat(&a.aggregate().unwrap().unwrap());
        close(&m, &[4.0, -1.0], 1e-6);
        assert_eq!(a.count(), 2);
        let (g, state) = FedAvg
            .step(&w(&[1.0, 1.0]), &w(&[4.0, -1.0]), None)
            .unwrap();
        assert_eq!(g, w(&[5.0, 0.0]));
        assert!(state.is_none());
    }
}
