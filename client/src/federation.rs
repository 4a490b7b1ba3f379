//! The start of a site's round: its own model from the previous round merged with the
//! global model, as the plan's federated algorithm says (FedAvg, FedEMA, FedU). Computed
//! on the site, from tensors it already has.

use fedssl_core::federation::Federation;
use fedssl_ml::model::{ModelSpec, Weights};

/// What the merge did, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct MergeReport {
    /// `‖W_global − W_local‖` over the encoder's global tensors (NaN without a local model).
    pub divergence: f64,
    /// FedEMA: the weight μ of the local model.
    pub mu: Option<f64>,
    /// FedEMA: the site's λ (set in its first round with a local model).
    pub lambda: Option<f64>,
    /// FedU: whether the global predictor replaced the local one.
    pub predictor_replaced: Option<bool>,
}

fn is_encoder(name: &str) -> bool {
    name.starts_with("encoder.") || name.starts_with("partner.")
}

/// The global-part weights the site starts training from, given the `global` model, the
/// site's `local` model of its previous round (all tensors, if any) and its saved FedEMA
/// λ. Returns the weights to load over the local model and what was done.
pub fn merge(
    federation: Federation,
    spec: &ModelSpec,
    global: &Weights,
    local: Option<&Weights>,
    lambda: Option<f64>,
) -> anyhow::Result<(Weights, MergeReport)> {
    let parts = spec.parts;
    // The local model's values of the global tensors, if it has all of them.
    let local_global = local
        .map(|l| l.filtered(|n| parts.is_global(n)))
        .filter(|l| l.spec() == global.spec());
    let Some(lg) = local_global else {
        return Ok((
            global.clone(),
            MergeReport {
                divergence: f64::NAN,
                ..MergeReport::default()
            },
        ));
    };
    let divergence = global
        .filtered(is_encoder)
        .sub(&lg.filtered(is_encoder))?
        .l2_norm();
    let mut report = MergeReport {
        divergence,
        ..MergeReport::default()
    };
    let start = match federation {
        Federation::FedAvg => global.clone(),
        Federation::FedEma { tau } => {
            let lambda = lambda.unwrap_or(if divergence > 0.0 {
                tau / divergence
            } else {
                f64::INFINITY
            });
            let mu = (lambda * divergence).min(1.0);
            report.mu = Some(mu);
            report.lambda = Some(lambda);
            lg.mix(global, mu as f32)?
        }
        Federation::FedU { threshold } => {
            let replace = divergence < threshold;
            report.predictor_replaced = Some(replace);
            let mut w = global.clone();
            if !replace {
                // Keep the site's predictor; everything else takes the global values.
                for (t, l) in w.tensors.iter_mut().zip(&lg.tensors) {
                    if t.name.starts_with("predictor.") {
                        t.values.clone_from(&l.values);
                    }
                }
            }
            w
        }
    };
    Ok((start, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedssl_ml::model::weights::WeightTensor;
    use fedssl_ml::model::{Parts, Placement};
    use fedssl_ml::ssl::Objective;

    fn w(enc: f32, pred: f32) -> Weights {
        let t = |name: &str, v: f32| WeightTensor {
            name: name.into(),
            shape: vec![2],
            values: vec![v, v],
        };
        Weights {
            tensors: vec![t("encoder.w", enc), t("predictor.w", pred)],
        }
    }

    fn spec() -> ModelSpec {
        ModelSpec {
            objective: Objective::SimSiam,
            parts: Parts {
                predictor: Placement::Global,
                ..Parts::default()
            },
            ..ModelSpec::default()
        }
    }

    #[test]
    fn fedema_sets_lambda_in_the_first_round_and_mixes_by_divergence() {
        // Encoder divergence ‖(1,1) − (4,4)‖ = 3√2; λ = 0.5 / (3√2) → μ = 0.5.
        let (global, local) = (w(1.0, 0.0), w(4.0, 2.0));
        let fed = Federation::FedEma { tau: 0.5 };
        let (start, r) = merge(fed, &spec(), &global, Some(&local), None).unwrap();
        assert!((r.divergence - 3.0 * 2f64.sqrt()).abs() < 1e-9);
        assert!((r.mu.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(start.tensors[0].values, vec![2.5, 2.5]);
        assert_eq!(start.tensors[1].values, vec![1.0, 1.0]);
        // With that λ saved, half the divergence gives μ = 0.25.
        let (start, r) = merge(fed, &spec(), &global, Some(&w(2.5, 0.0)), r.lambda).unwrap();
        assert!((r.mu.unwrap() - 0.25).abs() < 1e-9);
        assert_eq!(start.tensors[0].values, vec![1.375, 1.375]);
    }

    #[test]
    fn fedu_replaces_the_predictor_only_below_the_threshold() {
        let (global, near, far) = (w(1.0, 0.0), w(1.5, 7.0), w(9.0, 7.0));
        let fed = Federation::FedU { threshold: 1.0 };
        let (start, r) = merge(fed, &spec(), &global, Some(&near), None).unwrap();
        assert_eq!(r.predictor_replaced, Some(true));
        assert_eq!(start, global);
        let (start, r) = merge(fed, &spec(), &global, Some(&far), None).unwrap();
        assert_eq!(r.predictor_replaced, Some(false));
        assert_eq!(start.tensors[0].values, vec![1.0, 1.0]);
        assert_eq!(start.tensors[1].values, vec![7.0, 7.0]);
    }

    #[test]
    fn without_a_local_model_every_algorithm_starts_from_the_global_one() {
        let global = w(1.0, 0.0);
        for fed in [
            Federation::FedAvg,
            Federation::FedEma { tau: 0.7 },
            Federation::FedU { threshold: 1.0 },
        ] {
            let (start, r) = merge(fed, &spec(), &global, None, None).unwrap();
            assert_eq!(start, global);
            assert!(r.divergence.is_nan());
        }
    }
}
