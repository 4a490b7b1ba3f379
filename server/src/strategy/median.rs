//! Coordinate-wise median (Yin et al. 2018): each coordinate of the round's update is the
//! median of the sites' values (the mean of the two middle ones for an even count, as
//! `numpy.median`). Tolerates fewer than half of the sites being arbitrary.

use crate::strategy::config::StrategyKind;
use fedssl_ml::model::WeightsSpec;

use super::buffer::Buffered;
use super::{Aggregator, Strategy};

/// Coordinate-wise median.
#[derive(Debug, Clone, Copy)]
pub struct Median;

impl Strategy for Median {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Median
    }
    fn aggregator(&self, spec: &WeightsSpec) -> Box<dyn Aggregator> {
        Box::new(Buffered::new(
            spec,
            Box::new(|b| Ok(b.per_coordinate(median))),
        ))
    }
}

/// The median of `v` (reordered in place), as `numpy.median`.
pub(crate) fn median(v: &mut [f32]) -> f32 {
    let n = v.len();
    v.sort_unstable_by(f32::total_cmp);
    if n % 2 == 1 {
        v[n / 2]
    } else {
        ((v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{close, run};
    use super::*;

    #[test]
    fn by_hand_odd_and_even() {
        // Columns (1, 5, 3) → 3, (−1, 100, 0) → 0; with a fourth (2, −7): 2.5 and −0.5.
        let a: &[f32] = &[1.0, -1.0];
        let b: &[f32] = &[5.0, 100.0];
        let c: &[f32] = &[3.0, 0.0];
        close(&run(&Median, &[a, b, c]).unwrap(), &[3.0, 0.0], 0.0);
        let d: &[f32] = &[2.0, -7.0];
        close(&run(&Median, &[a, b, c, d]).unwrap(), &[2.5, -0.5], 0.0);
    }
}
