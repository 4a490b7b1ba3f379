//! Models: the ConvNet-S encoder, the SimCLR projector, and their weights as plain tensors.
//!
//! The encoder is the federated (global) model. The projector stays on the client.
//! BatchNorm running statistics are never sent: they are direct aggregates of private data.
//! Whoever evaluates an encoder recalibrates them on its own data ([`convnet::BnMode::Calibrate`]).

pub mod batchnorm;
pub mod convnet;
pub mod predictor;
pub mod projector;
pub mod weights;

pub use convnet::{BnMode, ConvNetS, ConvNetSConfig};
pub use predictor::{Predictor, PredictorConfig};
pub use projector::{Projector, ProjectorConfig};
pub use weights::{Weights, WeightsSpec};

/// Image side length ConvNet-S expects.
pub const IMAGE_SIDE: usize = 28;
/// Pixels per image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;

/// The global weights of a freshly initialized ConvNet-S (deterministic for `seed`).
pub fn initial_encoder_weights(seed: u64) -> Weights {
    use burn::prelude::Backend;
    let dev = Default::default();
    <burn::backend::Flex as Backend>::seed(&dev, seed);
    let enc = ConvNetSConfig::default().init::<burn::backend::Flex>(&dev);
    Weights::global_from_module(&enc)
}

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

/// Names and shapes of ConvNet-S's global weights.
pub fn encoder_spec() -> WeightsSpec {
    initial_encoder_weights(0).spec()
}
