//! What one round costs a site, known before it trains: the plan's mechanism turned into
//! concrete parameters for this site's data (DP-SGD's sampling rate, steps and noise, the
//! client-level mechanism) and the [`Release`] the ledger will hold.

use fedssl_ml::prelude::*;
use fedssl_ml::ssl::DpUnit;
use fedssl_privacy::discrete_gaussian::GridGaussian;
use fedssl_privacy::ledger::{GaussianEvent, MechanismKind, Neighbour, Release, Unit};
use fedssl_privacy::plan::PrivacyMechanism;
use fedssl_privacy::{rdp, GaussianMechanism, Mechanism};
use fedssl_protocol::RoundPlan;

/// DP-SGD's parameters for one round on this site.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpSgdSetup {
    /// L2 bound of one record's gradient.
    pub clip_norm: f64,
    /// Poisson sampling rate q = expected batch / records.
    pub sampling_rate: f64,
    /// Expected batch size q·n (the divisor of the noised sum).
    pub expected_batch: f64,
    /// Steps this round.
    pub steps: u64,
    /// The noise added to each step's sum of clipped gradients (σ·C on the exact grid).
    pub noise: GridGaussian,
    /// Coordinates noised each step (every trainable parameter).
    pub dim: usize,
    /// What is clipped: each record, or each group of records (objectives that couple the
    /// records of a batch; a record then moves the sum by up to 2C).
    pub unit: DpUnit,
    /// Groups per step under [`DpUnit::Group`] (records draw their group uniformly).
    pub groups: usize,
}

impl DpSgdSetup {
    /// The per-step noise multiplier for one record, after rounding to the noise grid: the
    /// noise over the record's sensitivity (C per record, 2C under group-level clipping).
    pub fn noise_multiplier(&self) -> f64 {
        self.noise
            .noise_multiplier(self.unit.sensitivity() * self.clip_norm, self.dim)
    }

    /// The round's DP-SGD bound for a record.
    pub fn event(&self) -> GaussianEvent {
        GaussianEvent {
            mechanism: MechanismKind::DpSgd,
            unit: Unit::Record,
            neighbour: Neighbour::AddOrRemoveOne,
            noise_multiplier: self.noise_multiplier(),
            sampling_rate: self.sampling_rate,
            steps: self.steps,
            clip_norm: self.clip_norm,
        }
    }
}

/// DP-SGD steps of a round on `n` records: `local_epochs` passes in expectation, each of
/// ⌈n / batch⌉ Poisson-sampled steps.
pub fn dp_sgd_steps(n: usize, plan: &RoundPlan) -> u64 {
    let per_epoch = n.div_ceil(plan.batch_size.max(1) as usize).max(1);
    (per_epoch * plan.local_epochs as usize) as u64
}

/// A round's privacy on this site.
#[derive(Debug, Clone, Copy)]
pub struct RoundPrivacy {
    /// The plan's mechanism.
    pub mechanism: PrivacyMechanism,
    /// DP-SGD, when the plan asks for it.
    pub dp_sgd: Option<DpSgdSetup>,
    /// Client-level noise on the update, when the plan asks for it.
    pub client: Option<GaussianMechanism>,
    /// Client-level adaptive clipping: the noise on this site's indicator "my update was
    /// within C" (sensitivity 1).
    pub clip_count: Option<GridGaussian>,
}

impl RoundPrivacy {
    /// The plan's mechanism for a site with `records` training records, a model of
    /// `trainable` parameters and an update of `update_dim` coordinates, at `delta`.
    pub fn new(
        plan: &RoundPlan,
        records: usize,
        trainable: usize,
        update_dim: usize,
        delta: f64,
    ) -> anyhow::Result<Self> {
        let p = plan.privacy;
        let dp_sgd = if p.mechanism.dp_sgd() {
            let unit = plan.model.objective.dp_sgd().map_err(anyhow::Error::msg)?;
            let n = records.max(1) as f64;
            let expected_batch = (plan.batch_size as f64).min(n);
            let q = expected_batch / n;
            let steps = dp_sgd_steps(records, plan);
            let sigma = match (p.noise_multiplier, p.target_epsilon) {
                (Some(z), _) => z,
                (None, None) => {
                    anyhow::bail!("the plan's DP-SGD has neither a noise multiplier nor a target ε")
                }
                (None, Some(target)) => {
                    let total = steps.saturating_mul(p.rounds.max(1));
                    rdp::calibrate_sigma(q, total, delta, target).ok_or_else(|| {
                        anyhow::anyhow!(
                            "no noise multiplier reaches ε = {target} per record at δ = {delta:e} over {} rounds of {steps} steps at q = {q:.4}",
                            p.rounds
                        )
                    })?
                }
            };
            // σ is per record: the noise is σ times the record's sensitivity.
            let sensitivity = unit.sensitivity() * p.clip_norm;
            // Rounding to the grid adds 2^k·√dim to the sensitivity; the noise is widened
            // until the multiplier that holds is at least σ.
            let noise = GridGaussian::with_multiplier(sigma, sensitivity, trainable)?;
            Some(DpSgdSetup {
                clip_norm: p.clip_norm,
                sampling_rate: q,
                expected_batch,
                steps,
                noise,
                dim: trainable,
                unit,
                groups: ((expected_batch / p.group_size.max(2) as f64).round() as usize).max(1),
            })
        } else {
            None
        };
        let client = if p.mechanism.client_level() {
            Some(GaussianMechanism::new(
                p.client.clip_norm,
                p.client.noise_multiplier,
                update_dim,
            )?)
        } else {
            None
        };
        let clip_count = match (p.mechanism.client_level(), p.client.adaptive) {
            (true, Some(a)) => Some(GridGaussian::with_multiplier(
                a.count_noise_multiplier,
                1.0,
                1,
            )?),
            _ => None,
        };
        Ok(Self {
            mechanism: p.mechanism,
            dp_sgd,
            client,
            clip_count,
        })
    }

    /// The round's releases: the update, and with adaptive clipping the noised indicator.
    pub fn releases(&self) -> Vec<Release> {
        let mut v = vec![self.release()];
        if let Some(n) = &self.clip_count {
            // The indicator is a function of the site's whole data (sensitivity 1 for the
            // site) and any one record can flip it (sensitivity 1 for the record).
            let z = n.noise_multiplier(1.0, 1);
            v.push(Release {
                what: "clip-count".into(),
                bounds: [Unit::Site, Unit::Record]
                    .into_iter()
                    .map(|unit| GaussianEvent::single(MechanismKind::ClipCount, unit, z, 1.0))
                    .collect(),
            });
        }
        v
    }

    /// The noised indicator that an update of L2 norm `norm` was within the client-level
    /// bound (with adaptive clipping; `None` otherwise).
    pub fn noised_indicator(&self, norm: f64) -> anyhow::Result<Option<f32>> {
        let (Some(noise), Some(m)) = (&self.clip_count, &self.client) else {
            return Ok(None);
        };
        let mut b = [if norm <= m.clip_norm { 1.0f32 } else { 0.0 }];
        noise.add_noise(&mut b)?;
        Ok(Some(b[0]))
    }

    /// The unit the site's budget bounds.
    pub fn unit(&self) -> Unit {
        self.mechanism.unit()
    }

    /// What the ledger records for the round's upload.
    pub fn release(&self) -> Release {
        let mut bounds: Vec<GaussianEvent> = self.dp_sgd.iter().map(DpSgdSetup::event).collect();
        if let Some(m) = &self.client {
            bounds.extend(m.bounds());
        }
        Release {
            what: "update".into(),
            bounds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedssl_privacy::ledger::PrivacyLedger;
    use fedssl_server::config::PlanConfig;

    #[test]
    fn adaptive_clipping_charges_the_noised_indicator_for_site_and_record() {
        use fedssl_privacy::plan::AdaptiveClipConfig;
        let mut cfg = PlanConfig::default();
        cfg.privacy.mechanism = PrivacyMechanism::ClientLevel;
        cfg.privacy.client.noise_multiplier = 2.0;
        cfg.privacy.client.adaptive = Some(AdaptiveClipConfig {
            target_quantile: 0.5,
            learning_rate: 0.2,
            count_noise_multiplier: 3.0,
        });
        let plan = cfg.plan(1);
        let rp = RoundPrivacy::new(&plan, 100, 1000, 1000, 1e-5).unwrap();
        let releases = rp.releases();
        assert_eq!(releases.len(), 2);
        assert_eq!(releases[1].what, "clip-count");
        let mut ledger = PrivacyLedger::new(1e-5, 0);
        ledger.entries.push(fedssl_privacy::ledger::LedgerEntry {
            round: 1,
            base_model_hash: String::new(),
            at: 0,
            releases: releases.clone(),
        });
        // The site's ε is the composition of the update (z ≥ 2) and the count (σ_b ≥ 3):
        // one Gaussian of multiplier (2⁻² + 3⁻²)^(−1/2) at q = 1, up to grid rounding.
        let joint = 1.0 / (2f64.powi(-2) + 3f64.powi(-2)).sqrt();
        let want = rdp::epsilon(1.0, joint, 1, 1e-5);
        let got = ledger.epsilon(Unit::Site).unwrap();
        assert!(got <= want * 1.0001 && got > want * 0.99, "{got} vs {want}");
        assert!(
            ledger.epsilon(Unit::Record).is_some(),
            "records are bounded too"
        );
        // The indicator: 1 within the bound, 0 above, plus noise of σ ≈ 3.
        let within: Vec<f32> = (0..4000)
            .map(|_| rp.noised_indicator(0.5).unwrap().unwrap())
            .collect();
        let mean = within.iter().map(|&x| x as f64).sum::<f64>() / 4000.0;
        assert!((mean - 1.0).abs() < 0.25, "{mean}");
        let above = rp.noised_indicator(1e6).unwrap().unwrap();
        assert!(above.is_finite());
        // Without adaptive clipping nothing extra is released.
        cfg.privacy.client.adaptive = None;
        let rp = RoundPrivacy::new(&cfg.plan(1), 100, 1000, 1000, 1e-5).unwrap();
        assert_eq!(rp.releases().len(), 1);
        assert_eq!(rp.noised_indicator(0.5).unwrap(), None);
    }

    #[test]
    fn a_calibrated_site_lands_on_its_target_after_all_rounds() {
        let mut cfg = PlanConfig::default();
        cfg.privacy.mechanism = PrivacyMechanism::DpSgd;
        cfg.privacy.target_epsilon = Some(8.0);
        cfg.privacy.rounds = 5;
        cfg.batch_size = 64;
        let plan = cfg.plan(1);
        let rp = RoundPrivacy::new(&plan, 1000, 50_000, 50_000, 1e-5).unwrap();
        let s = rp.dp_sgd.unwrap();
        assert_eq!(s.steps, 16);
        assert!((s.sampling_rate - 0.064).abs() < 1e-12);
        let mut ledger = PrivacyLedger::new(1e-5, 0);
        for r in 1..=5 {
            ledger.entries.push(fedssl_privacy::ledger::LedgerEntry {
                round: r,
                base_model_hash: String::new(),
                at: 0,
                releases: vec![rp.release()],
            });
        }
        let e = ledger.epsilon(Unit::Record).unwrap();
        assert!(e <= 8.0 && e > 7.99, "{e}");
        assert_eq!(
            ledger.epsilon(Unit::Site),
            None,
            "DP-SGD protects records, not sites"
        );
    }
}
