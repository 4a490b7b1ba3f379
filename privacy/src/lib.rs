//! Differential privacy.
//!
//! - [`discrete_gaussian`]: an exact discrete Gaussian sampler in integer arithmetic
//!   (Canonne–Kamath–Steinke), a CSPRNG per thread, sampling in parallel; the noise of every
//!   mechanism.
//! - [`gaussian::GaussianMechanism`]: client-level DP, a site clips its whole update
//!   ([`clip::clip_l2`]) and adds noise.
//! - [`rdp`]: Rényi-DP accounting of the Poisson-subsampled Gaussian, converted to (ε, δ).
//! - [`ledger`]: what a site released, as events any accountant can recompute, and ε per
//!   privacy unit (record or site).
//! - [`zcdp`]: opendp's zCDP figures, the reference at q = 1.
//!
//! The [`Mechanism`] trait is the seam for privatizing what leaves a site.

pub mod clip;
pub mod discrete_gaussian;
pub mod gaussian;
pub mod ledger;
pub mod plan;
pub mod rdp;
pub mod zcdp;

pub use gaussian::GaussianMechanism;
pub use zcdp::epsilon_from_rho;

use fedssl_core::weights::Weights;
use ledger::GaussianEvent;

/// What privatizing one update did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Privatized {
    /// The update's L2 norm before clipping.
    pub norm: f64,
}

/// A privatization step applied to a client's update before it leaves the site.
pub trait Mechanism {
    /// Privatizes `update` in place; says how large the update was.
    fn privatize(&self, update: &mut Weights) -> anyhow::Result<Privatized>;
    /// The privacy bounds of one application, per unit, known before running it (for
    /// budget checks and the ledger).
    fn bounds(&self) -> Vec<GaussianEvent>;
    /// The largest L2 norm a privatized update can reach except with negligible probability.
    fn max_plausible_norm(&self) -> f64;
}
