//! Self-supervised objectives ([`Objective`]: SimCLR, SimSiam, VICReg, each one file behind
//! [`PairObjective`]) and the augmentations that make their views.

pub mod augment;
pub mod objective;
pub mod simclr;
pub mod simsiam;
pub mod vicreg;

pub use augment::{AugmentConfig, Augmenter};
pub use objective::{Objective, ObjectiveParams, PairObjective, PairOutputs};
pub use simclr::{nt_xent, SimClr};
pub use simsiam::SimSiam;
pub use vicreg::VicReg;
