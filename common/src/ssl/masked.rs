//! Masked modeling: hide part of each sample and reconstruct it through a decoder; the loss
//! is the mean squared error over the hidden values only.
//! - images (SimMIM-style, Xie et al., 2022): random patches (all channels), by default one
//!   per cell of the encoder's last feature map; each cell's features predict its patch's
//!   pixels;
//! - time series: random spans of `span` steps (all channels) — masked sequence modeling;
//! - tabular records: random features.
//!
//! Hidden values are set to 0 in the encoder's input.

use burn::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::objective::{tensor2, Heads, Inputs, LossContext, SslObjective};
use super::views::ViewMaker;
use crate::data::{Dataset, SampleShape};
use crate::kernels::Kernels;
use crate::model::{BnMode, Encoder};

/// Masked modeling and its masks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Masked {
    /// Fraction of patches, spans or features hidden.
    pub ratio: f32,
    /// Side of an image patch, in pixels (0 = one cell of the encoder's feature map, 7 px
    /// for ConvNet-S on 28×28 images).
    pub patch: usize,
    /// Length of a time-series span, in steps.
    pub span: usize,
}

impl Default for Masked {
    fn default() -> Self {
        Self {
            ratio: 0.5,
            patch: 0,
            span: 8,
        }
    }
}

impl Masked {
    /// The ratio must lie in (0, 1); patch and span must be ≥ 1.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.ratio > 0.0 && self.ratio < 1.0) {
            return Err(format!(
                "masked.ratio = {} must lie strictly between 0 and 1",
                self.ratio
            ));
        }
        if self.span == 0 {
            return Err("masked.span must be at least 1".into());
        }
        Ok(())
    }

    /// The mask of one sample of `shape` (1 = hidden), drawn from `rng`.
    pub fn mask(&self, shape: SampleShape, rng: &mut impl Rng) -> Vec<f32> {
        let mut m = vec![0.0f32; shape.len()];
        match shape {
            SampleShape::Image {
                channels,
                height,
                width,
            } => {
                let [ph, pw] = match self.patch {
                    0 => crate::model::EncoderConfig::ConvnetS
                        .cell(shape)
                        .unwrap_or([4, 4]),
                    p => [p, p],
                };
                for py in (0..height).step_by(ph) {
                    for px in (0..width).step_by(pw) {
                        if rng.gen::<f32>() >= self.ratio {
                            continue;
                        }
                        for c in 0..channels {
                            for y in py..(py + ph).min(height) {
                                let row = (c * height + y) * width;
                                m[row + px..row + (px + pw).min(width)].fill(1.0);
                            }
                        }
                    }
                }
            }
            SampleShape::Series { channels, length } => {
                let s = self.span.max(1);
                for start in (0..length).step_by(s) {
                    if rng.gen::<f32>() < self.ratio {
                        for c in 0..channels {
                            m[c * length + start..c * length + (start + s).min(length)].fill(1.0);
                        }
                    }
                }
            }
            SampleShape::Tabular { .. } | SampleShape::Text { .. } => {
                for v in &mut m {
                    if rng.gen::<f32>() < self.ratio {
                        *v = 1.0;
                    }
                }
            }
        }
        // Always hide something, so that every sample contributes to the loss.
        if !m.iter().any(|&v| v > 0.0) && !m.is_empty() {
            let i = rng.gen_range(0..m.len());
            m[i] = 1.0;
        }
        m
    }
}

/// The mean squared reconstruction error of `decoder(encoder(x))` against `clean`, weighted
/// by `mask` (all values when there is none).
pub fn reconstruction_loss<B: Kernels>(cx: &LossContext<'_, B>, inputs: Inputs) -> Tensor<B, 1> {
    let x = inputs.x_tensor::<B>(cx.device);
    let h = cx.model.encoder.forward_with(x, BnMode::Train, cx.ops);
    let Some(decoder) = cx.model.decoder.as_ref() else {
        // A misconfigured caller: no decoder, nothing to reconstruct with.
        return h.sum().mul_scalar(0.0).reshape([1]);
    };
    masked_mse(decoder.forward(h), inputs, cx.device)
}

/// The mean squared error of `pred` (`[rows, dim]`) against the inputs' clean values,
/// over the masked values (all values without a mask).
fn masked_mse<B: Backend>(pred: Tensor<B, 2>, inputs: Inputs, dev: &B::Device) -> Tensor<B, 1> {
    let (rows, dim) = (inputs.rows, inputs.dim);
    let clean = tensor2::<B>(inputs.clean.unwrap_or(inputs.x), rows, dim, dev);
    let err = pred.sub(clean).square();
    match inputs.mask {
        Some(m) => {
            let count = m.iter().sum::<f32>().max(1.0);
            err.mul(tensor2::<B>(m, rows, dim, dev))
                .sum()
                .div_scalar(count)
                .reshape([1])
        }
        None => err.mean().reshape([1]),
    }
}

/// Inputs with `corrupt(sample, rng) -> (input, mask)` applied to each sample.
pub fn corrupted_inputs(
    data: &Dataset,
    idx: &[usize],
    seed: u64,
    corrupt: impl Fn(&[f32], &mut ChaCha8Rng) -> (Vec<f32>, Option<Vec<f32>>) + Sync,
) -> Inputs {
    let d = data.dim();
    let parts: Vec<(Vec<f32>, Option<Vec<f32>>)> = idx
        .par_iter()
        .map(|&i| {
            corrupt(
                data.sample(i),
                &mut super::views::stream_rng(seed, i as u64),
            )
        })
        .collect();
    let mut x = Vec::with_capacity(idx.len() * d);
    let mut clean = Vec::with_capacity(idx.len() * d);
    let mut mask = Vec::with_capacity(idx.len() * d);
    let mut masked = false;
    for (&i, (xi, mi)) in idx.iter().zip(parts) {
        x.extend_from_slice(&xi);
        clean.extend_from_slice(data.sample(i));
        if let Some(m) = mi {
            masked = true;
            mask.extend_from_slice(&m);
        }
    }
    Inputs {
        x,
        rows: idx.len(),
        dim: d,
        clean: Some(clean),
        mask: masked.then_some(mask),
    }
}

impl SslObjective for Masked {
    fn heads(&self) -> Heads {
        Heads {
            decoder: true,
            ..Heads::default()
        }
    }

    fn fits(&self, shape: SampleShape) -> Result<(), String> {
        match shape {
            SampleShape::Text { .. } => {
                Err("masked modeling of text needs a token-level encoder, which fedssl does not have yet".into())
            }
            _ => Ok(()),
        }
    }

    fn inputs(&self, data: &Dataset, idx: &[usize], _views: &ViewMaker, seed: u64) -> Inputs {
        let shape = data.shape;
        corrupted_inputs(data, idx, seed, |s, rng| {
            let m = self.mask(shape, rng);
            let x = s
                .iter()
                .zip(&m)
                .map(|(&v, &h)| if h > 0.0 { 0.0 } else { v })
                .collect();
            (x, Some(m))
        })
    }

    fn loss<B: Kernels>(&self, cx: &LossContext<'_, B>, inputs: Inputs) -> Tensor<B, 1> {
        match (cx.spec.shape, &cx.model.encoder, &cx.model.decoder) {
            (
                SampleShape::Image {
                    channels,
                    height,
                    width,
                },
                Encoder::Conv(net),
                Some(decoder),
            ) => {
                // Each cell of the feature map predicts its own patch.
                let dim = inputs.dim;
                let x = inputs.x_tensor::<B>(cx.device);
                let fmap = net.feature_map_flat(x, BnMode::Train, cx.ops);
                let [n, c, gh, gw] = fmap.dims();
                let cells = fmap.permute([0, 2, 3, 1]).reshape([n * gh * gw, c]);
                let [ph, pw] = [height / gh, width / gw];
                let pred = decoder
                    .forward(cells)
                    .reshape([n, gh, gw, channels, ph, pw])
                    .permute([0, 3, 1, 4, 2, 5])
                    .reshape([n, dim]);
                masked_mse(pred, inputs, cx.device)
            }
            _ => reconstruction_loss(cx, inputs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn image_masks_cover_whole_patches_at_about_the_ratio() {
        let shape = SampleShape::GRAY_28;
        let m = Masked::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut frac = 0.0;
        for _ in 0..50 {
            let mask = m.mask(shape, &mut rng);
            // Every 7×7 patch (one cell of ConvNet-S's 4×4 feature map) is all hidden or
            // all visible.
            for py in 0..4 {
                for px in 0..4 {
                    let v = mask[py * 7 * 28 + px * 7];
                    for y in 0..7 {
                        for x in 0..7 {
                            assert_eq!(mask[(py * 7 + y) * 28 + px * 7 + x], v);
                        }
                    }
                }
            }
            frac += mask.iter().sum::<f32>() / 784.0 / 50.0;
        }
        assert!((frac - 0.5).abs() < 0.08, "{frac}");
    }

    #[test]
    fn series_masks_hide_spans_in_every_channel() {
        let shape = SampleShape::Series {
            channels: 3,
            length: 64,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mask = Masked::default().mask(shape, &mut rng);
        for t in 0..64 {
            assert_eq!(mask[t], mask[64 + t]);
            assert_eq!(mask[t], mask[128 + t]);
            assert_eq!(mask[t], mask[t - t % 8]);
        }
    }
}
