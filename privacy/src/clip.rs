//! L2 clipping of a whole update (opendp only clamps element-wise).

use fedssl_core::weights::Weights;

/// Scales `update` so that its L2 norm is at most `c`. Returns the norm before clipping.
pub fn clip_l2(update: &mut Weights, c: f64) -> f64 {
    let norm = update.l2_norm();
    if norm > c && norm > 0.0 {
        // Scale in f64 and round down a hair so the f32 result cannot exceed c.
        let s = (c / norm) * (1.0 - 1e-6);
        update.scale(s as f32);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedssl_core::weights::WeightTensor;
    use rand::{Rng, SeedableRng};

    #[test]
    fn bound_holds_for_any_update() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for trial in 0..200 {
            let len = rng.gen_range(1..2000);
            let mag = 10f32.powi(rng.gen_range(-6..8));
            let values: Vec<f32> = (0..len).map(|_| rng.gen_range(-1.0..1.0) * mag).collect();
            let mut w = Weights {
                tensors: vec![WeightTensor {
                    name: "w".into(),
                    shape: vec![len],
                    values: values.clone(),
                }],
            };
            let c = 10f64.powi(rng.gen_range(-3..3));
            let before = clip_l2(&mut w, c);
            let after = w.l2_norm();
            assert!(after <= c, "trial {trial}: {after} > {c}");
            if before <= c {
                assert_eq!(w.tensors[0].values, values, "small updates are untouched");
            } else {
                // Direction preserved.
                let ratio = w.tensors[0].values[0] as f64 / values[0] as f64;
                assert!((ratio - after / before).abs() < 1e-3 * ratio.abs().max(1e-9));
            }
        }
    }
}
