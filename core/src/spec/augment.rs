//! The augmentation settings of each modality (sent in the round plan; the augmenters
//! themselves are in `fedssl_ml::ssl`).

use serde::{Deserialize, Serialize};

/// SCARF's corruption.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScarfConfig {
    /// Fraction of the features replaced in each view.
    pub corruption: f32,
}

impl Default for ScarfConfig {
    fn default() -> Self {
        Self { corruption: 0.6 }
    }
}

/// The augmentations of each modality.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentSettings {
    /// Images.
    pub image: AugmentConfig,
    /// Time series.
    pub series: SeriesAugmentConfig,
    /// Tabular records.
    pub tabular: ScarfConfig,
}

/// Ranges and probabilities of the random transformations.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Smallest fraction of the image area a crop keeps.
    pub crop_min_area: f32,
    /// Largest aspect-ratio change of a crop (log-uniform in `[1/a, a]`).
    pub max_aspect: f32,
    /// Largest rotation in degrees (either direction).
    pub max_rotation_deg: f32,
    /// Largest translation in pixels (either direction, each axis).
    pub max_translate_px: f32,
    /// Probability of a horizontal flip (0: off, the default).
    pub flip_prob: f32,
    /// Brightness shift range (±).
    pub brightness: f32,
    /// Contrast factor range (1 ± contrast).
    pub contrast: f32,
    /// Saturation factor range (1 ± saturation), colour images only.
    pub saturation: f32,
    /// Hue shift range (± this fraction of the colour wheel; at most 0.5), colour images
    /// only, as torchvision's `ColorJitter(hue=…)`.
    pub hue: f32,
    /// Probability of turning a colour image gray.
    pub grayscale_prob: f32,
    /// Probability of a Gaussian blur (σ uniform in 0.1–1.5 px).
    pub blur_prob: f32,
    /// Probability of cutout: a random square, up to `cutout_max` of the side, set to 0.
    pub cutout_prob: f32,
    /// Largest cutout side as a fraction of the image side.
    pub cutout_max: f32,
    /// Largest standard deviation of the additive Gaussian noise.
    pub max_noise_std: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            crop_min_area: 0.35,
            max_aspect: 4.0 / 3.0,
            max_rotation_deg: 15.0,
            max_translate_px: 3.0,
            flip_prob: 0.0,
            brightness: 0.3,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            grayscale_prob: 0.2,
            blur_prob: 0.0,
            cutout_prob: 0.0,
            cutout_max: 0.4,
            max_noise_std: 0.08,
        }
    }
}

impl AugmentConfig {
    /// Settings that leave an image unchanged.
    pub fn identity() -> Self {
        Self {
            crop_min_area: 1.0,
            max_aspect: 1.0,
            max_rotation_deg: 0.0,
            max_translate_px: 0.0,
            flip_prob: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
            grayscale_prob: 0.0,
            blur_prob: 0.0,
            cutout_prob: 0.0,
            cutout_max: 0.0,
            max_noise_std: 0.0,
        }
    }
}

/// Strengths and probabilities of the time-series augmentations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeriesAugmentConfig {
    /// Standard deviation of the additive Gaussian jitter.
    pub jitter: f32,
    /// Standard deviation of the per-channel scaling factor around 1.
    pub scaling: f32,
    /// Standard deviation of the smooth magnitude-warp curve around 1 (0 = off).
    pub magnitude_warp: f32,
    /// Standard deviation of the smooth time-warp speed around 1 (0 = off).
    pub time_warp: f32,
    /// Probability of cutting the window into 2–4 segments and shuffling them.
    pub permute_prob: f32,
    /// Smallest fraction of the window a random crop keeps (1 = off).
    pub crop_min: f32,
}

impl Default for SeriesAugmentConfig {
    fn default() -> Self {
        Self {
            jitter: 0.05,
            scaling: 0.1,
            magnitude_warp: 0.2,
            time_warp: 0.2,
            permute_prob: 0.3,
            crop_min: 0.8,
        }
    }
}

impl SeriesAugmentConfig {
    /// Settings that leave a window unchanged.
    pub fn identity() -> Self {
        Self {
            jitter: 0.0,
            scaling: 0.0,
            magnitude_warp: 0.0,
            time_warp: 0.0,
            permute_prob: 0.0,
            crop_min: 1.0,
        }
    }
}
