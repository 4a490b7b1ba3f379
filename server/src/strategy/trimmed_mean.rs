//! Coordinate-wise trimmed mean (Yin et al. 2018): for every coordinate, drop the
//! k = ⌊β·n⌋ largest and k smallest values and average the rest (`scipy.stats.trim_mean`'s
//! convention).

use crate::strategy::config::StrategyKind;
use fedssl_ml::model::WeightsSpec;

use super::buffer::Buffered;
use super::{Aggregator, Strategy};

/// Trimmed mean with fraction β at each end.
#[derive(Debug, Clone, Copy)]
pub struct TrimmedMean {
    /// β.
    pub fraction: f64,
}

impl Strategy for TrimmedMean {
    fn kind(&self) -> StrategyKind {
        StrategyKind::TrimmedMean
    }
    fn aggregator(&self, spec: &WeightsSpec) -> Box<dyn Aggregator> {
        let fraction = self.fraction;
        Box::new(Buffered::new(
            spec,
            Box::new(move |b| {
                let n = b.updates.len();
                let k = (fraction * n as f64).floor() as usize;
                Ok(b.per_coordinate(|col| {
                    col.sort_unstable_by(f32::total_cmp);
                    let kept = &col[k..n - k];
                    (kept.iter().map(|&x| x as f64).sum::<f64>() / kept.len() as f64) as f32
                }))
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{close, run};
    use super::*;

    #[test]
    fn by_hand() {
        // n = 5, β = 0.2: k = 1. Column (1, 2, 3, 4, 1000) → mean(2, 3, 4) = 3;
        // column (−9, 0, 0, 3, 3) → mean(0, 0, 3) = 1.
        let u: Vec<[f32; 2]> = vec![
            [1.0, -9.0],
            [2.0, 0.0],
            [3.0, 0.0],
            [4.0, 3.0],
            [1000.0, 3.0],
        ];
        let rows: Vec<&[f32]> = u.iter().map(|r| &r[..]).collect();
        let t = TrimmedMean { fraction: 0.2 };
        close(&run(&t, &rows).unwrap(), &[3.0, 1.0], 1e-6);
        // β = 0.1: k = 0, the plain mean.
        let t = TrimmedMean { fraction: 0.1 };
        close(&run(&t, &rows).unwrap(), &[202.0, -0.6], 1e-4);
    }
}
