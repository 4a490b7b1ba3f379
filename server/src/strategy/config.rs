//! `[plan.strategy]`: how the server merges a round's updates (the aggregation rule, the
//! server optimizer and the weights), and FedProx's proximal term, which the sites apply.
//! The rules themselves live in the server (`server/src/strategy/`, one file each).

use anyhow::bail;
use serde::{Deserialize, Serialize};

use fedssl_privacy::plan::PrivacyMechanism;

/// The aggregation strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// Weighted mean of the updates, folded as they arrive (constant memory).
    #[default]
    Fedavg,
    /// FedAvg plus a proximal term μ/2·‖w − w_global‖² in every site's local objective.
    Fedprox,
    /// Weighted mean, applied by a server-side Adam (Reddi et al. 2021, "Adaptive
    /// Federated Optimization").
    Fedadam,
    /// Weighted mean, applied by a server-side Yogi.
    Fedyogi,
    /// Weighted mean, applied by a server-side Adagrad.
    Fedadagrad,
    /// Coordinate-wise median of the updates (buffers them).
    Median,
    /// Coordinate-wise mean after dropping the `trim_fraction` largest and smallest values
    /// of every coordinate (buffers them).
    TrimmedMean,
    /// Krum (Blanchard et al. 2017): the update closest to its n − f − 2 nearest neighbours
    /// (buffers them).
    Krum,
    /// Multi-Krum: the mean of the `multi_krum` updates with the best Krum scores.
    MultiKrum,
}

impl StrategyKind {
    /// The name used in the plan.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fedavg => "fedavg",
            Self::Fedprox => "fedprox",
            Self::Fedadam => "fedadam",
            Self::Fedyogi => "fedyogi",
            Self::Fedadagrad => "fedadagrad",
            Self::Median => "median",
            Self::TrimmedMean => "trimmed_mean",
            Self::Krum => "krum",
            Self::MultiKrum => "multi_krum",
        }
    }

    /// True for the rules that keep every update of the round in memory.
    pub fn buffers(self) -> bool {
        matches!(
            self,
            Self::Median | Self::TrimmedMean | Self::Krum | Self::MultiKrum
        )
    }
}

/// How much each accepted update weighs in a mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// Every site the same.
    #[default]
    Uniform,
    /// By the site's claimed sample count, capped at `max_weight`.
    Samples,
}

/// `[plan.strategy]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategyConfig {
    /// The rule.
    pub name: StrategyKind,
    /// Weights of a mean.
    pub weighting: Weighting,
    /// With `weighting = "samples"`: the largest sample count one site's update may weigh.
    /// A claimed count is a number from the network, so it is required.
    pub max_weight: Option<u64>,
    /// FedProx's μ.
    pub proximal_mu: f64,
    /// Server learning rate η of FedAdam / FedYogi / FedAdagrad.
    pub server_learning_rate: f64,
    /// β₁ of the server optimizer.
    pub beta1: f64,
    /// β₂ of the server optimizer.
    pub beta2: f64,
    /// τ, the server optimizer's adaptivity (added to √v).
    pub tau: f64,
    /// Trimmed mean: the fraction of values dropped at each end of every coordinate.
    pub trim_fraction: f64,
    /// Krum: the number f of Byzantine sites tolerated (n > 2f + 2 needed).
    pub byzantine: usize,
    /// Multi-Krum: how many of the best-scored updates are averaged.
    pub multi_krum: usize,
    /// Buffering rules: the most memory the round's updates may take, in MiB. The server
    /// selects no more sites than fit.
    pub max_buffer_mib: u64,
}

impl Default for StrategyConfig {
    fn default() -> Self {
        Self {
            name: StrategyKind::Fedavg,
            weighting: Weighting::Uniform,
            max_weight: None,
            proximal_mu: 0.01,
            server_learning_rate: 0.01,
            beta1: 0.9,
            beta2: 0.99,
            tau: 1e-3,
            trim_fraction: 0.2,
            byzantine: 1,
            multi_krum: 2,
            max_buffer_mib: 2048,
        }
    }
}

impl StrategyConfig {
    /// The proximal μ the sites apply (0 except under FedProx).
    pub fn mu(&self) -> f64 {
        if self.name == StrategyKind::Fedprox {
            self.proximal_mu
        } else {
            0.0
        }
    }

    /// Refuses combinations that cannot work, with the reason.
    pub fn validate(&self, mechanism: PrivacyMechanism, central_dp: bool) -> anyhow::Result<()> {
        let s = self.name.name();
        let pos = |v: f64| v.is_finite() && v > 0.0;
        match self.weighting {
            Weighting::Samples if self.max_weight.is_none() => bail!(
                "plan.strategy.weighting = \"samples\" needs plan.strategy.max_weight: a site's \
                 sample count is a number it claims, and without a cap one site could outweigh \
                 all the others"
            ),
            Weighting::Samples if self.max_weight == Some(0) => {
                bail!("plan.strategy.max_weight must be at least 1")
            }
            Weighting::Samples if mechanism.is_private() || central_dp => bail!(
                "plan.strategy.weighting = \"samples\" cannot be used under differential \
                 privacy: the sample count is outside the accounting and the sensitivity \
                 analysis assumes every site weighs the same; use weighting = \"uniform\""
            ),
            Weighting::Samples if self.name.buffers() => bail!(
                "plan.strategy.name = \"{s}\" does not weigh updates (it is a robust statistic \
                 of them, and a claimed count would let one site steer it); use weighting = \
                 \"uniform\""
            ),
            _ => {}
        }
        if central_dp && self.name.buffers() {
            bail!(
                "plan.strategy.name = \"{s}\" cannot be used with [central_dp]: central DP \
                 noises the clipped sum of the updates, whose sensitivity a median or Krum \
                 selection does not have; use fedavg, fedprox or a server optimizer"
            );
        }
        if self.name == StrategyKind::Fedprox
            && !(self.proximal_mu.is_finite() && self.proximal_mu > 0.0)
        {
            bail!(
                "plan.strategy.proximal_mu must be positive for fedprox, got {}",
                self.proximal_mu
            );
        }
        if matches!(
            self.name,
            StrategyKind::Fedadam | StrategyKind::Fedyogi | StrategyKind::Fedadagrad
        ) {
            if !pos(self.server_learning_rate) || !pos(self.tau) {
                bail!("plan.strategy.server_learning_rate and tau must be positive for {s}");
            }
            if !((0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2)) {
                bail!("plan.strategy.beta1 and beta2 must be in [0, 1) for {s}");
            }
        }
        if self.name == StrategyKind::TrimmedMean && !(0.0..0.5).contains(&self.trim_fraction) {
            bail!(
                "plan.strategy.trim_fraction must be in [0, 0.5), got {}",
                self.trim_fraction
            );
        }
        if self.name == StrategyKind::MultiKrum && self.multi_krum == 0 {
            bail!("plan.strategy.multi_krum must be at least 1");
        }
        if self.name.buffers() && self.max_buffer_mib == 0 {
            bail!("plan.strategy.max_buffer_mib must be at least 1 for {s}");
        }
        Ok(())
    }
}
