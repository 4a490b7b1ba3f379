//! The text encoder: byte-level tokens through a small Transformer (pre-norm, GELU, no
//! dropout), each token's state mapped to 128 dimensions, and the representation the mean
//! over the sample's non-padding tokens.
//!
//! Samples hold one token per position as a number: a byte `0..=255`, [`PAD`] after the
//! end of a shorter text, or [`MASK`] where masked-token modeling hid a byte.

use burn::module::Module;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::encoder::REPR_DIM;

pub use crate::data::tokens::{tokenize, BYTES, MASK, PAD, VOCAB};

/// Hyper-parameters of the text encoder.
#[derive(Debug, Clone, Copy)]
pub struct TextEncoderConfig {
    /// Tokens per sample (the positional table's length).
    pub length: usize,
    /// Width of the token states.
    pub dim: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads (must divide `dim`).
    pub heads: usize,
}

/// The byte-level Transformer encoder.
#[derive(Module, Debug)]
pub struct TextEncoder<B: Backend> {
    /// Token embedding, `VOCAB × dim`.
    pub tokens: Embedding<B>,
    /// Learned positional embedding, `length × dim`.
    pub positions: Embedding<B>,
    /// The Transformer layers.
    pub transformer: TransformerEncoder<B>,
    /// Final normalization (the layers are pre-norm).
    pub norm: LayerNorm<B>,
    /// Token state → 128-d token feature.
    pub out: Linear<B>,
}

impl TextEncoderConfig {
    /// Builds the encoder with burn's default initialization.
    pub fn init<B: Backend>(&self, device: &B::Device) -> TextEncoder<B> {
        TextEncoder {
            tokens: EmbeddingConfig::new(VOCAB, self.dim).init(device),
            positions: EmbeddingConfig::new(self.length, self.dim).init(device),
            transformer: TransformerEncoderConfig::new(
                self.dim,
                4 * self.dim,
                self.heads,
                self.layers,
            )
            .with_dropout(0.0)
            .with_norm_first(true)
            .init(device),
            norm: LayerNormConfig::new(self.dim).init(device),
            out: LinearConfig::new(self.dim, REPR_DIM).init(device),
        }
    }
}

impl<B: Backend> TextEncoder<B> {
    /// Tokens per sample the encoder was built for.
    pub fn length(&self) -> usize {
        self.positions.weight.dims()[0]
    }

    /// Per-token features `[N, L, 128]` of token samples `[N, L]`, and the padding mask
    /// `[N, L]` (true at padding). Values outside the vocabulary read as padding.
    pub fn token_features(&self, x: Tensor<B, 2>) -> (Tensor<B, 3>, Tensor<B, 2, Bool>) {
        let [n, l] = x.dims();
        let device = x.device();
        let valid = x
            .clone()
            .greater_equal_elem(0.0)
            .bool_and(x.clone().lower_elem(VOCAB as f32));
        let ids = x.mask_fill(valid.clone().bool_not(), PAD as f32).int();
        let pad = ids.clone().equal_elem(PAD as i64);
        let positions = Tensor::<B, 1, Int>::arange(0..l as i64, &device)
            .reshape([1, l])
            .repeat_dim(0, n);
        let h = self.tokens.forward(ids) + self.positions.forward(positions);
        let h = self
            .transformer
            .forward(TransformerEncoderInput::new(h).mask_pad(pad.clone()));
        (self.out.forward(self.norm.forward(h)), pad)
    }

    /// Maps token samples `[N, L]` to `[N, 128]` representations: the mean of the token
    /// features over the non-padding tokens.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let (f, pad) = self.token_features(x);
        let [n, l, d] = f.dims();
        let keep = pad.bool_not().float().reshape([n, l, 1]);
        let count = keep.clone().sum_dim(1).clamp_min(1.0);
        (f * keep).sum_dim(1).div(count).reshape([n, d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn config() -> TextEncoderConfig {
        TextEncoderConfig {
            length: 8,
            dim: 16,
            layers: 2,
            heads: 4,
        }
    }

    #[test]
    fn representation_ignores_padding_and_has_the_shared_width() {
        let dev = Default::default();
        let enc = config().init::<Flex>(&dev);
        let a = tokenize([b"hello".as_slice(), b"hi".as_slice()], 8);
        let x = Tensor::<Flex, 2>::from_data(TensorData::new(a, [2, 8]), &dev);
        let (f, pad) = enc.token_features(x.clone());
        assert_eq!(f.dims(), [2, 8, REPR_DIM]);
        let pad: Vec<bool> = pad.into_data().to_vec().unwrap();
        assert_eq!(pad.iter().filter(|&&p| p).count(), 3 + 6);
        let r = enc.forward(x);
        assert_eq!(r.dims(), [2, REPR_DIM]);
        // The mean over "hi"'s two tokens equals its representation: padding adds nothing.
        let (f2, _) = enc.token_features(Tensor::from_data(
            TensorData::new(tokenize([b"hi".as_slice()], 8), [1, 8]),
            &dev,
        ));
        let manual = f2.slice([0..1, 0..2]).mean_dim(1).reshape([1, REPR_DIM]);
        let got = r.slice([1..2, 0..REPR_DIM]);
        let diff: f32 = (manual - got).abs().max().into_scalar();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn out_of_vocabulary_values_read_as_padding() {
        let dev = Default::default();
        let enc = config().init::<Flex>(&dev);
        let x = Tensor::<Flex, 2>::from_data(
            TensorData::new(
                vec![65.0, 1e9, -3.0, f32::NAN, 256.0, 256.0, 256.0, 256.0],
                [1, 8],
            ),
            &dev,
        );
        let (_, pad) = enc.token_features(x.clone());
        let pad: Vec<bool> = pad.into_data().to_vec().unwrap();
        assert_eq!(pad, [false, true, true, true, true, true, true, true]);
        let r: Vec<f32> = enc.forward(x).into_data().to_vec().unwrap();
        assert!(r.iter().all(|v| v.is_finite()));
    }
}
