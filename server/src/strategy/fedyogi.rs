//! FedYogi: v ← v − (1 − β₂)·Δ²·sign(v − Δ²) (see `fedopt.rs` for the shared step).

/// FedYogi's second moment.
pub fn second_moment(v: f64, d2: f64, beta2: f64) -> f64 {
    let sign = if v > d2 {
        1.0
    } else if v < d2 {
        -1.0
    } else {
        0.0
    };
    v - (1.0 - beta2) * d2 * sign
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
            kind: StrategyKind::Fedyogi,
            opt: FedOpt {
                eta: 0.1,
                beta1: 0.9,
                beta2: 0.99,
                tau: 1e-3,
            },
            rule: second_moment,
        };
        // Round 1, Δ = 2: m = 0.2, v = 0 − 0.01·4·sign(−4) = 0.04, w = 0.1·0.2/(0.2 + τ).
        let (g, st) = s.step(&w(&[0.0]), &w(&[2.0]), None).unwrap();
        close(&flat(&g), &[0.02 / 0.201], 1e-6);
        let st = st.unwrap();
        close(&st.v, &[0.04], 1e-7);
        // Round 2, Δ = 0.1: m = 0.18 + 0.01 = 0.19, v = 0.04 − 0.01·0.01·sign(0.04 − 0.01)
        // = 0.0399 (Adam would shrink v to 0.0397: Yogi's v moves additively).
        let (g2, st2) = s.step(&g, &w(&[0.1]), Some(&st)).unwrap();
        close(&st2.unwrap().v, &[0.0399], 1e-7);
        close(
            &flat(&g2),
            &[0.02 / 0.201 + 0.1 * 0.19 / (0.0399f64.sqrt() + 1e-3)],
            1e-6,
        );
    }
}
