//! Self-supervised objectives and the augmentations that make their views.

pub mod augment;
pub mod simclr;

pub use augment::{AugmentConfig, Augmenter};
pub use simclr::nt_xent;
