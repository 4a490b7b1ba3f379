//! VICReg (Bardes, Ponce & LeCun, 2022): no negatives, no predictor; three terms on the
//! projections (the "expander" output) of the two views:
//! - invariance: mean squared distance between `z₁` and `z₂`;
//! - variance: a hinge keeping every dimension's standard deviation (over the batch) at
//!   least 1, `mean_j max(0, 1 − √(Var z_j + ε))`, for each view;
//! - covariance: the squared off-diagonal entries of each view's covariance matrix, summed
//!   and divided by the dimension, decorrelating the dimensions.
//!
//! `L = λ·inv + μ·(var₁ + var₂)/2 + ν·(cov₁ + cov₂)`, with the paper's λ = μ = 25, ν = 1.

use burn::prelude::*;

use super::objective::{PairObjective, PairOutputs};
pub use fedssl_core::spec::VicReg;

/// Hinge on each dimension's standard deviation over the batch, averaged over dimensions.
fn variance_term<B: Backend>(z: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, _] = z.dims();
    let centered = z.clone().sub(z.mean_dim(0));
    let var = centered
        .square()
        .sum_dim(0)
        .div_scalar((n.max(2) - 1) as f64);
    var.add_scalar(1e-4)
        .sqrt()
        .neg()
        .add_scalar(1.0)
        .clamp_min(0.0)
        .mean()
        .reshape([1])
}

/// Σ of the squared off-diagonal covariance entries, divided by the dimension.
fn covariance_term<B: Backend>(z: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, d] = z.dims();
    let device = z.device();
    let centered = z.clone().sub(z.mean_dim(0));
    let cov = centered
        .clone()
        .transpose()
        .matmul(centered)
        .div_scalar((n.max(2) - 1) as f64);
    let all = cov.clone().square().sum();
    let diag = cov.mul(Tensor::<B, 2>::eye(d, &device)).square().sum();
    all.sub(diag).div_scalar(d as f64).reshape([1])
}

impl PairObjective for VicReg {
    fn pairs_coupled(&self) -> String {
        "its variance and covariance terms are statistics of the whole batch".into()
    }

    fn pair_loss<B: Backend>(&self, out: PairOutputs<B>) -> Tensor<B, 1> {
        let inv = out
            .z1
            .clone()
            .sub(out.z2.clone())
            .square()
            .mean()
            .reshape([1]);
        let var = variance_term(out.z1.clone())
            .add(variance_term(out.z2.clone()))
            .div_scalar(2.0);
        let cov = covariance_term(out.z1).add(covariance_term(out.z2));
        inv.mul_scalar(self.invariance)
            .add(var.mul_scalar(self.variance))
            .add(cov.mul_scalar(self.covariance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn t(v: [[f32; 2]; 2]) -> Tensor<Flex, 2> {
        Tensor::from_data(TensorData::from(v), &Default::default())
    }

    #[test]
    fn loss_matches_a_hand_computed_value() {
        // inv = 0.02; var₁ = 0.924113 (std 0.1418 and 0.01 under the hinge), var₂ = 0.787603;
        // cov₁ = 0, cov₂ = 2·0.04²/2 = 0.0016 (computed by hand, see the module docs).
        let out = PairOutputs {
            z1: t([[0.1, 0.2], [0.3, 0.2]]),
            z2: t([[0.1, 0.0], [0.3, 0.4]]),
            p1: None,
            p2: None,
            t1: None,
            t2: None,
        };
        let l = crate::model::scalar(&VicReg::default().pair_loss(out));
        assert!((l - 21.898_048).abs() < 1e-4, "{l}");
    }

    #[test]
    fn bad_coefficients_are_named() {
        let v = VicReg {
            invariance: -1.0,
            ..VicReg::default()
        };
        assert!(v.validate().unwrap_err().contains("vicreg"));
        assert!(VicReg::default().validate().is_ok());
    }
}
