//! The self-supervised objective of a run, behind one small trait.
//!
//! A pair objective sees, for a batch of images seen as two augmented views, each view's
//! projection `z` (encoder → projector) and, when it uses one, its prediction `p`
//! (→ predictor), and returns a scalar loss. Adding an objective is one file implementing
//! [`PairObjective`] plus a variant of [`Objective`].

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::simclr::SimClr;
use super::simsiam::SimSiam;
use super::vicreg::VicReg;

/// What a pair objective sees of one batch.
#[derive(Debug, Clone)]
pub struct PairOutputs<B: Backend> {
    /// Projections of the first views, `[N, D]`.
    pub z1: Tensor<B, 2>,
    /// Projections of the second views, `[N, D]`.
    pub z2: Tensor<B, 2>,
    /// Predictions from the first views (objectives with a predictor), `[N, D]`.
    pub p1: Option<Tensor<B, 2>>,
    /// Predictions from the second views.
    pub p2: Option<Tensor<B, 2>>,
}

/// A loss on two views of each image.
pub trait PairObjective {
    /// Whether the objective needs a predictor head on top of the projector.
    fn uses_predictor(&self) -> bool {
        false
    }

    /// The loss of one batch. Objectives with a predictor may assume `p1`, `p2` are set.
    fn loss<B: Backend>(&self, out: PairOutputs<B>) -> Tensor<B, 1>;
}

/// The objective of a run: chosen by the server, sent in every round plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Contrastive, negatives from the batch (NT-Xent at the plan's temperature).
    #[default]
    SimClr,
    /// Non-contrastive: predictor + stop-gradient, negative cosine similarity.
    SimSiam,
    /// Non-contrastive: variance / invariance / covariance terms (coefficients in
    /// [`ObjectiveParams::vicreg`]).
    VicReg,
}

/// The settings objectives read: SimCLR's temperature, VICReg's coefficients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectiveParams {
    /// NT-Xent temperature (SimCLR).
    pub temperature: f64,
    /// VICReg's coefficients.
    pub vicreg: VicReg,
}

impl Objective {
    /// Parses `simclr`, `simsiam` or `vicreg`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "simclr" => Ok(Self::SimClr),
            "simsiam" => Ok(Self::SimSiam),
            "vicreg" => Ok(Self::VicReg),
            other => Err(format!(
                "unknown objective {other:?} (expected simclr, simsiam or vicreg)"
            )),
        }
    }

    /// A short name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SimClr => "simclr",
            Self::SimSiam => "simsiam",
            Self::VicReg => "vicreg",
        }
    }

    /// Whether the objective needs a predictor head (which stays on the site).
    pub fn uses_predictor(&self) -> bool {
        match self {
            Self::SimClr => SimClr { temperature: 1.0 }.uses_predictor(),
            Self::SimSiam => SimSiam.uses_predictor(),
            Self::VicReg => VicReg::default().uses_predictor(),
        }
    }

    /// The loss of one batch.
    pub fn loss<B: Backend>(&self, out: PairOutputs<B>, params: &ObjectiveParams) -> Tensor<B, 1> {
        match self {
            Self::SimClr => SimClr {
                temperature: params.temperature,
            }
            .loss(out),
            Self::SimSiam => SimSiam.loss(out),
            Self::VicReg => params.vicreg.loss(out),
        }
    }
}

impl std::str::FromStr for Objective {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
