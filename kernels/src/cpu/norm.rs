//! Per-channel normalization of NCHW activations, fused with ReLU: training-mode batch
//! normalization (batch statistics) and the per-channel affine map that evaluation-mode
//! batch normalization reduces to, forward and backward.
//!
//! Statistics are reduced per channel in parallel (one contiguous `H·W` segment per image,
//! merged in f64 with Chan's formula, so large batches lose no precision); the elementwise
//! passes run in parallel over images.

use rayon::prelude::*;

use super::vector::{affine_in_place, combine_segment, masked_sums, sum, sum_sq_dev};

/// Shape `[n, c, s]` of an NCHW tensor with `s = H·W`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nc {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Pixels per channel and image.
    pub s: usize,
}

impl Nc {
    fn len(&self) -> usize {
        self.n * self.c * self.s
    }

    fn seg<'a>(&self, v: &'a [f32], i: usize, ch: usize) -> &'a [f32] {
        let at = (i * self.c + ch) * self.s;
        &v[at..at + self.s]
    }
}

/// Per-channel mean and biased variance over images and pixels.
pub fn channel_stats(d: Nc, y: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(y.len(), d.len());
    let (mean, var): (Vec<f32>, Vec<f32>) = (0..d.c)
        .into_par_iter()
        .map(|ch| {
            let (mut count, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
            for i in 0..d.n {
                let seg = d.seg(y, i, ch);
                if seg.is_empty() {
                    continue;
                }
                let nb = seg.len() as f64;
                let mb = (sum(seg) / seg.len() as f32) as f64;
                let m2b = sum_sq_dev(seg, mb as f32) as f64;
                let delta = mb - mean;
                let total = count + nb;
                mean += delta * nb / total;
                m2 += m2b + delta * delta * count * nb / total;
                count = total;
            }
            let var = if count > 0.0 { m2 / count } else { 0.0 };
            (mean as f32, var as f32)
        })
        .unzip();
    (mean, var)
}

/// `out[i, ch, :] = max(0, y·scale[ch] + shift[ch])` (no max unless `relu`).
pub fn affine_forward(d: Nc, y: &[f32], scale: &[f32], shift: &[f32], relu: bool) -> Vec<f32> {
    assert!(y.len() == d.len() && scale.len() == d.c && shift.len() == d.c);
    let mut out = vec![0.0f32; d.len()];
    let img = (d.c * d.s).max(1);
    out.par_chunks_mut(img)
        .zip(y.par_chunks(img))
        .for_each(|(o, yi)| {
            for ch in 0..d.c {
                // One channel's segment is in L1: copy it, then map it in place.
                let seg = &mut o[ch * d.s..(ch + 1) * d.s];
                seg.copy_from_slice(&yi[ch * d.s..(ch + 1) * d.s]);
                affine_in_place(seg, scale[ch], shift[ch], relu);
            }
        });
    out
}

/// Training-mode batch normalization (+ ReLU): `(out, batch mean, biased batch variance)`.
pub fn bn_forward(
    d: Nc,
    y: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    relu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert!(gamma.len() == d.c && beta.len() == d.c);
    let (mean, var) = channel_stats(d, y);
    let scale: Vec<f32> = (0..d.c).map(|c| gamma[c] / (var[c] + eps).sqrt()).collect();
    let shift: Vec<f32> = (0..d.c).map(|c| beta[c] - mean[c] * scale[c]).collect();
    (affine_forward(d, y, &scale, &shift, relu), mean, var)
}

/// Per-channel `(Σ dz, Σ dz·y)` with `dz = g·[out > 0]` (or `g` without ReLU).
fn masked_channel_sums(d: Nc, y: &[f32], out: &[f32], g: &[f32], relu: bool) -> Vec<(f64, f64)> {
    (0..d.c)
        .into_par_iter()
        .map(|ch| {
            let (mut s, mut sy) = (0.0f64, 0.0f64);
            for i in 0..d.n {
                let (a, b) = masked_sums(d.seg(g, i, ch), d.seg(y, i, ch), d.seg(out, i, ch), relu);
                s += a as f64;
                sy += b as f64;
            }
            (s, sy)
        })
        .collect()
}

/// `dy[i, ch, :] = a[ch]·dz + b[ch]·y + c[ch]` with `dz = g·[out > 0]`.
fn combine(d: Nc, y: &[f32], out: &[f32], g: &[f32], relu: bool, coef: &[[f32; 3]]) -> Vec<f32> {
    let mut dy = vec![0.0f32; d.len()];
    let img = (d.c * d.s).max(1);
    dy.par_chunks_mut(img).enumerate().for_each(|(i, dyi)| {
        for (ch, &[a, b, c]) in coef.iter().enumerate() {
            let (gs, ys, os) = (d.seg(g, i, ch), d.seg(y, i, ch), d.seg(out, i, ch));
            let dst = &mut dyi[ch * d.s..(ch + 1) * d.s];
            combine_segment(dst, gs, ys, os, a, b, c, relu);
        }
    });
    dy
}

/// Gradients of [`bn_forward`]: `(dy, dgamma, dbeta)` from the output gradient `g`, the
/// input `y`, the output `out` (for the ReLU mask) and the batch statistics.
#[allow(clippy::too_many_arguments)]
pub fn bn_backward(
    d: Nc,
    y: &[f32],
    out: &[f32],
    g: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
    relu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert!(y.len() == d.len() && out.len() == d.len() && g.len() == d.len());
    assert!(gamma.len() == d.c && mean.len() == d.c && var.len() == d.c);
    let sums = masked_channel_sums(d, y, out, g, relu);
    let m = (d.n * d.s).max(1) as f64;
    let (mut dgamma, mut dbeta, mut coef) = (vec![0.0; d.c], vec![0.0; d.c], vec![[0.0; 3]; d.c]);
    for ch in 0..d.c {
        let (s, sy) = sums[ch];
        let inv = 1.0 / (var[ch] as f64 + eps as f64).sqrt();
        let mu = mean[ch] as f64;
        // Σ dz·x̂ with x̂ = (y − μ)·inv.
        let s_xhat = (sy - mu * s) * inv;
        dbeta[ch] = s as f32;
        dgamma[ch] = s_xhat as f32;
        // dy = γ·inv·(dz − s/m − x̂·s_xhat/m) = a·dz + b·y + c.
        let gi = gamma[ch] as f64 * inv;
        let b = -gi * inv * s_xhat / m;
        coef[ch] = [gi as f32, b as f32, (-gi * s / m - b * mu) as f32];
    }
    (combine(d, y, out, g, relu, &coef), dgamma, dbeta)
}

/// Gradients of [`affine_forward`]: `(dy, dscale, dshift)`.
pub fn affine_backward(
    d: Nc,
    y: &[f32],
    out: &[f32],
    g: &[f32],
    scale: &[f32],
    relu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert!(y.len() == d.len() && out.len() == d.len() && g.len() == d.len());
    assert!(scale.len() == d.c);
    let sums = masked_channel_sums(d, y, out, g, relu);
    let coef: Vec<[f32; 3]> = scale.iter().map(|&a| [a, 0.0, 0.0]).collect();
    let dshift = sums.iter().map(|s| s.0 as f32).collect();
    let dscale = sums.iter().map(|s| s.1 as f32).collect();
    (combine(d, y, out, g, relu, &coef), dscale, dshift)
}
