//! Validation of uploads: round, nonce, base model, hash, shapes, finiteness and norm.

use fedssl_ml::model::{Weights, WeightsSpec};
use fedssl_privacy::gaussian::{max_plausible_norm, min_plausible_norm};
use fedssl_protocol::{ErrorCode, RoundPlan, SiteReport, Upload};

/// Why an upload was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Category.
    pub code: ErrorCode,
    /// Explanation recorded in the database and sent to the client.
    pub reason: String,
}

impl Rejection {
    /// A rejection.
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// The norms a privatized update can plausibly have.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormRange {
    /// Below this the update carries less noise than the plan requires.
    pub min: f64,
    /// Above this it was not clipped, or carries more than the plan's noise.
    pub max: f64,
}

/// The norms a privatized update can plausibly have under `plan`. With client-level noise
/// of σ = z·C in d coordinates, ‖clip(u) + n‖ lies within ‖n‖ ± C, and ‖n‖ lies within
/// σ(√d ± 10) except with probability below e^-50: an update outside is refused (an update
/// sent without its noise is far below the floor). Otherwise (DP-SGD's update is
/// post-processing of noised steps, and no DP has no bound) only finiteness is checked.
pub fn norm_range(plan: &RoundPlan, spec: &WeightsSpec) -> NormRange {
    let p = plan.privacy;
    if p.mechanism.client_level() {
        let sigma = p.client.noise_multiplier * p.client.clip_norm;
        NormRange {
            min: min_plausible_norm(p.client.clip_norm, sigma, spec.num_params()),
            max: max_plausible_norm(p.client.clip_norm, sigma, spec.num_params()),
        }
    } else {
        NormRange {
            min: 0.0,
            max: f64::INFINITY,
        }
    }
}

/// Refuses reported figures outside their possible ranges (they are plain numbers from the
/// network: hostile until checked).
pub fn check_report(r: &SiteReport) -> Result<(), Rejection> {
    let bad = |what: &str| {
        Err(Rejection::new(
            ErrorCode::Malformed,
            format!("{what} is out of range"),
        ))
    };
    if r.num_samples.is_some_and(|n| n == 0 || n > 1_000_000_000) {
        return bad("the sample count");
    }
    if r.mean_loss.is_some_and(|l| !l.is_finite()) {
        return bad("the loss");
    }
    if r.epsilon.is_some_and(|e| e.is_nan() || e < 0.0) {
        return bad("ε");
    }
    if r.train_seconds
        .is_some_and(|t| !(t.is_finite() && t >= 0.0))
    {
        return bad("the training time");
    }
    if let Some(m) = r.collapse {
        if !(m.std_ratio.is_finite() && (0.0..=64.0).contains(&m.std_ratio)) {
            return bad("the embedding std ratio");
        }
        if !(m.effective_rank.is_finite() && (0.0..=65_536.0).contains(&m.effective_rank)) {
            return bad("the effective rank");
        }
    }
    if let Some(s) = r.site_eval {
        let acc = |a: f32| a.is_finite() && (0.0..=1.0).contains(&a);
        if !acc(s.probe_accuracy) || !acc(s.knn_accuracy) {
            return bad("a site-evaluation accuracy");
        }
        if s.test_samples == 0 || s.test_samples > 10_000_000 || s.train_samples > 10_000_000 {
            return bad("a site-evaluation sample count");
        }
    }
    Ok(())
}

/// Decodes and checks the update carried by `upload`; returns it with its norm.
pub fn check_update(
    upload: &Upload,
    spec: &WeightsSpec,
    global_hash: &str,
    bound: NormRange,
) -> Result<(Weights, f64), Rejection> {
    if upload.base_model_hash != global_hash {
        return Err(Rejection::new(
            ErrorCode::WrongBaseModel,
            format!(
                "update computed from model {} but the round's model is {}",
                short(&upload.base_model_hash),
                short(global_hash)
            ),
        ));
    }
    check_report(&upload.report)?;
    let w = upload.update.decode(spec).map_err(|e| match e {
        fedssl_protocol::PayloadError::HashMismatch { .. } => {
            Rejection::new(ErrorCode::HashMismatch, e.to_string())
        }
        fedssl_protocol::PayloadError::Shape(_) => {
            Rejection::new(ErrorCode::ShapeMismatch, e.to_string())
        }
    })?;
    if !w.is_finite() {
        return Err(Rejection::new(
            ErrorCode::NonFinite,
            "update contains NaN or infinite values",
        ));
    }
    let norm = w.l2_norm();
    if norm > bound.max {
        return Err(Rejection::new(
            ErrorCode::NormTooLarge,
            format!(
                "update norm {norm:.3} exceeds the bound {:.3} a clipped and noised update can reach",
                bound.max
            ),
        ));
    }
    if norm < bound.min {
        return Err(Rejection::new(
            ErrorCode::NoiseMissing,
            format!(
                "update norm {norm:.3} is below {:.3}, the least a clipped update plus the \
                 plan's noise can have: it was sent without (all of) its noise",
                bound.min
            ),
        ));
    }
    Ok((w, norm))
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}
