//! FedAdam: v ← β₂·v + (1 − β₂)·Δ² (see `fedopt.rs` for the shared step).

/// FedAdam's second moment.
pub fn second_moment(v: f64, d2: f64, beta2: f64) -> f64 {
    beta2 * v + (1.0 - beta2) * d2
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
            kind: StrategyKind::Fedadam,
            opt: FedOpt {
                eta: 0.1,
                beta1: 0.9,
                beta2: 0.99,
                tau: 1e-3,
            },
            rule: second_moment,
        };
        // Round 1, Δ = (1, −2): m = (0.1, −0.2), v = (0.01, 0.04),
        // w = 0 + 0.1·m/(√v + τ) = (0.1·0.1/0.101, −0.1·0.2/0.201).
        let (g, st) = s.step(&w(&[0.0, 0.0]), &w(&[1.0, -2.0]), None).unwrap();
        close(&flat(&g), &[0.01 / 0.101, -0.02 / 0.201], 1e-6);
        let st = st.unwrap();
        close(&st.m, &[0.1, -0.2], 1e-7);
        close(&st.v, &[0.01, 0.04], 1e-7);
        // Round 2, Δ = (1, 0): m = (0.19, −0.18), v = (0.0199, 0.0396).
        let (g2, st2) = s.step(&g, &w(&[1.0, 0.0]), Some(&st)).unwrap();
        let want = [
            0.01 / 0.101 + 0.1 * 0.19 / (0.0199f64.sqrt() + 1e-3),
            -0.02 / 0.201 + 0.1 * -0.18 / (0.0396f64.sqrt() + 1e-3),
        ];
        close(&flat(&g2), &want, 1e-6);
        assert_eq!(st2.unwrap().steps, 2);
    }
}
