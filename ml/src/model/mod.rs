//! Models: the encoders ([`encoder`]: ConvNet-S, the ResNet, the 1-D CNN, the MLP, the
//! byte-level Transformer), the heads of the
//! objectives (projector, predictor, decoder, CPC context), and weights as plain
//! tensors. The whole model a site trains, an encoder with the heads its objective declares,
//! is `ssl::SslModel`, one layer up.
//!
//! The encoder is always global. By default the heads stay on the site, and BatchNorm
//! running statistics are never sent (they are direct aggregates of private data); whoever
//! evaluates an encoder recalibrates them on its own data ([`BnMode::Calibrate`]).

pub mod batchnorm;
pub mod context;
pub mod convnet;
pub mod decoder;
pub mod ema;
pub mod encoder;
pub mod groupnorm;
pub mod mlp;
pub mod predictor;
pub mod projector;
pub mod resnet;
pub mod transformer;
pub mod weights;

pub use convnet::{BnMode, Cnn1dConfig, ConvNet, ConvNetS, ConvNetSConfig};
pub use encoder::{Encoder, EncoderConfig, REPR_DIM};
pub use fedssl_core::spec::{BatchNormPlacement, ModelSpec, Parts, Placement};
pub use groupnorm::Norm;
pub use predictor::{Predictor, PredictorConfig};
pub use projector::{Projector, ProjectorConfig};
pub use weights::{Weights, WeightsSpec};

pub use fedssl_core::spec::{IMAGE_PIXELS, IMAGE_SIDE};

/// The value of a one-element tensor such as a loss (NaN if it cannot be read).
pub fn scalar<B: burn::prelude::Backend>(t: &burn::prelude::Tensor<B, 1>) -> f32 {
    t.clone()
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f32::NAN)
}
