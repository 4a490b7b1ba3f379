//! Differential privacy.
//!
//! Today: client-level DP. A client clips its whole update to L2 norm `C`
//! ([`clip::clip_l2`]) and adds Gaussian noise of standard deviation `z·C` with opendp's exact
//! discrete sampler ([`gaussian::GaussianMechanism`]). Privacy loss is measured in zCDP (ρ per
//! round from opendp's privacy map), composed by addition, and reported as (ε, δ) through
//! opendp's conversion ([`accountant`]).
//!
//! The [`Mechanism`] trait is the seam for what comes next: per-record DP-SGD on the client,
//! central noise at the server, and noise split across clients under secure aggregation.

pub mod accountant;
pub mod clip;
pub mod gaussian;

pub use accountant::{epsilon_from_rho, PrivacyLedger};
pub use gaussian::GaussianMechanism;

use crate::model::Weights;

/// What privatizing one update did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Privatized {
    /// The zCDP ρ it cost.
    pub rho: f64,
    /// The update's L2 norm before clipping.
    pub norm: f64,
}

/// A privatization step applied to a client's update before it leaves the site.
pub trait Mechanism {
    /// Privatizes `update` in place; says what it cost and how large the update was.
    fn privatize(&self, update: &mut Weights) -> anyhow::Result<Privatized>;
    /// ρ one application costs, known before running it (for budget checks).
    fn rho(&self) -> anyhow::Result<f64>;
    /// The largest L2 norm a privatized update can reach except with negligible probability.
    fn max_plausible_norm(&self) -> f64;
}
