//! SimCLR's NT-Xent loss (normalized temperature-scaled cross entropy).
//!
//! For a batch of `N` pairs, the `2N` projections are L2-normalized; each one's positive is
//! its partner view, and the other `2N − 2` projections are its negatives:
//! `ℓ_i = −log( exp(s_{i,p(i)}/τ) / Σ_{k≠i} exp(s_{i,k}/τ) )`, averaged over all `2N` anchors.

use burn::prelude::*;

use super::objective::{PairObjective, PairOutputs};

/// SimCLR as a [`PairObjective`]: NT-Xent at `temperature`, negatives from the batch.
#[derive(Debug, Clone, Copy)]
pub struct SimClr {
    /// Softmax temperature τ.
    pub temperature: f64,
}

impl PairObjective for SimClr {
    fn pairs_coupled(&self) -> String {
        "NT-Xent uses the other records of the batch as negatives".into()
    }

    fn pair_loss<B: Backend>(&self, out: PairOutputs<B>) -> Tensor<B, 1> {
        nt_xent(out.z1, out.z2, self.temperature)
    }
}

/// NT-Xent loss of paired projections `z1`, `z2` (`[N, D]` each) at temperature `tau`.
pub fn nt_xent<B: Backend>(z1: Tensor<B, 2>, z2: Tensor<B, 2>, tau: f64) -> Tensor<B, 1> {
    let [n, _] = z1.dims();
    let device = z1.device();
    let z = Tensor::cat(vec![z1, z2], 0);
    let norm = z.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    let z = z.div(norm);
    let sim = z.clone().matmul(z.clone().transpose()).div_scalar(tau); // [2N, 2N]
    let diag = Tensor::<B, 2, Bool>::diag_mask([2 * n, 2 * n], 0, &device).bool_not();
    let sim = sim.mask_fill(diag, -1.0e9);
    let max = sim.clone().max_dim(1).detach();
    let lse = sim
        .sub(max.clone())
        .exp()
        .sum_dim(1)
        .log()
        .add(max)
        .reshape([2 * n]);
    let za = z.clone().slice(0..n);
    let zb = z.slice(n..2 * n);
    let pos = za.mul(zb).sum_dim(1).reshape([n]).div_scalar(tau);
    let pos = Tensor::cat(vec![pos.clone(), pos], 0);
    lse.sub(pos).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn t(v: Vec<f32>, r: usize, c: usize) -> Tensor<Flex, 2> {
        Tensor::from_data(TensorData::new(v, [r, c]), &Default::default())
    }

    fn scalar(x: Tensor<Flex, 1>) -> f32 {
        x.into_data().to_vec::<f32>().unwrap()[0]
    }

    /// Independent reference: the textbook formula in f64 loops.
    fn reference(z1: &[Vec<f64>], z2: &[Vec<f64>], tau: f64) -> f64 {
        let n = z1.len();
        let mut z: Vec<Vec<f64>> = z1.iter().chain(z2).cloned().collect();
        for v in &mut z {
            let nrm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter_mut().for_each(|x| *x /= nrm);
        }
        let dot = |a: &Vec<f64>, b: &Vec<f64>| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let mut total = 0.0;
        for i in 0..2 * n {
            let p = if i < n { i + n } else { i - n };
            let denom: f64 = (0..2 * n)
                .filter(|&k| k != i)
                .map(|k| (dot(&z[i], &z[k]) / tau).exp())
                .sum();
            total += -((dot(&z[i], &z[p]) / tau).exp() / denom).ln();
        }
        total / (2 * n) as f64
    }

    #[test]
    fn hand_computed_cases() {
        // One pair, identical views: the positive is the only other entry → loss 0.
        let l = scalar(nt_xent(t(vec![1., 0.], 1, 2), t(vec![2., 0.], 1, 2), 0.5));
        assert!(l.abs() < 1e-6, "{l}");
        // Two orthogonal pairs, τ = 1: each row sees e^1 (positive) and e^0 twice.
        let l = scalar(nt_xent(
            t(vec![1., 0., 0., 1.], 2, 2),
            t(vec![1., 0., 0., 1.], 2, 2),
            1.0,
        ));
        let expect = (std::f64::consts::E + 2.0).ln() - 1.0;
        assert!((l as f64 - expect).abs() < 1e-5, "{l} vs {expect}");
    }

    #[test]
    fn matches_reference_on_random_input() {
        let z1: Vec<Vec<f64>> = (0..5)
            .map(|i| {
                (0..4)
                    .map(|j| ((i * 7 + j * 3) % 11) as f64 - 5.0 + 0.1)
                    .collect()
            })
            .collect();
        let z2: Vec<Vec<f64>> = (0..5)
            .map(|i| {
                (0..4)
                    .map(|j| ((i * 5 + j * 2) % 9) as f64 - 4.0 + 0.2)
                    .collect()
            })
            .collect();
        let flat = |z: &Vec<Vec<f64>>| z.iter().flatten().map(|&x| x as f32).collect();
        let got = scalar(nt_xent(t(flat(&z1), 5, 4), t(flat(&z2), 5, 4), 0.2)) as f64;
        let want = reference(&z1, &z2, 0.2);
        assert!(
            (got - want).abs() < 1e-4 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }
}
