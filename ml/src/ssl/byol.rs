//! BYOL (Grill et al., 2020): an online network (encoder → projector → predictor) predicts
//! the projection of the other view made by a target network, an exponential moving
//! average of the online encoder and projector:
//! `L = Σ_views mean_i ‖p̂_i − t̂_i‖² = Σ_views mean_i (2 − 2·cos(p_i, t_i))`, with `t` a
//! constant. After every step the target moves towards the online weights with momentum
//! `τ_k = 1 − (1 − τ_base)·(cos(π·k/K) + 1)/2` over the `K` steps of a round
//! ([`Byol::momentum`]). In the federation (FedBYOL) the target stays on the site and is
//! persisted between rounds.

use burn::prelude::*;

use super::objective::{PairObjective, PairOutputs};
use super::simsiam::{mean_cosine, row_cosine};
pub use fedssl_core::spec::Byol;

impl PairObjective for Byol {
    fn uses_predictor(&self) -> bool {
        true
    }

    fn uses_target(&self) -> bool {
        true
    }

    fn pair_loss<B: Backend>(&self, out: PairOutputs<B>) -> Tensor<B, 1> {
        // Without a predictor or target (a misconfigured caller) the projections stand in.
        let p1 = out.p1.unwrap_or_else(|| out.z1.clone());
        let p2 = out.p2.unwrap_or_else(|| out.z2.clone());
        let t1 = out.t1.unwrap_or(out.z1).detach();
        let t2 = out.t2.unwrap_or(out.z2).detach();
        let term = |p, t| mean_cosine(p, t).mul_scalar(-2.0).add_scalar(2.0);
        term(p1, t2).add(term(p2, t1))
    }

    fn pair_losses<B: Backend>(&self, out: PairOutputs<B>) -> Result<Tensor<B, 1>, String> {
        let p1 = out.p1.unwrap_or_else(|| out.z1.clone());
        let p2 = out.p2.unwrap_or_else(|| out.z2.clone());
        let t1 = out.t1.unwrap_or(out.z1).detach();
        let t2 = out.t2.unwrap_or(out.z2).detach();
        let term = |p, t| row_cosine(p, t).mul_scalar(-2.0).add_scalar(2.0);
        Ok(term(p1, t2).add(term(p2, t1)))
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
    fn loss_matches_a_hand_computed_value_and_the_target_gets_no_gradient() {
        // cos(p₁, t₂) = cos((1,0), (0,1)) = 0 → 2; cos(p₂, t₁) = cos((1,1), (1,0)) = 1/√2
        // → 2 − √2. Total 4 − √2.
        type A = Autodiff<Flex>;
        let z = t::<A>([[3.0, 3.0]]).require_grad();
        let t1 = t::<A>([[1.0, 0.0]]).require_grad();
        let t2 = t::<A>([[0.0, 1.0]]).require_grad();
        let p1 = t::<A>([[1.0, 0.0]]).require_grad();
        let p2 = t::<A>([[1.0, 1.0]]).require_grad();
        let loss = Byol::default().pair_loss(PairOutputs {
            z1: z.clone(),
            z2: z.clone(),
            p1: Some(p1.clone()),
            p2: Some(p2.clone()),
            t1: Some(t1.clone()),
            t2: Some(t2.clone()),
        });
        let l = crate::model::scalar(&loss);
        assert!((l - (4.0 - 2f32.sqrt())).abs() < 1e-5, "{l}");
        let g = loss.backward();
        assert!(t1.grad(&g).is_none() && t2.grad(&g).is_none());
        assert!(p1.grad(&g).is_some() && p2.grad(&g).is_some());
    }

    #[test]
    fn momentum_follows_the_cosine_schedule() {
        let b = Byol::default();
        assert!((b.momentum(0, 10) - 0.99).abs() < 1e-12);
        assert!((b.momentum(5, 10) - 0.995).abs() < 1e-12);
        assert!((b.momentum(10, 10) - 1.0).abs() < 1e-12);
        assert!(Byol { base_momentum: 1.5 }.validate().is_err());
    }
}
