//! SimSiam (Chen & He, 2021): each view's prediction is pulled towards the other view's
//! projection, which is treated as a constant (stop-gradient):
//! `L = ½·D(p₁, sg(z₂)) + ½·D(p₂, sg(z₁))` with `D(p, z) = −mean_i cos(p_i, z_i)`.
//! No negatives and no momentum encoder; the predictor and the stop-gradient are what keep
//! it from collapsing.

use burn::prelude::*;

use super::objective::{PairObjective, PairOutputs};

/// The SimSiam objective.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimSiam;

/// Mean over rows of the cosine similarity of `a` and `b` (`[N, D]` each).
pub fn mean_cosine<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
    row_cosine(a, b).mean().reshape([1])
}

/// The cosine similarity of each row of `a` with the same row of `b`, `[N]`.
pub fn row_cosine<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
    let norm = |t: Tensor<B, 2>| t.clone().div(t.square().sum_dim(1).sqrt().clamp_min(1e-12));
    let n = a.dims()[0];
    norm(a).mul(norm(b)).sum_dim(1).reshape([n])
}

impl PairObjective for SimSiam {
    fn uses_predictor(&self) -> bool {
        true
    }

    fn pair_loss<B: Backend>(&self, out: PairOutputs<B>) -> Tensor<B, 1> {
        // Without a predictor (a misconfigured caller) the projections stand in for it.
        let p1 = out.p1.unwrap_or_else(|| out.z1.clone());
        let p2 = out.p2.unwrap_or_else(|| out.z2.clone());
        let d1 = mean_cosine(p1, out.z2.detach());
        let d2 = mean_cosine(p2, out.z1.detach());
        d1.add(d2).mul_scalar(-0.5)
    }

    fn pair_losses<B: Backend>(&self, out: PairOutputs<B>) -> Result<Tensor<B, 1>, String> {
        let p1 = out.p1.unwrap_or_else(|| out.z1.clone());
        let p2 = out.p2.unwrap_or_else(|| out.z2.clone());
        let d1 = row_cosine(p1, out.z2.detach());
        let d2 = row_cosine(p2, out.z1.detach());
        Ok(d1.add(d2).mul_scalar(-0.5))
    }

    fn pairs_coupled(&self) -> String {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    fn t<B: Backend>(v: [[f32; 2]; 1]) -> Tensor<B, 2> {
        Tensor::from_data(TensorData::from(v), &Default::default())
    }

    #[test]
    fn loss_matches_a_hand_computed_value_and_stops_gradients() {
        // cos(p₁, z₂) = cos((1,0), (0,1)) = 0; cos(p₂, z₁) = cos((1,1), (1,0)) = 1/√2.
        type A = Autodiff<Flex>;
        let z1 = t::<A>([[1.0, 0.0]]).require_grad();
        let z2 = t::<A>([[0.0, 1.0]]).require_grad();
        let p1 = t::<A>([[1.0, 0.0]]).require_grad();
        let p2 = t::<A>([[1.0, 1.0]]).require_grad();
        let loss = SimSiam.pair_loss(PairOutputs {
            z1: z1.clone(),
            z2: z2.clone(),
            p1: Some(p1.clone()),
            p2: Some(p2.clone()),
            t1: None,
            t2: None,
        });
        let l = crate::model::scalar(&loss);
        assert!((l + 0.5 / 2f32.sqrt()).abs() < 1e-6, "{l}");
        let g = loss.backward();
        // The projections are constants: no gradient reaches them through the loss.
        assert!(z1.grad(&g).is_none() && z2.grad(&g).is_none());
        assert!(p1.grad(&g).is_some() && p2.grad(&g).is_some());
    }
}
