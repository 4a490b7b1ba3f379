//! Krum and multi-Krum (Blanchard et al. 2017). With n updates of which up to f may be
//! arbitrary, each update's score is the sum of its squared distances to its n − f − 2
//! nearest other updates; Krum returns the update with the lowest score, multi-Krum the
//! mean of the m lowest. Needs n ≥ 2f + 3.

use crate::strategy::config::StrategyKind;
use anyhow::ensure;
use fedssl_ml::model::WeightsSpec;

use super::buffer::Buffered;
use super::{Aggregator, Buffer, Strategy};

/// Krum (`keep` = 1) or multi-Krum (`keep` = m).
#[derive(Debug, Clone, Copy)]
pub struct Krum {
    /// f.
    pub byzantine: usize,
    /// m.
    pub keep: usize,
}

impl Strategy for Krum {
    fn kind(&self) -> StrategyKind {
        if self.keep == 1 {
            StrategyKind::Krum
        } else {
            StrategyKind::MultiKrum
        }
    }
    fn aggregator(&self, spec: &WeightsSpec) -> Box<dyn Aggregator> {
        let rule = *self;
        Box::new(Buffered::new(spec, Box::new(move |b| rule.reduce(b))))
    }
    fn min_updates(&self) -> usize {
        2 * self.byzantine + 3
    }
}

/// Krum scores of `updates` tolerating `f` arbitrary ones.
pub(crate) fn scores(updates: &[Vec<f32>], f: usize) -> Vec<f64> {
    use rayon::prelude::*;
    let n = updates.len();
    let dist = |a: &[f32], b: &[f32]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
            .sum()
    };
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect();
    let d: Vec<f64> = pairs
        .par_iter()
        .map(|&(i, j)| dist(&updates[i], &updates[j]))
        .collect();
    let mut m = vec![vec![0.0; n]; n];
    for (&(i, j), &x) in pairs.iter().zip(&d) {
        m[i][j] = x;
        m[j][i] = x;
    }
    let near = n.saturating_sub(f + 2);
    (0..n)
        .map(|i| {
            let mut row: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| m[i][j]).collect();
            row.sort_unstable_by(f64::total_cmp);
            row[..near].iter().sum()
        })
        .collect()
}

impl Krum {
    /// The mean of the `keep` best-scored updates (Krum: the best one).
    fn reduce(&self, b: &Buffer) -> anyhow::Result<Vec<f32>> {
        let u = &b.updates;
        let f = self.byzantine;
        ensure!(
            u.len() >= 2 * f + 3,
            "Krum tolerating f = {f} needs at least {} updates, the round has {}",
            2 * f + 3,
            u.len()
        );
        let s = scores(u, f);
        let mut order: Vec<usize> = (0..u.len()).collect();
        order.sort_by(|&a, &b| s[a].total_cmp(&s[b]).then(a.cmp(&b)));
        let keep = &order[..self.keep.min(u.len())];
        let mut mean = vec![0.0f64; b.dim()];
        for &k in keep {
            for (acc, &x) in mean.iter_mut().zip(&u[k]) {
                *acc += x as f64;
            }
        }
        let kn = keep.len() as f64;
        Ok(mean.into_iter().map(|x| (x / kn) as f32).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{close, run};
    use super::*;

    #[test]
    fn by_hand() {
        // Five 1-D updates 0, 1, 2, 3, 100 with f = 1: each scores its n − f − 2 = 2 nearest.
        // 0: 1 + 4 = 5; 1: 1 + 1 = 2; 2: 1 + 1 = 2; 3: 1 + 4 = 5; 100: 97² + 98² = 19013.
        let s = scores(
            &[vec![0.0], vec![1.0], vec![2.0], vec![3.0], vec![100.0]],
            1,
        );
        close(
            &s.iter().map(|&x| x as f32).collect::<Vec<_>>(),
            &[5.0, 2.0, 2.0, 5.0, 19013.0],
            0.0,
        );
        let rows: [&[f32]; 5] = [&[0.0], &[1.0], &[2.0], &[3.0], &[100.0]];
        // Krum: the first of the tied best (1); multi-Krum m = 3: mean(1, 2, 0) = 1.
        let k = Krum {
            byzantine: 1,
            keep: 1,
        };
        close(&run(&k, &rows).unwrap(), &[1.0], 0.0);
        let mk = Krum {
            byzantine: 1,
            keep: 3,
        };
        close(&run(&mk, &rows).unwrap(), &[1.0], 1e-6);
        // Too few updates for f = 1 is an error naming the need.
        let e = run(&k, &rows[..4]).unwrap_err().to_string();
        assert!(e.contains("at least 5"), "{e}");
    }
}
