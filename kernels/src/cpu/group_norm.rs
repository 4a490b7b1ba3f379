//! Group normalization of NCHW activations (Wu & He 2018), fused with ReLU, forward and
//! backward. Statistics are per image and group of channels, so no image's output depends
//! on another's: the normalization DP-SGD can use. The backward pass returns the scale and
//! shift gradients per image (DP-SGD clips them per record; plain training sums them).

use rayon::prelude::*;

use super::norm::Nc;

/// What the backward pass needs from the forward pass.
#[derive(Debug, Clone)]
pub struct GnSaved {
    /// Normalized input (before scale and shift), `[n, c, s]`.
    pub y: Vec<f32>,
    /// 1/√(var + ε) per image and group, `[n, groups]`.
    pub rstd: Vec<f32>,
}

/// Forward: `out = relu?(γ_c·(x − μ_{n,g})·rstd_{n,g} + β_c)`; returns `(out, saved)`.
pub fn forward(
    d: Nc,
    groups: usize,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    relu: bool,
) -> (Vec<f32>, GnSaved) {
    assert!(groups > 0 && d.c.is_multiple_of(groups) && x.len() == d.n * d.c * d.s);
    let per = d.c / groups * d.s;
    let mut y = vec![0.0f32; x.len()];
    let mut out = vec![0.0f32; x.len()];
    let mut rstd = vec![0.0f32; d.n * groups];
    y.par_chunks_mut(per)
        .zip(out.par_chunks_mut(per))
        .zip(rstd.par_iter_mut())
        .enumerate()
        .for_each(|(ng, ((yg, og), r))| {
            let xg = &x[ng * per..(ng + 1) * per];
            let mean = xg.iter().map(|&v| v as f64).sum::<f64>() / per as f64;
            let var = xg.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / per as f64;
            let rs = 1.0 / (var + eps as f64).sqrt();
            *r = rs as f32;
            let c0 = (ng % groups) * (d.c / groups);
            for (j, ((yv, ov), &xv)) in yg.iter_mut().zip(og.iter_mut()).zip(xg).enumerate() {
                let c = c0 + j / d.s;
                *yv = ((xv as f64 - mean) * rs) as f32;
                let o = gamma[c] * *yv + beta[c];
                *ov = if relu { o.max(0.0) } else { o };
            }
        });
    (out, GnSaved { y, rstd })
}

/// Backward from the output gradient: `(dx, dγ per image [n, c], dβ per image [n, c])`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    d: Nc,
    groups: usize,
    y: &[f32],
    rstd: &[f32],
    out: &[f32],
    gamma: &[f32],
    dout: &[f32],
    relu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let per = d.c / groups * d.s;
    let cg = d.c / groups;
    let mut dx = vec![0.0f32; dout.len()];
    let mut dgamma = vec![0.0f32; d.n * d.c];
    let mut dbeta = vec![0.0f32; d.n * d.c];
    dx.par_chunks_mut(per)
        .zip(dgamma.par_chunks_mut(cg))
        .zip(dbeta.par_chunks_mut(cg))
        .enumerate()
        .for_each(|(ng, ((dxg, dgg), dbg))| {
            let range = ng * per..(ng + 1) * per;
            let (yg, og, gg) = (&y[range.clone()], &out[range.clone()], &dout[range]);
            let c0 = (ng % groups) * cg;
            // dŷ = γ·(dout masked by ReLU); the per-channel sums give dγ and dβ.
            let (mut sum_dy, mut sum_dy_y) = (0.0f64, 0.0f64);
            for (j, dxv) in dxg.iter_mut().enumerate() {
                let g = if relu && og[j] <= 0.0 { 0.0 } else { gg[j] };
                let cl = j / d.s;
                dgg[cl] += g * yg[j];
                dbg[cl] += g;
                let dyh = g * gamma[c0 + cl];
                *dxv = dyh;
                sum_dy += dyh as f64;
                sum_dy_y += (dyh * yg[j]) as f64;
            }
            let (m1, m2) = (sum_dy / per as f64, sum_dy_y / per as f64);
            let rs = rstd[ng] as f64;
            for (dxv, &yv) in dxg.iter_mut().zip(yg) {
                *dxv = (rs * (*dxv as f64 - m1 - yv as f64 * m2)) as f32;
            }
        });
    (dx, dgamma, dbeta)
}
