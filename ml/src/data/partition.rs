//! Splitting one dataset across simulated clients: IID or Dirichlet(α) label skew.

use std::str::FromStr;

use anyhow::{bail, Context};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Serialize};

/// How samples are distributed among clients.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Partition {
    /// Uniformly at random, equal sizes.
    Iid,
    /// For each class, client shares drawn from Dirichlet(α): small α = strong skew.
    Dirichlet(f64),
}

impl FromStr for Partition {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        if s == "iid" {
            return Ok(Partition::Iid);
        }
        if let Some(a) = s.strip_prefix("dirichlet:") {
            let alpha: f64 = a
                .parse()
                .with_context(|| format!("bad Dirichlet α `{a}` in `{s}`"))?;
            if !(alpha.is_finite() && alpha > 0.0) {
                bail!("Dirichlet α must be positive, got {alpha}");
            }
            return Ok(Partition::Dirichlet(alpha));
        }
        bail!("unknown partition `{s}`: use `iid` or `dirichlet:ALPHA` (e.g. dirichlet:0.5)")
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Partition::Iid => write!(f, "iid"),
            Partition::Dirichlet(a) => write!(f, "dirichlet:{a}"),
        }
    }
}

/// Sample indices per client. Every client gets at least `min_per_client` samples
/// (Dirichlet draws are repeated, with derived seeds, until that holds).
pub fn partition(
    n: usize,
    labels: Option<&[u8]>,
    clients: usize,
    scheme: Partition,
    seed: u64,
    min_per_client: usize,
) -> anyhow::Result<Vec<Vec<usize>>> {
    if clients == 0 {
        bail!("need at least one client");
    }
    if n < clients * min_per_client {
        bail!("{n} samples cannot give {clients} clients {min_per_client} samples each");
    }
    match scheme {
        Partition::Iid => {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            let mut out = vec![Vec::new(); clients];
            for (k, i) in idx.into_iter().enumerate() {
                out[k % clients].push(i);
            }
            Ok(out)
        }
        Partition::Dirichlet(alpha) => {
            let labels = labels.context("a Dirichlet partition needs labels")?;
            let num_classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
            let gamma = Gamma::new(alpha, 1.0).context("invalid Dirichlet α")?;
            for attempt in 0..1000u64 {
                let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(attempt));
                let mut out = vec![Vec::new(); clients];
                for c in 0..num_classes {
                    let mut idx: Vec<usize> = (0..n).filter(|&i| labels[i] as usize == c).collect();
                    idx.shuffle(&mut rng);
                    let w: Vec<f64> = (0..clients).map(|_| gamma.sample(&mut rng)).collect();
                    let total: f64 = w.iter().sum();
                    let mut start = 0usize;
                    let mut acc = 0.0;
                    for (k, wk) in w.iter().enumerate() {
                        acc += wk / total.max(f64::MIN_POSITIVE);
                        let end = if k + 1 == clients {
                            idx.len()
                        } else {
                            ((acc * idx.len() as f64).round() as usize).min(idx.len())
                        };
                        out[k].extend_from_slice(&idx[start..end.max(start)]);
                        start = end.max(start);
                    }
                }
                if out.iter().all(|v| v.len() >= min_per_client) {
                    for v in &mut out {
                        v.sort_unstable();
                    }
                    return Ok(out);
                }
            }
            bail!("could not draw a Dirichlet({alpha}) partition giving every client {min_per_client} samples; use a larger α or fewer clients")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iid_covers_everything_once() {
        let p = partition(103, None, 4, Partition::Iid, 1, 1).unwrap();
        let mut all: Vec<usize> = p.concat();
        all.sort();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        assert!(p.iter().all(|v| v.len() == 25 || v.len() == 26));
    }

    #[test]
    fn dirichlet_is_skewed_seeded_and_complete() {
        let labels: Vec<u8> = (0..2000).map(|i| (i % 10) as u8).collect();
        let p = partition(2000, Some(&labels), 5, Partition::Dirichlet(0.1), 7, 10).unwrap();
        assert_eq!(
            p,
            partition(2000, Some(&labels), 5, Partition::Dirichlet(0.1), 7, 10).unwrap()
        );
        let mut all: Vec<usize> = p.concat();
        all.sort();
        assert_eq!(all, (0..2000).collect::<Vec<_>>());
        // Strong skew: some client's most common class holds most of its data.
        let top_share = p
            .iter()
            .map(|v| {
                let mut counts = [0usize; 10];
                v.iter().for_each(|&i| counts[labels[i] as usize] += 1);
                *counts.iter().max().unwrap() as f64 / v.len() as f64
            })
            .fold(0.0, f64::max);
        assert!(top_share > 0.5, "{top_share}");
        assert!("dirichlet:0.5".parse::<Partition>().unwrap() == Partition::Dirichlet(0.5));
        assert!("dirichlet:-1".parse::<Partition>().is_err());
        assert!("zipf".parse::<Partition>().is_err());
    }
}
