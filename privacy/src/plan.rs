//! The privacy part of a round plan (`[plan.privacy]`): which mechanism the sites run and
//! its parameters. The server chooses it; each site checks it against its own budget before
//! every round and may decline.

use serde::{Deserialize, Serialize};

/// Which mechanism privatizes what leaves a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PrivacyMechanism {
    /// Record-level DP-SGD: every local step clips each sampled record's gradient and adds
    /// noise; the upload is post-processing. The privacy unit is one record of a site.
    #[default]
    DpSgd,
    /// Client-level DP: the site clips its whole update and adds noise. The privacy unit is
    /// a site (and, at twice the sensitivity, a record).
    ClientLevel,
    /// Both: DP-SGD during training, then client-level noise on the update.
    #[serde(rename = "dp-sgd+client-level")]
    Both,
    /// No privacy. Sites refuse it unless their budget is `inf`.
    None,
}

impl PrivacyMechanism {
    /// The name used in configs and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::DpSgd => "dp-sgd",
            Self::ClientLevel => "client-level",
            Self::Both => "dp-sgd+client-level",
            Self::None => "none",
        }
    }

    /// Whether sites run DP-SGD.
    pub fn dp_sgd(&self) -> bool {
        matches!(self, Self::DpSgd | Self::Both)
    }

    /// Whether sites noise their whole update.
    pub fn client_level(&self) -> bool {
        matches!(self, Self::ClientLevel | Self::Both)
    }

    /// Whether anything is privatized.
    pub fn is_private(&self) -> bool {
        *self != Self::None
    }

    /// The unit a site's budget bounds: the record under DP-SGD, else the site.
    pub fn unit(&self) -> super::ledger::Unit {
        if self.dp_sgd() || !self.client_level() {
            super::ledger::Unit::Record
        } else {
            super::ledger::Unit::Site
        }
    }
}

impl std::str::FromStr for PrivacyMechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [Self::DpSgd, Self::ClientLevel, Self::Both, Self::None]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!("unknown privacy mechanism {s:?} (expected dp-sgd, client-level, dp-sgd+client-level or none)")
            })
    }
}

impl std::fmt::Display for PrivacyMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Adaptive clipping (Andrew et al. 2021): `[central_dp.adaptive]` at the server, or
/// `[plan.privacy.client.adaptive]` with client-level noise. After each round the noised
/// count of sites whose update was within C (noised by the server, or each site's own
/// noised indicator) moves C geometrically toward the `target_quantile` of the update norms:
/// C ← C · exp(−learning_rate · (noised count / expected sites − target_quantile)).
/// The count is charged to the accountant with the update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveClipConfig {
    /// The quantile γ of update norms C should track.
    #[serde(default = "d_quantile")]
    pub target_quantile: f64,
    /// Geometric learning rate η.
    #[serde(default = "d_clip_lr")]
    pub learning_rate: f64,
    /// Standard deviation σ_b of the noise on the count (at the server) or on each site's
    /// indicator (client-level); the sensitivity is 1 either way.
    pub count_noise_multiplier: f64,
}

fn d_quantile() -> f64 {
    0.5
}
fn d_clip_lr() -> f64 {
    0.2
}

impl AdaptiveClipConfig {
    /// Checks ranges; `table` names the TOML table in the message.
    pub fn validate(&self, table: &str) -> Result<(), String> {
        let pos = |v: f64| v.is_finite() && v > 0.0;
        if !(pos(self.target_quantile) && self.target_quantile < 1.0) {
            return Err(format!(
                "{table}.target_quantile must be in (0, 1), got {}",
                self.target_quantile
            ));
        }
        if !pos(self.learning_rate) {
            return Err(format!(
                "{table}.learning_rate must be positive, got {}",
                self.learning_rate
            ));
        }
        if !pos(self.count_noise_multiplier) {
            return Err(format!(
                "{table}.count_noise_multiplier must be positive (the count is charged to the budget), got {}",
                self.count_noise_multiplier
            ));
        }
        Ok(())
    }
}

/// Client-level noise on the whole update (`[plan.privacy.client]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLevelParams {
    /// L2 bound C of the whole update (with `adaptive`, the first round's; the server sets
    /// each later round's in the plan it sends).
    pub clip_norm: f64,
    /// Noise multiplier z: the noise standard deviation is z·C.
    pub noise_multiplier: f64,
    /// Adaptive clipping: each site also sends its indicator "my update was within C" plus
    /// its own noise N(0, σ_b²), charged to its ledger; the server averages them and moves C.
    pub adaptive: Option<AdaptiveClipConfig>,
}

impl Default for ClientLevelParams {
    fn default() -> Self {
        Self {
            clip_norm: 1.0,
            noise_multiplier: 1.0,
            adaptive: None,
        }
    }
}

/// `[plan.privacy]`: the mechanism and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyPlan {
    /// `dp-sgd` (default), `client-level`, `dp-sgd+client-level` or `none`.
    pub mechanism: PrivacyMechanism,
    /// DP-SGD: a fixed per-step noise multiplier σ (noise standard deviation over a record's
    /// sensitivity). When set it wins over `target_epsilon`.
    pub noise_multiplier: Option<f64>,
    /// DP-SGD: L2 bound C of one record's (or one group's) gradient.
    pub clip_norm: f64,
    /// DP-SGD without `noise_multiplier`: the ε per record each site reaches after `rounds`
    /// rounds; each site calibrates σ to it from its own sampling rate, steps and δ.
    pub target_epsilon: Option<f64>,
    /// Rounds of the run (set by the server; sites calibrate `target_epsilon` over them).
    pub rounds: u64,
    /// DP-SGD with an objective that couples the records of its batch (SimCLR's negatives,
    /// VICReg's batch statistics): expected records per group of group-level clipping.
    pub group_size: u32,
    /// Client-level noise (mechanisms `client-level` and `dp-sgd+client-level`).
    pub client: ClientLevelParams,
}

impl Default for PrivacyPlan {
    fn default() -> Self {
        Self {
            mechanism: PrivacyMechanism::DpSgd,
            noise_multiplier: None,
            clip_norm: 1.0,
            target_epsilon: Some(8.0),
            rounds: 1,
            group_size: 16,
            client: ClientLevelParams::default(),
        }
    }
}

impl PrivacyPlan {
    /// Checks ranges; errors name the field under `plan.privacy`.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if self.mechanism.dp_sgd() {
            if !positive(self.clip_norm) {
                return Err(format!(
                    "privacy.clip_norm must be positive, got {}",
                    self.clip_norm
                ));
            }
            match (self.noise_multiplier, self.target_epsilon) {
                (Some(z), _) if !positive(z) => {
                    return Err(format!(
                        "privacy.noise_multiplier must be positive (zero noise is no DP), got {z}"
                    ))
                }
                (None, Some(e)) if !positive(e) => {
                    return Err(format!("privacy.target_epsilon must be positive, got {e}"))
                }
                (None, None) => {
                    return Err("privacy: set noise_multiplier or target_epsilon for DP-SGD".into())
                }
                _ => {}
            }
        }
        if self.mechanism.client_level() {
            if !positive(self.client.clip_norm) {
                return Err(format!(
                    "privacy.client.clip_norm must be positive, got {}",
                    self.client.clip_norm
                ));
            }
            if !positive(self.client.noise_multiplier) {
                return Err(format!(
                    "privacy.client.noise_multiplier must be positive (zero noise is no DP), got {}",
                    self.client.noise_multiplier
                ));
            }
            if let Some(a) = self.client.adaptive {
                a.validate("privacy.client.adaptive")?;
            }
        }
        if self.mechanism.dp_sgd() && self.group_size < 2 {
            return Err(format!(
                "privacy.group_size must be at least 2 (negatives need company), got {}",
                self.group_size
            ));
        }
        if self.rounds == 0 {
            return Err("privacy.rounds must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanisms_parse_and_name_their_unit() {
        let p: PrivacyPlan = toml::from_str("mechanism = \"dp-sgd+client-level\"").unwrap();
        assert!(p.mechanism.dp_sgd() && p.mechanism.client_level());
        assert_eq!(p.mechanism.unit(), super::super::ledger::Unit::Record);
        let p: PrivacyPlan =
            toml::from_str("mechanism = \"client-level\"\n[client]\nnoise_multiplier = 2.0")
                .unwrap();
        assert_eq!(p.mechanism.unit(), super::super::ledger::Unit::Site);
        assert_eq!(p.client.noise_multiplier, 2.0);
        assert!(toml::from_str::<PrivacyPlan>("mechanism = \"dp\"").is_err());
        let bad = PrivacyPlan {
            noise_multiplier: Some(0.0),
            ..PrivacyPlan::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("privacy.noise_multiplier"));
        let fixed: PrivacyPlan = toml::from_str("noise_multiplier = 1.5").unwrap();
        fixed.validate().unwrap();
        assert_eq!(
            fixed.noise_multiplier,
            Some(1.5),
            "a fixed σ wins over the default target"
        );
        let none = PrivacyPlan {
            target_epsilon: None,
            ..PrivacyPlan::default()
        };
        assert!(none.validate().is_err());
    }
}
