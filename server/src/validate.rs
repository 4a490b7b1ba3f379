//! Validation of uploads: round, nonce, base model, hash, shapes, finiteness and norm.

use fedssl_common::dp::gaussian::max_plausible_norm;
use fedssl_common::model::{Weights, WeightsSpec};
use fedssl_common::protocol::{ErrorCode, RoundPlan, SiteReport, Upload};

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

/// The largest norm a privatized update can plausibly have under `plan`: with client-level
/// noise, the clip bound plus the noise's norm (except with probability below e^-50);
/// otherwise (DP-SGD's update is post-processing of noised steps, and no DP has no bound)
/// unbounded, and only finiteness is checked.
pub fn norm_bound(plan: &RoundPlan, spec: &WeightsSpec) -> f64 {
    let p = plan.privacy;
    if p.mechanism.client_level() {
        max_plausible_norm(
            p.client.clip_norm,
            p.client.noise_multiplier * p.client.clip_norm,
            spec.num_params(),
        )
    } else {
        f64::INFINITY
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
    bound: f64,
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
        fedssl_common::protocol::PayloadError::HashMismatch { .. } => {
            Rejection::new(ErrorCode::HashMismatch, e.to_string())
        }
        fedssl_common::protocol::PayloadError::Shape(_) => {
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
    if norm > bound {
        return Err(Rejection::new(
            ErrorCode::NormTooLarge,
            format!("update norm {norm:.3} exceeds the bound {bound:.3} a clipped and noised update can reach"),
        ));
    }
    Ok((w, norm))
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}
