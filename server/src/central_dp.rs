//! Central DP at the server: DP-FedAvg (McMahan, Ramage, Talwar, Zhang 2018) with optional
//! adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021). Free of I/O: the engine
//! asks it whom to select, hands it each accepted update to clip, and asks it for the
//! round's release; the shell persists each [`CentralRound`] with the round's commit.
//!
//! Per round, with N eligible (connected) sites and Poisson rate q:
//! - each site is selected independently with probability q (the shell passes an OS-seeded
//!   generator, so the selection is secret from the sites and from whoever reads the model);
//! - each accepted update is clipped to C, and the clipped updates are summed with weight 1;
//! - the release is (Σ clipped + N(0, (zC)²·I)) / (q·N): a fixed denominator, so one site's
//!   presence moves the numerator by at most C (add-or-remove one site);
//! - with adaptive clipping, b = #{accepted updates with norm ≤ C} is released as
//!   b + N(0, σ_b²) and C ← C·exp(−η(b̃/(qN) − γ)).
//!
//! The update and the count are one Gaussian release on the same Poisson sample of sites,
//! with sensitivities C and 1; normalized, its noise multiplier is
//! z_eff = (z⁻² + σ_b⁻²)^(−1/2), which the accountant composes over rounds (RDP of the
//! Poisson-subsampled Gaussian at rate q). A site that declines or times out after being
//! selected changes nothing in this bound: its contribution is zero, as if not sampled.

use anyhow::Context;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::CentralDpConfig;
use fedssl_ml::model::Weights;
use fedssl_privacy::clip::clip_l2;
use fedssl_privacy::discrete_gaussian::GridGaussian;
use fedssl_privacy::ledger::{
    GaussianEvent, LedgerEntry, MechanismKind, PrivacyLedger, Release, Unit,
};

/// What one round of central DP released; stored with the round's commit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CentralRound {
    /// Round.
    pub round: u64,
    /// The clip bound C used in this round.
    pub clip_norm: f64,
    /// The bound for the next round (C itself without adaptive clipping).
    pub next_clip_norm: f64,
    /// Poisson rate q of the selection.
    pub sample_rate: f64,
    /// Sites eligible (connected) when the round opened: the denominator is q times this.
    pub eligible: usize,
    /// Sites selected.
    pub selected: usize,
    /// Clipped updates summed.
    pub accepted: usize,
    /// Noise multiplier of the update that holds after rounding to the sampler's grid.
    pub noise_multiplier: f64,
    /// The same for the count (adaptive clipping only).
    pub count_noise_multiplier: Option<f64>,
    /// The joint multiplier the accountant charges: (z⁻² + σ_b⁻²)^(−1/2).
    pub effective_noise_multiplier: f64,
    /// The released noised count (adaptive clipping only).
    pub noised_count: Option<f64>,
}

impl CentralRound {
    /// The round as an accountant event: one Poisson-subsampled Gaussian step per site.
    pub fn event(&self) -> GaussianEvent {
        GaussianEvent {
            sampling_rate: self.sample_rate,
            ..GaussianEvent::single(
                MechanismKind::CentralDp,
                Unit::Site,
                self.effective_noise_multiplier,
                self.clip_norm,
            )
        }
    }
}

/// Central DP state: the configuration, the current clip bound and every released round.
#[derive(Debug, Clone)]
pub struct CentralDp {
    cfg: CentralDpConfig,
    clip: f64,
    history: Vec<CentralRound>,
}

impl CentralDp {
    /// The state after the committed rounds in `history` (oldest first): the clip bound
    /// resumes from the last round's `next_clip_norm`.
    pub fn new(cfg: CentralDpConfig, history: Vec<CentralRound>) -> Self {
        let clip = history
            .last()
            .map(|r| r.next_clip_norm)
            .unwrap_or(cfg.clip_norm);
        Self { cfg, clip, history }
    }

    /// The clip bound of the next release.
    pub fn clip_norm(&self) -> f64 {
        self.clip
    }

    /// The rounds released so far.
    pub fn history(&self) -> &[CentralRound] {
        &self.history
    }

    /// Poisson selection: each of `names` independently with probability q.
    pub fn select(&self, names: &[String], rng: &mut impl Rng) -> Vec<String> {
        let q = self.cfg.sample_rate;
        names
            .iter()
            .filter(|_| q >= 1.0 || rng.gen_bool(q))
            .cloned()
            .collect()
    }

    /// Clips `update` in place to the current bound; returns whether it was within it.
    pub fn clip(&self, update: &mut Weights) -> bool {
        clip_to(update, self.clip)
    }

    /// The round's release from the sum of its clipped updates: the noised mean update
    /// (Σ + N(0, (zC)²)) / (q·N) and what was released.
    pub fn release(
        &self,
        round: u64,
        mut sum: Weights,
        counts: RoundCounts,
    ) -> anyhow::Result<(Weights, CentralRound)> {
        let c = self.clip;
        let dim = sum.num_params();
        let noise = GridGaussian::with_multiplier(self.cfg.noise_multiplier, c, dim)
            .context("central DP: cannot set up the update's noise")?;
        for t in &mut sum.tensors {
            noise
                .add_noise(&mut t.values)
                .context("central DP: cannot draw the update's noise")?;
        }
        let z = noise.noise_multiplier(c, dim);
        let expected = self.cfg.sample_rate * counts.eligible.max(1) as f64;
        sum.scale((1.0 / expected) as f32);
        let (count_z, noised_count, next) = match self.cfg.adaptive {
            None => (None, None, c),
            Some(a) => {
                let noise = GridGaussian::with_multiplier(a.count_noise_multiplier, 1.0, 1)
                    .context("central DP: cannot set up the count's noise")?;
                let mut b = [counts.within_bound as f32];
                noise
                    .add_noise(&mut b)
                    .context("central DP: cannot draw the count's noise")?;
                let fraction = b[0] as f64 / expected;
                let next = c * (-a.learning_rate * (fraction - a.target_quantile)).exp();
                (
                    Some(noise.noise_multiplier(1.0, 1)),
                    Some(b[0] as f64),
                    next,
                )
            }
        };
        let effective = match count_z {
            None => z,
            Some(zb) => 1.0 / (z.powi(-2) + zb.powi(-2)).sqrt(),
        };
        Ok((
            sum,
            CentralRound {
                round,
                clip_norm: c,
                next_clip_norm: next,
                sample_rate: self.cfg.sample_rate,
                eligible: counts.eligible,
                selected: counts.selected,
                accepted: counts.accepted,
                noise_multiplier: z,
                count_noise_multiplier: count_z,
                effective_noise_multiplier: effective,
                noised_count,
            },
        ))
    }

    /// Makes a committed round's release part of the state (its clip bound for the next).
    pub fn record(&mut self, r: CentralRound) {
        self.clip = r.next_clip_norm;
        self.history.push(r);
    }

    /// ε per site over every released round at `delta` (add-or-remove one site, RDP).
    pub fn epsilon(&self, delta: f64) -> Option<f64> {
        epsilon(&self.history, delta)
    }
}

/// Clips `update` in place to `bound`; returns whether it was within it.
pub fn clip_to(update: &mut Weights, bound: f64) -> bool {
    clip_l2(update, bound) <= bound
}

/// Counts of one round that the release depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoundCounts {
    /// Sites eligible when the round opened.
    pub eligible: usize,
    /// Sites selected.
    pub selected: usize,
    /// Updates accepted and summed.
    pub accepted: usize,
    /// Of those, updates whose norm was within the clip bound.
    pub within_bound: usize,
}

/// ε per site of `rounds` at `delta`: the rounds' events composed by the ledger's RDP
/// accountant (0 with no rounds).
pub fn epsilon(rounds: &[CentralRound], delta: f64) -> Option<f64> {
    let mut ledger = PrivacyLedger::new(delta, 0);
    ledger.entries = rounds
        .iter()
        .map(|r| LedgerEntry {
            round: r.round,
            base_model_hash: String::new(),
            at: 0,
            releases: vec![Release {
                what: "central-dp".into(),
                bounds: vec![r.event()],
            }],
        })
        .collect();
    ledger.epsilon(Unit::Site)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdaptiveClipConfig;
    use fedssl_ml::model::weights::WeightTensor;
    use rand::SeedableRng;

    fn weights(values: Vec<f32>) -> Weights {
        Weights {
            tensors: vec![WeightTensor {
                name: "w".into(),
                shape: vec![values.len()],
                values,
            }],
        }
    }

    fn cfg(z: f64, c: f64, q: f64) -> CentralDpConfig {
        CentralDpConfig {
            noise_multiplier: z,
            clip_norm: c,
            sample_rate: q,
            adaptive: None,
        }
    }

    #[test]
    fn the_release_is_the_clipped_sum_plus_noise_of_z_c_over_the_expected_count() {
        // z = 2, C = 0.5, q = 0.5, 8 eligible sites: expected count 4, noise std 1 on the sum.
        let dp = CentralDp::new(cfg(2.0, 0.5, 0.5), vec![]);
        let n = 200_000;
        let mut a = weights(vec![3.0 / (n as f32).sqrt(); n]); // norm 3: clipped to 0.5
        assert!(!dp.clip(&mut a));
        assert!((a.l2_norm() - 0.5).abs() < 1e-4);
        let mut b = weights(vec![0.1 / (n as f32).sqrt(); n]); // norm 0.1: unchanged
        assert!(dp.clip(&mut b));
        let sum = a.add(&b).unwrap();
        let counts = RoundCounts {
            eligible: 8,
            selected: 3,
            accepted: 2,
            within_bound: 1,
        };
        let (release, r) = dp.release(1, sum.clone(), counts).unwrap();
        // Undo the division and compare the noise with N(0, 1) per coordinate.
        let noise: Vec<f64> = release.tensors[0]
            .values
            .iter()
            .zip(&sum.tensors[0].values)
            .map(|(&x, &s)| x as f64 * 4.0 - s as f64)
            .collect();
        let mean = noise.iter().sum::<f64>() / n as f64;
        let var = noise.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "noise mean {mean}");
        assert!((var.sqrt() - 1.0).abs() < 0.01, "noise std {}", var.sqrt());
        assert!(r.noise_multiplier >= 2.0 && r.noise_multiplier < 2.001);
        assert_eq!(r.effective_noise_multiplier, r.noise_multiplier);
        assert_eq!((r.clip_norm, r.next_clip_norm), (0.5, 0.5));
        assert_eq!(r.noised_count, None);
    }

    #[test]
    fn adaptive_clipping_moves_c_geometrically_toward_the_target_quantile() {
        let mut c = cfg(1.0, 1.0, 1.0);
        c.adaptive = Some(AdaptiveClipConfig {
            target_quantile: 0.5,
            learning_rate: 0.2,
            count_noise_multiplier: 1e-3,
        });
        let mut dp = CentralDp::new(c, vec![]);
        // Every update within the bound: the fraction is 1, C shrinks by exp(−0.2·0.5).
        let counts = RoundCounts {
            eligible: 4,
            selected: 4,
            accepted: 4,
            within_bound: 4,
        };
        let (_, r) = dp.release(1, weights(vec![0.0; 10]), counts).unwrap();
        let want = (-0.2f64 * 0.5).exp();
        assert!((r.next_clip_norm - want).abs() < 1e-3, "{r:?}");
        dp.record(r);
        assert_eq!(dp.clip_norm(), r.next_clip_norm);
        // None within: C grows by exp(0.2·0.5).
        let (_, r2) = dp
            .release(
                2,
                weights(vec![0.0; 10]),
                RoundCounts {
                    within_bound: 0,
                    ..counts
                },
            )
            .unwrap();
        assert!((r2.next_clip_norm / r.next_clip_norm - (0.1f64).exp()).abs() < 1e-3);
        // The count's noise is charged: z_eff = (z⁻² + σ_b⁻²)^(−1/2) ≈ σ_b here.
        let zb = r2.count_noise_multiplier.unwrap();
        assert!(zb >= 1e-3);
        assert!(
            (r2.effective_noise_multiplier
                - 1.0 / (r2.noise_multiplier.powi(-2) + zb.powi(-2)).sqrt())
            .abs()
                < 1e-12
        );
        assert!(r2.effective_noise_multiplier < 1.1e-3);
        // A restart resumes the bound from the stored rounds.
        dp.record(r2);
        let resumed = CentralDp::new(c, dp.history().to_vec());
        assert_eq!(resumed.clip_norm(), r2.next_clip_norm);
    }

    #[test]
    fn epsilon_composes_the_rounds_like_the_accountant() {
        let dp = CentralDp::new(cfg(1.2, 1.0, 0.1), vec![]);
        let mut rounds = Vec::new();
        for round in 1..=5 {
            let (_, r) = dp
                .release(round, weights(vec![0.0; 100]), RoundCounts::default())
                .unwrap();
            rounds.push(r);
        }
        let z = rounds[0].effective_noise_multiplier;
        assert!(rounds.iter().all(|r| r.effective_noise_multiplier == z));
        let ours = epsilon(&rounds, 1e-5).unwrap();
        let reference = fedssl_privacy::rdp::epsilon(0.1, z, 5, 1e-5);
        assert!(
            (ours / reference - 1.0).abs() < 1e-6,
            "{ours} vs {reference}"
        );
        assert_eq!(epsilon(&[], 1e-5), Some(0.0));
    }

    #[test]
    fn poisson_selection_takes_each_site_with_probability_q() {
        let dp = CentralDp::new(cfg(1.0, 1.0, 0.3), vec![]);
        let names: Vec<String> = (0..20_000).map(|i| format!("s{i}")).collect();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let k = dp.select(&names, &mut rng).len() as f64;
        // Binomial(20000, 0.3): mean 6000, std ≈ 64.8; 5 std.
        assert!((k - 6000.0).abs() < 325.0, "{k}");
        let all = CentralDp::new(cfg(1.0, 1.0, 1.0), vec![]);
        assert_eq!(all.select(&names[..5], &mut rng).len(), 5);
    }
}
