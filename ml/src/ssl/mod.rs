//! Self-supervised objectives behind one trait ([`SslObjective`]; [`Objective`] names
//! them) and the augmentations that make their views.
//!
//! - contrastive: [`simclr`]; non-contrastive: [`simsiam`], [`vicreg`], [`byol`] (all
//!   [`PairObjective`]s on two views, shared in [`pairs`]);
//! - masked modeling ([`masked`]) and the denoising autoencoder ([`denoising`]);
//! - predictive coding ([`cpc`]); cross-modal alignment ([`clip`]);
//! - reordering: jigsaw for images, segment order for series ([`reorder`]).
//!
//! [`SslModel`] ([`model`]) is what a site trains: an encoder from [`crate::model`] with the
//! heads its objective declares, split into global and local parts.

pub mod augment;
pub mod byol;
pub mod clip;
pub mod cpc;
pub mod denoising;
pub mod info_nce;
pub mod masked;
pub mod model;
pub mod objective;
pub mod pairs;
pub mod reorder;
pub mod series_augment;
pub mod simclr;
pub mod simsiam;
pub mod vicreg;
pub mod views;

pub use augment::{AugmentConfig, Augmenter};
pub use byol::Byol;
pub use clip::CrossModal;
pub use cpc::Cpc;
pub use denoising::Denoising;
pub use masked::Masked;
pub use model::{ModelSpecExt, SslModel};
pub use objective::{
    DpUnit, Heads, Inputs, LossContext, Objective, ObjectiveKind, PairObjective, PairOutputs,
    SslObjective, ALL_OBJECTIVES,
};
pub use reorder::Reorder;
pub use series_augment::{SeriesAugmentConfig, SeriesAugmenter};
pub use simclr::{nt_xent, SimClr};
pub use simsiam::SimSiam;
pub use vicreg::VicReg;
pub use views::{AugmentSettings, ScarfConfig, ViewMaker};
