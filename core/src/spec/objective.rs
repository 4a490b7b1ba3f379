//! The objective of a run and the settings objectives read. What each objective computes
//! lives in the ML crate (`fedssl_ml::ssl`), one file each.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::shape::SampleShape;

/// An objective's name: what a plan's `objective = "…"` says. The settings come from the
/// plan's table of the same name; [`Objective`] carries both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ObjectiveKind {
    /// Contrastive, negatives from the batch (NT-Xent at the plan's temperature).
    #[default]
    SimClr,
    /// Non-contrastive: predictor + stop-gradient, negative cosine similarity.
    SimSiam,
    /// Non-contrastive: variance / invariance / covariance terms.
    VicReg,
    /// Non-contrastive: online network + predictor against a momentum (EMA) target.
    Byol,
    /// Masked modeling: hide random patches (images), spans (series) or features
    /// (tabular) and reconstruct them; the loss counts hidden values only.
    Masked,
    /// Denoising autoencoder: corrupt the input, reconstruct the clean one.
    Denoising,
    /// Contrastive predictive coding over the segments of a time-series window.
    Cpc,
    /// Cross-modal contrastive alignment of two groups of channels or features (two
    /// encoders, symmetric InfoNCE).
    Clip,
    /// Reordering: which permutation shuffled the image's tiles (jigsaw) or the window's
    /// segments (segment order).
    Reorder,
}

/// Every objective, in documentation order.
pub const ALL_OBJECTIVES: [ObjectiveKind; 9] = [
    ObjectiveKind::SimClr,
    ObjectiveKind::SimSiam,
    ObjectiveKind::VicReg,
    ObjectiveKind::Byol,
    ObjectiveKind::Masked,
    ObjectiveKind::Denoising,
    ObjectiveKind::Cpc,
    ObjectiveKind::Clip,
    ObjectiveKind::Reorder,
];

impl ObjectiveKind {
    /// Parses an objective's name.
    pub fn parse(name: &str) -> Result<Self, String> {
        ALL_OBJECTIVES
            .into_iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = ALL_OBJECTIVES.iter().map(|o| o.name()).collect();
                format!(
                    "unknown objective {name:?} (expected one of {})",
                    names.join(", ")
                )
            })
    }

    /// A short name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SimClr => "simclr",
            Self::SimSiam => "simsiam",
            Self::VicReg => "vicreg",
            Self::Byol => "byol",
            Self::Masked => "masked",
            Self::Denoising => "denoising",
            Self::Cpc => "cpc",
            Self::Clip => "clip",
            Self::Reorder => "reorder",
        }
    }

    /// The objective with its default settings.
    pub fn with_defaults(self) -> Objective {
        match self {
            Self::SimClr => Objective::SimClr,
            Self::SimSiam => Objective::SimSiam,
            Self::VicReg => Objective::VicReg(VicReg::default()),
            Self::Byol => Objective::Byol(Byol::default()),
            Self::Masked => Objective::Masked(Masked::default()),
            Self::Denoising => Objective::Denoising(Denoising::default()),
            Self::Cpc => Objective::Cpc(Cpc::default()),
            Self::Clip => Objective::Clip(CrossModal::default()),
            Self::Reorder => Objective::Reorder(Reorder::default()),
        }
    }
}

impl std::str::FromStr for ObjectiveKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl std::fmt::Display for ObjectiveKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The objective of a run with its settings: chosen by the server, sent in every round
/// plan. Each variant carries what its objective reads (SimCLR's temperature is the
/// plan's, shared with the other contrastive losses).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub enum Objective {
    /// See [`ObjectiveKind::SimClr`].
    #[default]
    SimClr,
    /// See [`ObjectiveKind::SimSiam`].
    SimSiam,
    /// See [`ObjectiveKind::VicReg`].
    VicReg(VicReg),
    /// See [`ObjectiveKind::Byol`].
    Byol(Byol),
    /// See [`ObjectiveKind::Masked`].
    Masked(Masked),
    /// See [`ObjectiveKind::Denoising`].
    Denoising(Denoising),
    /// See [`ObjectiveKind::Cpc`].
    Cpc(Cpc),
    /// See [`ObjectiveKind::Clip`].
    Clip(CrossModal),
    /// See [`ObjectiveKind::Reorder`].
    Reorder(Reorder),
}

impl Objective {
    /// Which objective this is.
    pub fn kind(&self) -> ObjectiveKind {
        match self {
            Self::SimClr => ObjectiveKind::SimClr,
            Self::SimSiam => ObjectiveKind::SimSiam,
            Self::VicReg(_) => ObjectiveKind::VicReg,
            Self::Byol(_) => ObjectiveKind::Byol,
            Self::Masked(_) => ObjectiveKind::Masked,
            Self::Denoising(_) => ObjectiveKind::Denoising,
            Self::Cpc(_) => ObjectiveKind::Cpc,
            Self::Clip(_) => ObjectiveKind::Clip,
            Self::Reorder(_) => ObjectiveKind::Reorder,
        }
    }

    /// Checks the settings the variant carries (each table's own `validate`); a site runs
    /// it on the plan a server sends, so a hostile plan is refused, not trained on.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::SimClr | Self::SimSiam => Ok(()),
            Self::VicReg(o) => o.validate(),
            Self::Byol(o) => o.validate(),
            Self::Masked(o) => o.validate(),
            Self::Denoising(o) => o.validate(),
            Self::Cpc(o) => o.validate(),
            Self::Clip(o) => o.validate(),
            Self::Reorder(o) => o.validate(),
        }
    }

    /// A short name.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The VICReg objective and its coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VicReg {
    /// λ, weight of the invariance term.
    pub invariance: f64,
    /// μ, weight of the variance term.
    pub variance: f64,
    /// ν, weight of the covariance term.
    pub covariance: f64,
}

impl Default for VicReg {
    fn default() -> Self {
        Self {
            invariance: 25.0,
            variance: 25.0,
            covariance: 1.0,
        }
    }
}

impl VicReg {
    /// Coefficients must be finite, non-negative and not all zero.
    pub fn validate(&self) -> Result<(), String> {
        let c = [self.invariance, self.variance, self.covariance];
        if c.iter().any(|v| !v.is_finite() || *v < 0.0) || c.iter().all(|v| *v == 0.0) {
            return Err(format!(
                "vicreg: coefficients must be finite, ≥ 0 and not all 0 (got {c:?})"
            ));
        }
        Ok(())
    }
}

/// BYOL and its momentum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Byol {
    /// τ_base, the target's momentum at the start of a round's cosine schedule.
    pub base_momentum: f64,
}

impl Default for Byol {
    fn default() -> Self {
        Self {
            base_momentum: 0.99,
        }
    }
}

impl Byol {
    /// τ_base must lie in `[0, 1]`.
    pub fn validate(&self) -> Result<(), String> {
        if (0.0..=1.0).contains(&self.base_momentum) {
            Ok(())
        } else {
            Err(format!(
                "byol.base_momentum = {} must lie in [0, 1]",
                self.base_momentum
            ))
        }
    }

    /// The target's momentum after step `k` of `total`.
    pub fn momentum(&self, k: usize, total: usize) -> f64 {
        let frac = k as f64 / total.max(1) as f64;
        1.0 - (1.0 - self.base_momentum) * ((std::f64::consts::PI * frac).cos() + 1.0) / 2.0
    }
}

/// Masked modeling and its masks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Masked {
    /// Fraction of patches, spans or features hidden.
    pub ratio: f32,
    /// Side of an image patch, in pixels (0 = one cell of the encoder's feature map, 7 px
    /// for ConvNet-S on 28×28 images).
    pub patch: usize,
    /// Length of a time-series span, in steps.
    pub span: usize,
    /// Fraction of a text's tokens chosen for masked-token modeling (BERT's 15 %).
    pub tokens: f32,
}

impl Default for Masked {
    fn default() -> Self {
        Self {
            ratio: 0.5,
            patch: 0,
            span: 8,
            tokens: 0.15,
        }
    }
}

impl Masked {
    /// The ratio must lie in (0, 1); patch and span must be ≥ 1.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.ratio > 0.0 && self.ratio < 1.0) {
            return Err(format!(
                "masked.ratio = {} must lie strictly between 0 and 1",
                self.ratio
            ));
        }
        if self.span == 0 {
            return Err("masked.span must be at least 1".into());
        }
        if !(self.tokens > 0.0 && self.tokens < 1.0) {
            return Err(format!(
                "masked.tokens = {} must lie strictly between 0 and 1",
                self.tokens
            ));
        }
        Ok(())
    }
}

/// The denoising autoencoder and its corruption.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Denoising {
    /// Standard deviation of the additive Gaussian noise.
    pub noise_std: f32,
    /// Probability that a value is set to 0.
    pub drop: f32,
}

impl Default for Denoising {
    fn default() -> Self {
        Self {
            noise_std: 0.3,
            drop: 0.2,
        }
    }
}

impl Denoising {
    /// The noise must be finite and ≥ 0, the drop probability in `[0, 1)`, and something
    /// must corrupt.
    pub fn validate(&self) -> Result<(), String> {
        let ok = self.noise_std.is_finite()
            && self.noise_std >= 0.0
            && (0.0..1.0).contains(&self.drop)
            && (self.noise_std > 0.0 || self.drop > 0.0);
        if ok {
            Ok(())
        } else {
            Err(format!(
                "denoising: noise_std = {} must be ≥ 0 and drop = {} in [0, 1), not both 0",
                self.noise_std, self.drop
            ))
        }
    }
}

/// CPC's segments and steps ahead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cpc {
    /// Segments per window (the window's length must be a multiple).
    pub segments: usize,
    /// Steps ahead predicted.
    pub steps: usize,
    /// InfoNCE temperature (on L2-normalized latents).
    pub temperature: f64,
}

impl Default for Cpc {
    fn default() -> Self {
        Self {
            segments: 8,
            steps: 2,
            temperature: 0.1,
        }
    }
}

impl Cpc {
    /// At least 2 segments, 1 ≤ steps < segments, a positive temperature.
    pub fn validate(&self) -> Result<(), String> {
        if self.segments < 2 || self.steps == 0 || self.steps >= self.segments {
            return Err(format!(
                "cpc: needs segments ≥ 2 and 1 ≤ steps < segments (got {} and {})",
                self.segments, self.steps
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err("cpc.temperature must be positive".into());
        }
        Ok(())
    }

    /// Whether windows of `shape` can be cut into this many segments of ≥ 4 steps.
    pub fn check_shape(&self, shape: SampleShape) -> Result<(), String> {
        match shape {
            SampleShape::Series { length, .. }
                if length % self.segments == 0 && length / self.segments >= 4 =>
            {
                Ok(())
            }
            SampleShape::Series { length, .. } => Err(format!(
                "CPC cuts a window of {length} steps into {} segments: the length must be a multiple of the segments, each of at least 4 steps (set plan.cpc.segments)",
                self.segments
            )),
            s => Err(format!("CPC needs time series, not {s}")),
        }
    }
}

/// Cross-modal alignment and its split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrossModal {
    /// Channels (series) or features (tabular) of the first tower; 0 = half.
    pub split: usize,
    /// InfoNCE temperature.
    pub temperature: f64,
}

impl Default for CrossModal {
    fn default() -> Self {
        Self {
            split: 0,
            temperature: 0.1,
        }
    }
}

impl CrossModal {
    /// The temperature must be finite and positive (the split is checked against the
    /// data by [`Objective::fits`]).
    pub fn validate(&self) -> Result<(), String> {
        if self.temperature.is_finite() && self.temperature > 0.0 {
            Ok(())
        } else {
            Err(format!(
                "clip.temperature = {} must be finite and positive",
                self.temperature
            ))
        }
    }

    /// The first tower's channels or features for samples of `shape`.
    pub fn resolved_split(&self, shape: SampleShape) -> usize {
        let total = match shape {
            SampleShape::Series { channels, .. } => channels,
            SampleShape::Tabular { features } => features,
            _ => 0,
        };
        if self.split == 0 {
            total / 2
        } else {
            self.split
        }
    }
}

/// Reordering and its pieces.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Reorder {
    /// Tiles per side of an image (the jigsaw has `grid²` pieces).
    pub grid: usize,
    /// Segments per time-series window.
    pub segments: usize,
    /// Permutation classes (at most `pieces!`).
    pub permutations: usize,
}

impl Default for Reorder {
    fn default() -> Self {
        Self {
            grid: 2,
            segments: 4,
            permutations: 24,
        }
    }
}

impl Reorder {
    /// At least 2 pieces and 2 classes, at most [`MAX_PERMUTATIONS`] classes.
    pub fn validate(&self) -> Result<(), String> {
        if self.grid < 2 || self.grid > 8 || self.segments < 2 || self.segments > 64 {
            return Err(format!(
                "reorder: needs 2 ≤ grid ≤ 8 and 2 ≤ segments ≤ 64 (got {} and {})",
                self.grid, self.segments
            ));
        }
        if !(2..=MAX_PERMUTATIONS).contains(&self.permutations) {
            return Err(format!(
                "reorder.permutations must be in 2..={MAX_PERMUTATIONS}, got {}",
                self.permutations
            ));
        }
        Ok(())
    }

    /// Pieces of a sample of `shape` (images: `grid²`, series: `segments`; else 0).
    pub fn pieces(&self, shape: SampleShape) -> usize {
        match shape {
            SampleShape::Image { .. } => self.grid * self.grid,
            SampleShape::Series { .. } => self.segments,
            _ => 0,
        }
    }

    /// The classes the head tells apart for samples of `shape`: `min(permutations, pieces!)`.
    pub fn classes(&self, shape: SampleShape) -> usize {
        factorial_up_to(self.pieces(shape), self.permutations).unwrap_or(self.permutations)
    }

    /// The permutation of each class: `perm[j]` is the piece shown at position `j`. All of
    /// them in lexicographic order when there are at most `permutations`, else a fixed
    /// seeded draw of distinct ones with the identity first.
    pub fn permutation_set(&self, shape: SampleShape) -> Vec<Vec<usize>> {
        let n = self.pieces(shape);
        let identity: Vec<usize> = (0..n).collect();
        let mut out = vec![identity.clone()];
        if factorial_up_to(n, self.permutations).is_some() {
            let mut p = identity;
            while next_permutation(&mut p) {
                out.push(p.clone());
            }
            return out;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0x6a69_6773_6177);
        let mut seen: std::collections::HashSet<Vec<usize>> = out.iter().cloned().collect();
        while out.len() < self.permutations {
            let mut p: Vec<usize> = (0..n).collect();
            p.shuffle(&mut rng);
            if seen.insert(p.clone()) {
                out.push(p);
            }
        }
        out
    }

    /// Whether samples of `shape` cut evenly into this objective's pieces.
    pub fn check_shape(&self, shape: SampleShape) -> Result<(), String> {
        match shape {
            SampleShape::Image { height, width, .. }
                if height % self.grid == 0 && width % self.grid == 0 && height / self.grid >= 2 && width / self.grid >= 2 =>
            {
                Ok(())
            }
            SampleShape::Image { height, width, .. } => Err(format!(
                "the jigsaw cuts {height}×{width} images into a {g}×{g} grid: both sides must be multiples of the grid, with tiles of at least 2 pixels (set plan.reorder.grid)",
                g = self.grid
            )),
            SampleShape::Series { length, .. }
                if length % self.segments == 0 && length / self.segments >= 2 =>
            {
                Ok(())
            }
            SampleShape::Series { length, .. } => Err(format!(
                "segment-order prediction cuts a window of {length} steps into {} segments: the length must be a multiple of the segments, each of at least 2 steps (set plan.reorder.segments)",
                self.segments
            )),
            s => Err(format!(
                "reordering needs images (jigsaw) or time series (segment order); {s} have no order to shuffle"
            )),
        }
    }
}

/// The most permutation classes a plan may ask for.
pub const MAX_PERMUTATIONS: usize = 1000;

/// `n!`, or `None` when it exceeds `cap`.
fn factorial_up_to(n: usize, cap: usize) -> Option<usize> {
    (2..=n).try_fold(1usize, |f, k| f.checked_mul(k).filter(|&f| f <= cap))
}

/// Steps `p` to the next permutation in lexicographic order; false after the last.
fn next_permutation(p: &mut [usize]) -> bool {
    let n = p.len();
    if n < 2 {
        return false;
    }
    let mut i = n - 1;
    while i > 0 && p[i - 1] >= p[i] {
        i -= 1;
    }
    if i == 0 {
        return false;
    }
    let mut j = n - 1;
    while p[j] <= p[i - 1] {
        j -= 1;
    }
    p.swap(i - 1, j);
    p[i..].reverse();
    true
}
