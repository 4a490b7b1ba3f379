//! FedAdagrad: v ← v + Δ² (see `fedopt.rs` for the shared step).

/// FedAdagrad's second moment.
pub fn second_moment(v: f64, d2: f64, _beta2: f64) -> f64 {
    v + d2
}

#[cfg(test)]
mod tests {
    use super::super::fedopt::{Adaptive, FedOpt};
    use super::super::testing::{close, w};
    use super::super::{flat, Strategy};
    use super::second_moment;
    use crate::strategy::config::StrategyKind;

    #[test]
    fn two_rounds_by_hand() {
        let s = Adaptive {
            kind: StrategyKind::Fedadagrad,
            opt: FedOpt {
                eta: 0.5,
                beta1: 0.0,
                beta2: 0.0,
                tau: 0.0,
            },
            rule: second_moment,
        };
        // β₁ = 0, τ = 0: each step is η·Δ/√(ΣΔ²): 0.5·3/3 = 0.5, then 0.5·4/5 = 0.4.
        let (g, st) = s.step(&w(&[1.0]), &w(&[3.0]), None).unwrap();
        close(&flat(&g), &[1.5], 1e-6);
        let (g2, st2) = s.step(&g, &w(&[4.0]), st.as_ref()).unwrap();
        close(&flat(&g2), &[1.9], 1e-6);
        close(&st2.unwrap().v, &[25.0], 1e-5);
    }
}
