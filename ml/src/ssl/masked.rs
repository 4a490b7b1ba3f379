//! Masked modeling: hide part of each sample and reconstruct it through a decoder; the loss
//! is the mean squared error over the hidden values only.
//! - images (SimMIM-style, Xie et al., 2022): random patches (all channels), by default one
//!   per cell of the encoder's last feature map; each cell's features predict its patch's
//!   pixels;
//! - time series: random spans of `span` steps (all channels) — masked sequence modeling;
//! - tabular records: random features;
//! - text (masked-token modeling, as BERT): random byte tokens, of which 80 % become
//!   [`MASK`], 10 % a random byte and 10 % stay; each token's feature predicts its byte
//!   through the decoder, and the loss is the cross-entropy over the chosen tokens.
//!
//! Hidden numeric values are set to 0 in the encoder's input.

use crate::prelude::*;
use burn::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::objective::{tensor2, Heads, Inputs, LossContext, SslObjective};
use super::views::ViewMaker;
use crate::data::{Dataset, SampleShape};
use crate::kernels::Kernels;
use crate::model::transformer::{BYTES, MASK};
use crate::model::{BnMode, Encoder};
use burn::tensor::activation::log_softmax;
pub use fedssl_core::spec::Masked;

/// The mean squared reconstruction error of `decoder(encoder(x))` against `clean`, weighted
/// by `mask` (all values when there is none).
pub fn reconstruction_loss<B: Kernels>(cx: &LossContext<'_, B>, inputs: Inputs) -> Tensor<B, 1> {
    let pred = reconstruction(cx, &inputs);
    masked_mse(pred, inputs, cx.device)
}

/// [`reconstruction_loss`] per record (DP-SGD): each record's mean over its own weighted
/// values.
pub fn reconstruction_losses<B: Kernels>(cx: &LossContext<'_, B>, inputs: Inputs) -> Tensor<B, 1> {
    let pred = reconstruction(cx, &inputs);
    masked_mse_rows(pred, inputs, cx.device)
}

/// `decoder(encoder(x))`, `[rows, dim]` (zeros times the representation without a decoder,
/// so a misconfigured caller still gets a loss).
fn reconstruction<B: Kernels>(cx: &LossContext<'_, B>, inputs: &Inputs) -> Tensor<B, 2> {
    let x = inputs.x_tensor::<B>(cx.device);
    let h = cx.model.encoder.forward_with(x, BnMode::Train, cx.ops);
    match cx.model.decoder.as_ref() {
        Some(decoder) => decoder.forward(h),
        None => h.sum_dim(1).mul_scalar(0.0).repeat_dim(1, inputs.dim),
    }
}

/// The mean cross-entropy of `logits` (`[rows, classes]`) against the class `targets`
/// (one per row), over the rows whose `weights` are 1 (rows of weight 0 are ignored;
/// targets outside the classes count as class 0 and should have weight 0).
pub fn masked_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: &[f32],
    weights: Vec<f32>,
    dev: &B::Device,
) -> Tensor<B, 1> {
    let [rows, classes] = logits.dims();
    let ids: Vec<i64> = targets
        .iter()
        .map(|&t| {
            if t >= 0.0 && (t as usize) < classes {
                t as i64
            } else {
                0
            }
        })
        .collect();
    let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [rows]), dev).reshape([rows, 1]);
    let count = weights.iter().sum::<f32>().max(1.0);
    let w = Tensor::<B, 1>::from_data(TensorData::new(weights, [rows]), dev).reshape([rows, 1]);
    log_softmax(logits, 1)
        .gather(1, ids)
        .mul(w)
        .sum()
        .div_scalar(-count)
        .reshape([1])
}

/// [`masked_mse`] of each row on its own, `[rows]`.
fn masked_mse_rows<B: Backend>(
    pred: Tensor<B, 2>,
    inputs: Inputs,
    dev: &B::Device,
) -> Tensor<B, 1> {
    let (rows, dim) = (inputs.rows, inputs.dim);
    let clean = tensor2::<B>(inputs.clean.unwrap_or(inputs.x), rows, dim, dev);
    let err = pred.sub(clean).square();
    let m = inputs.mask.unwrap_or_else(|| vec![1.0; rows * dim]);
    let counts: Vec<f32> = m
        .chunks(dim.max(1))
        .map(|r| r.iter().sum::<f32>().max(1.0))
        .collect();
    let counts = Tensor::<B, 1>::from_data(TensorData::new(counts, [rows]), dev);
    err.mul(tensor2::<B>(m, rows, dim, dev))
        .sum_dim(1)
        .reshape([rows])
        .div(counts)
}

/// The cross-entropy of each sample's chosen tokens, averaged per sample, `[samples]`
/// (`logits` `[samples·length, classes]`).
fn masked_cross_entropy_rows<B: Backend>(
    logits: Tensor<B, 2>,
    targets: &[f32],
    weights: Vec<f32>,
    samples: usize,
    dev: &B::Device,
) -> Tensor<B, 1> {
    let [rows, classes] = logits.dims();
    let length = rows / samples.max(1);
    let ids: Vec<i64> = targets
        .iter()
        .map(|&t| {
            if t >= 0.0 && (t as usize) < classes {
                t as i64
            } else {
                0
            }
        })
        .collect();
    let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [rows]), dev).reshape([rows, 1]);
    let counts: Vec<f32> = weights
        .chunks(length.max(1))
        .map(|w| w.iter().sum::<f32>().max(1.0))
        .collect();
    let counts = Tensor::<B, 1>::from_data(TensorData::new(counts, [samples]), dev);
    let w = Tensor::<B, 1>::from_data(TensorData::new(weights, [rows]), dev).reshape([rows, 1]);
    log_softmax(logits, 1)
        .gather(1, ids)
        .mul(w)
        .reshape([samples, length])
        .sum_dim(1)
        .reshape([samples])
        .div(counts)
        .neg()
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
        targets: None,
    }
}

/// Masks drawn for masked modeling.
pub trait MaskedExt {
    /// Masked-token modeling's input for one text sample and its mask (1 = chosen): each
    /// non-padding token is chosen with probability `tokens` (at least one is), then
    /// replaced by [`MASK`] (80 %), by a random byte (10 %) or kept (10 %).
    fn mask_text(&self, sample: &[f32], rng: &mut impl Rng) -> (Vec<f32>, Vec<f32>);

    /// The mask of one sample of `shape` (1 = hidden), drawn from `rng`.
    fn mask(&self, shape: SampleShape, rng: &mut impl Rng) -> Vec<f32>;
}

impl MaskedExt for Masked {
    fn mask_text(&self, sample: &[f32], rng: &mut impl Rng) -> (Vec<f32>, Vec<f32>) {
        let mut x = sample.to_vec();
        let mut m = vec![0.0f32; sample.len()];
        let real: Vec<usize> = (0..sample.len())
            .filter(|&i| sample[i] >= 0.0 && sample[i] < BYTES as f32)
            .collect();
        let mut chosen: Vec<usize> = real
            .iter()
            .copied()
            .filter(|_| rng.gen::<f32>() < self.tokens)
            .collect();
        if chosen.is_empty() && !real.is_empty() {
            chosen.push(real[rng.gen_range(0..real.len())]);
        }
        for i in chosen {
            m[i] = 1.0;
            let r = rng.gen::<f32>();
            if r < 0.8 {
                x[i] = MASK as f32;
            } else if r < 0.9 {
                x[i] = f32::from(rng.gen::<u8>());
            }
        }
        (x, m)
    }

    fn mask(&self, shape: SampleShape, rng: &mut impl Rng) -> Vec<f32> {
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
            // Masked modeling refuses captioned images (Objective::fits); values at random.
            SampleShape::Tabular { .. }
            | SampleShape::Text { .. }
            | SampleShape::Captioned { .. } => {
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

impl SslObjective for Masked {
    fn heads(&self) -> Heads {
        Heads {
            decoder: true,
            ..Heads::default()
        }
    }

    fn inputs(&self, data: &Dataset, idx: &[usize], _views: &ViewMaker, seed: u64) -> Inputs {
        let shape = data.shape;
        if let SampleShape::Text { .. } = shape {
            return corrupted_inputs(data, idx, seed, |s, rng| {
                let (x, m) = self.mask_text(s, rng);
                (x, Some(m))
            });
        }
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
        match masked_prediction(cx, &inputs) {
            Prediction::Tokens(logits) => {
                let rows = logits.dims()[0];
                let targets = inputs.clean.unwrap_or(inputs.x);
                let weights = inputs.mask.unwrap_or_else(|| vec![1.0; rows]);
                masked_cross_entropy(logits, &targets, weights, cx.device)
            }
            Prediction::Values(pred) => masked_mse(pred, inputs, cx.device),
        }
    }

    fn dp_sgd(&self) -> Result<super::objective::DpUnit, String> {
        Ok(super::objective::DpUnit::Record)
    }

    fn record_losses<B: Kernels>(
        &self,
        cx: &LossContext<'_, B>,
        inputs: Inputs,
    ) -> Result<Tensor<B, 1>, String> {
        Ok(match masked_prediction(cx, &inputs) {
            Prediction::Tokens(logits) => {
                let rows = logits.dims()[0];
                let samples = inputs.rows;
                let targets = inputs.clean.unwrap_or(inputs.x);
                let weights = inputs.mask.unwrap_or_else(|| vec![1.0; rows]);
                masked_cross_entropy_rows(logits, &targets, weights, samples, cx.device)
            }
            Prediction::Values(pred) => masked_mse_rows(pred, inputs, cx.device),
        })
    }
}

/// What masked modeling predicts for a batch.
enum Prediction<B: Backend> {
    /// Byte logits per token `[samples·length, bytes]` (text).
    Tokens(Tensor<B, 2>),
    /// Values in the samples' layout `[samples, dim]` (images, series, tabular).
    Values(Tensor<B, 2>),
}

fn masked_prediction<B: Kernels>(cx: &LossContext<'_, B>, inputs: &Inputs) -> Prediction<B> {
    let encoder = &cx.model.encoder;
    match (cx.spec.shape, encoder, &cx.model.decoder) {
        (SampleShape::Text { .. }, Encoder::Text(text), Some(decoder)) => {
            // Each token's feature predicts its byte.
            let (f, _) = text.token_features(inputs.x_tensor::<B>(cx.device));
            let [n, l, d] = f.dims();
            Prediction::Tokens(decoder.forward(f.reshape([n * l, d])))
        }
        (
            SampleShape::Image {
                channels,
                height,
                width,
            },
            _,
            Some(decoder),
        ) => {
            // Each cell of the feature map predicts its own patch.
            let dim = inputs.dim;
            let x = inputs.x_tensor::<B>(cx.device);
            let Some(fmap) = encoder.feature_map_flat(x, BnMode::Train, cx.ops) else {
                return Prediction::Values(reconstruction(cx, inputs));
            };
            let [n, c, gh, gw] = fmap.dims();
            let cells = fmap.permute([0, 2, 3, 1]).reshape([n * gh * gw, c]);
            let [ph, pw] = [height / gh, width / gw];
            Prediction::Values(
                decoder
                    .forward(cells)
                    .reshape([n, gh, gw, channels, ph, pw])
                    .permute([0, 3, 1, 4, 2, 5])
                    .reshape([n, dim]),
            )
        }
        _ => Prediction::Values(reconstruction(cx, inputs)),
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
    fn token_cross_entropy_matches_a_hand_computed_value() {
        use burn::backend::Flex;
        let dev = Default::default();
        // Row 0: uniform over 3 classes, target 1 → ln 3. Row 1: logits ln 1, ln 2, ln 3
        // (p = 1/6, 2/6, 3/6), target 2 → ln 2. Row 2 is not masked.
        let logits = Tensor::<Flex, 2>::from_data(
            TensorData::new(
                vec![0.0, 0.0, 0.0, 0.0, 2f32.ln(), 3f32.ln(), 9.0, -9.0, 0.0],
                [3, 3],
            ),
            &dev,
        );
        let loss = masked_cross_entropy(logits, &[1.0, 2.0, 1.0], vec![1.0, 1.0, 0.0], &dev);
        let got = crate::model::scalar(&loss);
        let want = (3f32.ln() + 2f32.ln()) / 2.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn text_masks_choose_real_tokens_bert_style() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let text: Vec<f32> = crate::model::transformer::tokenize([[b'a'; 40].as_slice()], 64);
        let m = Masked::default();
        let (mut chosen, mut masked, mut kept) = (0.0, 0, 0);
        for _ in 0..200 {
            let (x, mask) = m.mask_text(&text, &mut rng);
            // Padding is never chosen, and unchosen tokens are untouched.
            assert!(mask[40..].iter().all(|&v| v == 0.0));
            for i in 0..64 {
                if mask[i] == 0.0 {
                    assert_eq!(x[i], text[i]);
                } else if x[i] == MASK as f32 {
                    masked += 1;
                } else if x[i] == text[i] {
                    kept += 1;
                }
            }
            chosen += mask.iter().sum::<f32>() / 40.0 / 200.0;
        }
        assert!((chosen - 0.15).abs() < 0.02, "{chosen}");
        let total = chosen * 40.0 * 200.0;
        assert!(
            (masked as f32 / total - 0.8).abs() < 0.05,
            "{masked} of {total}"
        );
        assert!(kept > 0);
        // A text of one byte still gets one chosen token.
        let one = crate::model::transformer::tokenize([b"z".as_slice()], 8);
        let (_, mask) = Masked { tokens: 0.01, ..m }.mask_text(&one, &mut rng);
        assert_eq!(mask.iter().sum::<f32>(), 1.0);
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
