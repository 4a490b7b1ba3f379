//! The description of a run's model, objective and views: plain data, sent in every round
//! plan and read from the plan TOML. The ML crate builds and trains what they describe.

pub mod augment;
pub mod model;
pub mod objective;
pub mod shape;

pub use augment::{AugmentConfig, AugmentSettings, ScarfConfig, SeriesAugmentConfig};
pub use model::{BatchNormPlacement, EncoderConfig, ModelSpec, Norm, Parts, Placement, REPR_DIM};
pub use objective::{
    Byol, Cpc, CrossModal, Denoising, Masked, Objective, ObjectiveKind, Reorder, VicReg,
    ALL_OBJECTIVES, MAX_PERMUTATIONS,
};
pub use shape::{SampleShape, IMAGE_PIXELS, IMAGE_SIDE};
