//! Validation of uploads: round, nonce, base model, hash, shapes, finiteness and norm.

use fedssl_common::dp::{GaussianMechanism, Mechanism};
use fedssl_common::model::{Weights, WeightsSpec};
use fedssl_common::protocol::{ErrorCode, RoundPlan, Upload};

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

/// The largest norm a clipped-and-noised update can plausibly have under `plan`.
pub fn norm_bound(plan: &RoundPlan, spec: &WeightsSpec) -> f64 {
    GaussianMechanism {
        clip_norm: plan.dp.clip_norm,
        noise_multiplier: plan.dp.noise_multiplier,
        k: GaussianMechanism::DEFAULT_K,
        dim: spec.num_params(),
    }
    .max_plausible_norm()
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
    if upload.num_samples == 0 || upload.num_samples > 1_000_000_000 {
        return Err(Rejection::new(
            ErrorCode::Malformed,
            format!("implausible sample count {}", upload.num_samples),
        ));
    }
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
