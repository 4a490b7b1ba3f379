//! Seeded, reproducible image augmentations for 28×28 grayscale images in `[0, 1]`:
//! random resized crop, small rotation and translation (one affine map, bilinear sampling),
//! brightness / contrast jitter and Gaussian noise.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::model::IMAGE_SIDE;

/// Ranges of the random transformations.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AugmentConfig {
    /// Smallest fraction of the image area a crop keeps.
    pub crop_min_area: f32,
    /// Largest aspect-ratio change of a crop (log-uniform in `[1/a, a]`).
    pub max_aspect: f32,
    /// Largest rotation in degrees (either direction).
    pub max_rotation_deg: f32,
    /// Largest translation in pixels (either direction, each axis).
    pub max_translate_px: f32,
    /// Brightness shift range (±).
    pub brightness: f32,
    /// Contrast factor range (1 ± contrast).
    pub contrast: f32,
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
            brightness: 0.3,
            contrast: 0.4,
            max_noise_std: 0.08,
        }
    }
}

/// Makes augmented views; the same seed gives the same views.
#[derive(Debug, Clone)]
pub struct Augmenter {
    cfg: AugmentConfig,
}

impl Augmenter {
    /// An augmenter with the given ranges.
    pub fn new(cfg: AugmentConfig) -> Self {
        Self { cfg }
    }

    /// Derives the view of `src` for `(seed, stream)`, writing it into `dst`.
    pub fn view(&self, src: &[f32], dst: &mut [f32], seed: u64, stream: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        self.apply(src, dst, &mut rng);
    }

    /// Applies one random augmentation drawn from `rng`.
    pub fn apply(&self, src: &[f32], dst: &mut [f32], rng: &mut impl Rng) {
        let n = IMAGE_SIDE as f32;
        let c = &self.cfg;
        // Random resized crop: area fraction s, aspect ratio r (log-uniform in [3/4, 4/3]).
        let s: f32 = rng.gen_range(c.crop_min_area.clamp(0.05, 1.0)..=1.0);
        let a = c.max_aspect.max(1.0).ln();
        let log_r: f32 = rng.gen_range(-a..=a);
        let r = log_r.exp();
        let cw = ((s * r).sqrt() * n).min(n);
        let ch = ((s / r).sqrt() * n).min(n);
        let cx = rng.gen_range(cw / 2.0..=n - cw / 2.0);
        let cy = rng.gen_range(ch / 2.0..=n - ch / 2.0);
        let theta = rng
            .gen_range(-c.max_rotation_deg..=c.max_rotation_deg)
            .to_radians();
        let tx = rng.gen_range(-c.max_translate_px..=c.max_translate_px);
        let ty = rng.gen_range(-c.max_translate_px..=c.max_translate_px);
        let bright = rng.gen_range(-c.brightness..=c.brightness);
        let contrast = rng.gen_range(1.0 - c.contrast..=1.0 + c.contrast);
        let noise_std = rng.gen_range(0.0..=c.max_noise_std);
        let (sin, cos) = theta.sin_cos();
        let (sx, sy) = (cw / n, ch / n);
        let half = n / 2.0;
        for v in 0..IMAGE_SIDE {
            for u in 0..IMAGE_SIDE {
                let px = u as f32 + 0.5 - half;
                let py = v as f32 + 0.5 - half;
                let rx = cos * px - sin * py;
                let ry = sin * px + cos * py;
                let x = rx * sx + cx + tx - 0.5;
                let y = ry * sy + cy + ty - 0.5;
                dst[v * IMAGE_SIDE + u] = bilinear(src, x, y);
            }
        }
        let mean = dst.iter().sum::<f32>() / dst.len() as f32;
        let normal = Normal::new(0.0f32, noise_std.max(1e-12)).ok();
        for p in dst.iter_mut() {
            let mut q = (*p - mean) * contrast + mean + bright;
            if let Some(nd) = &normal {
                q += nd.sample(rng);
            }
            *p = q.clamp(0.0, 1.0);
        }
    }
}

fn bilinear(src: &[f32], x: f32, y: f32) -> f32 {
    let x0 = x.floor();
    let y0 = y.floor();
    let fx = x - x0;
    let fy = y - y0;
    let at = |xi: f32, yi: f32| -> f32 {
        if xi < 0.0 || yi < 0.0 || xi >= IMAGE_SIDE as f32 || yi >= IMAGE_SIDE as f32 {
            0.0
        } else {
            src[yi as usize * IMAGE_SIDE + xi as usize]
        }
    };
    let a = at(x0, y0) * (1.0 - fx) + at(x0 + 1.0, y0) * fx;
    let b = at(x0, y0 + 1.0) * (1.0 - fx) + at(x0 + 1.0, y0 + 1.0) * fx;
    a * (1.0 - fy) + b * fy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_views_reproduce_and_stay_in_range() {
        let src: Vec<f32> = (0..784).map(|i| (i % 28) as f32 / 27.0).collect();
        let aug = Augmenter::new(AugmentConfig::default());
        let mut a = vec![0.0; 784];
        let mut b = vec![0.0; 784];
        let mut c = vec![0.0; 784];
        aug.view(&src, &mut a, 7, 1);
        aug.view(&src, &mut b, 7, 1);
        aug.view(&src, &mut c, 7, 2);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn identity_settings_keep_the_image() {
        let src: Vec<f32> = (0..784).map(|i| ((i * 37) % 100) as f32 / 100.0).collect();
        let aug = Augmenter::new(AugmentConfig {
            crop_min_area: 1.0,
            max_aspect: 1.0,
            max_rotation_deg: 0.0,
            max_translate_px: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            max_noise_std: 0.0,
        });
        let mut out = vec![0.0; 784];
        aug.view(&src, &mut out, 1, 1);
        for (a, b) in src.iter().zip(&out) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
}
