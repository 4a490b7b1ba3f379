//! `fedssl-ml`: what trains and evaluates an encoder.
//!
//! - [`model`]: the encoders (ConvNet-S, ResNet, 1-D CNN, MLP, byte-level Transformer), the
//!   objectives' heads, the model a site trains with its global and local parts, and moving
//!   [`Weights`](fedssl_core::weights::Weights) in and out of burn modules.
//! - [`ssl`]: the self-supervised objectives, one file each behind one trait, and the
//!   augmentations per modality.
//! - [`data`]: the on-disk readers (one file per format), the generators, partitioning.
//! - [`eval`]: feature extraction, linear probe, kNN, collapse monitors, fine-tuning.
//!
//! The plain descriptions these build from (model spec, objective, sample shape) are in
//! `fedssl_core::spec`; the layer kernels are `fedssl_kernels`.

pub use fedssl_kernels as kernels;

pub mod data;
pub mod eval;
pub mod model;
pub mod ssl;

#[cfg(test)]
mod kernel_tests;

/// The extension traits that give the core descriptions their ML behaviour; `use
/// fedssl_ml::prelude::*` brings them into scope.
pub mod prelude {
    pub use crate::model::encoder::EncoderConfigExt;
    pub use crate::model::ssl_model::ModelSpecExt;
    pub use crate::model::weights::ModuleWeights;
    pub use crate::ssl::denoising::DenoisingExt;
    pub use crate::ssl::masked::MaskedExt;
    pub use crate::ssl::objective::ObjectiveExt;
}
