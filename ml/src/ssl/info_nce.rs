//! InfoNCE with the other rows of the batch as negatives: for anchors `a` and positives
//! `b` (`[N, D]`, row `i` of `b` is the positive of row `i` of `a`), the mean over `i` of
//! `−log( exp(s_ii/τ) / Σ_k exp(s_ik/τ) )`, with `s` the dot products (of L2-normalized
//! rows when `normalize`).

use burn::prelude::*;

/// Rows scaled to unit L2 norm.
pub fn l2_normalize<B: Backend>(t: Tensor<B, 2>) -> Tensor<B, 2> {
    t.clone().div(t.square().sum_dim(1).sqrt().clamp_min(1e-12))
}

/// The InfoNCE loss of anchors `a` against positives `b` at temperature `tau`.
pub fn info_nce<B: Backend>(
    a: Tensor<B, 2>,
    b: Tensor<B, 2>,
    tau: f64,
    normalize: bool,
) -> Tensor<B, 1> {
    let (a, b) = if normalize {
        (l2_normalize(a), l2_normalize(b))
    } else {
        (a, b)
    };
    let logits = a.matmul(b.transpose()).div_scalar(tau);
    cross_entropy_diagonal(logits)
}

/// Mean cross entropy of `logits` `[N, N]` with class `i` the answer for row `i`.
pub fn cross_entropy_diagonal<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, _] = logits.dims();
    let max = logits.clone().max_dim(1).detach();
    let shifted = logits.sub(max);
    let lse = shifted.clone().exp().sum_dim(1).log();
    let eye = Tensor::<B, 2>::eye(n, &shifted.device());
    let diag = shifted.mul(eye).sum_dim(1);
    lse.sub(diag).mean().reshape([1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn matches_a_hand_computed_value() {
        // a = b = I₂, τ = 1: each row has logits (1, 0) → −log(e/(e+1)) = log(1 + 1/e).
        let dev = Default::default();
        let i2 = Tensor::<Flex, 2>::eye(2, &dev);
        let l = crate::model::scalar(&info_nce(i2.clone(), i2, 1.0, true));
        let expect = (1.0 + (-1.0f32).exp()).ln();
        assert!((l - expect).abs() < 1e-6, "{l} vs {expect}");
    }
}
