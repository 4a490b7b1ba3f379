//! Models: the ConvNet-S encoder, the SimCLR projector, and their weights as plain tensors.
//!
//! The encoder is the federated (global) model. The projector stays on the client.
//! BatchNorm running statistics are never sent: they are direct aggregates of private data.
//! Whoever evaluates an encoder recalibrates them on its own data ([`convnet::BnMode::Calibrate`]).

pub mod batchnorm;
pub mod convnet;
pub mod projector;
pub mod weights;

pub use convnet::{BnMode, ConvNetS, ConvNetSConfig};
pub use projector::{Projector, ProjectorConfig};
pub use weights::{Weights, WeightsSpec};

/// Image side length ConvNet-S expects.
pub const IMAGE_SIDE: usize = 28;
/// Pixels per image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
