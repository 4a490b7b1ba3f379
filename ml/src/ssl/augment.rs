//! Seeded, reproducible image augmentations for `channels × height × width` images in
//! `[0, 1]`: random resized crop, small rotation and translation and an optional horizontal
//! flip (one affine map, bilinear sampling), brightness / contrast jitter, saturation and
//! hue jitter and random grayscale (colour images), Gaussian blur, cutout and Gaussian noise.
//!
//! The defaults suit the 28×28 grayscale default data: flip, blur and cutout are off (a
//! flipped digit or letter is another symbol); turn them on in `[plan.augment.image]`.

use rand::Rng;
use rand_distr::{Distribution, Normal};

use crate::model::IMAGE_SIDE;
pub use fedssl_core::spec::AugmentConfig;

/// Makes augmented views of images of one shape; the same seed gives the same views.
#[derive(Debug, Clone)]
pub struct Augmenter {
    cfg: AugmentConfig,
    channels: usize,
    height: usize,
    width: usize,
}

impl Augmenter {
    /// An augmenter for 28×28 grayscale images.
    pub fn new(cfg: AugmentConfig) -> Self {
        Self::for_shape(cfg, 1, IMAGE_SIDE, IMAGE_SIDE)
    }

    /// An augmenter for `channels × height × width` images.
    pub fn for_shape(cfg: AugmentConfig, channels: usize, height: usize, width: usize) -> Self {
        Self {
            cfg,
            channels,
            height,
            width,
        }
    }

    /// Derives the view of `src` for `(seed, stream)`, writing it into `dst`.
    pub fn view(&self, src: &[f32], dst: &mut [f32], seed: u64, stream: u64) {
        self.apply(src, dst, &mut super::views::stream_rng(seed, stream));
    }

    /// Applies one random augmentation drawn from `rng`. The draws of the original
    /// grayscale pipeline come first and in their original order, so its views do not
    /// change with the newer options off.
    pub fn apply(&self, src: &[f32], dst: &mut [f32], rng: &mut impl Rng) {
        let (c, h, w) = (self.channels, self.height, self.width);
        let (hf, wf) = (h as f32, w as f32);
        let cfg = &self.cfg;
        // Random resized crop: area fraction s, aspect ratio r (log-uniform).
        let s: f32 = rng.gen_range(cfg.crop_min_area.clamp(0.05, 1.0)..=1.0);
        let a = cfg.max_aspect.max(1.0).ln();
        let r = rng.gen_range(-a..=a).exp();
        let cw = ((s * r).sqrt() * wf).min(wf);
        let ch = ((s / r).sqrt() * hf).min(hf);
        let cx = rng.gen_range(cw / 2.0..=wf - cw / 2.0);
        let cy = rng.gen_range(ch / 2.0..=hf - ch / 2.0);
        let theta = rng
            .gen_range(-cfg.max_rotation_deg..=cfg.max_rotation_deg)
            .to_radians();
        let tx = rng.gen_range(-cfg.max_translate_px..=cfg.max_translate_px);
        let ty = rng.gen_range(-cfg.max_translate_px..=cfg.max_translate_px);
        let bright = rng.gen_range(-cfg.brightness..=cfg.brightness);
        let contrast = rng.gen_range(1.0 - cfg.contrast..=1.0 + cfg.contrast);
        let noise_std = rng.gen_range(0.0..=cfg.max_noise_std);

        // One affine map for every channel.
        let (sin, cos) = theta.sin_cos();
        let (sx, sy) = (cw / wf, ch / hf);
        for v in 0..h {
            for u in 0..w {
                let px = u as f32 + 0.5 - wf / 2.0;
                let py = v as f32 + 0.5 - hf / 2.0;
                let x = (cos * px - sin * py) * sx + cx + tx - 0.5;
                let y = (sin * px + cos * py) * sy + cy + ty - 0.5;
                for k in 0..c {
                    let plane = &src[k * h * w..(k + 1) * h * w];
                    dst[(k * h + v) * w + u] = bilinear(plane, w, h, x, y);
                }
            }
        }
        let mean = dst.iter().sum::<f32>() / dst.len().max(1) as f32;
        let normal = Normal::new(0.0f32, noise_std.max(1e-12)).ok();
        for p in dst.iter_mut() {
            let mut q = (*p - mean) * contrast + mean + bright;
            if let Some(nd) = &normal {
                q += nd.sample(rng);
            }
            *p = q.clamp(0.0, 1.0);
        }

        // The newer options, drawn after the original ones.
        let flip = rng.gen::<f32>() < cfg.flip_prob;
        let saturation = rng.gen_range(1.0 - cfg.saturation..=1.0 + cfg.saturation);
        let gray = rng.gen::<f32>() < cfg.grayscale_prob;
        let blur = (rng.gen::<f32>() < cfg.blur_prob).then(|| rng.gen_range(0.1f32..1.5));
        let cutout = (rng.gen::<f32>() < cfg.cutout_prob).then(|| {
            let side = (rng.gen_range(0.0..=cfg.cutout_max.clamp(0.0, 1.0)) * wf.min(hf)) as usize;
            (rng.gen_range(0..h.max(1)), rng.gen_range(0..w.max(1)), side)
        });
        let hue_range = cfg.hue.clamp(0.0, 0.5);
        let hue = rng.gen_range(-hue_range..=hue_range);
        if flip {
            for row in dst.chunks_mut(w.max(1)) {
                row.reverse();
            }
        }
        // Colour, one pass per pixel: hue rotation, then saturation jitter or grayscale
        // against the pixel's luma.
        if c == 3 && (hue != 0.0 || gray || saturation != 1.0) {
            let plane = h * w;
            let f = if gray { 0.0 } else { saturation };
            for p in 0..plane {
                let mut rgb = [dst[p], dst[plane + p], dst[2 * plane + p]];
                if hue != 0.0 {
                    rgb = shift_hue(rgb, hue);
                }
                let luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
                for (k, q) in rgb.into_iter().enumerate() {
                    dst[k * plane + p] = (luma + (q - luma) * f).clamp(0.0, 1.0);
                }
            }
        }
        if let Some(sigma) = blur {
            for k in 0..c {
                gaussian_blur(&mut dst[k * h * w..(k + 1) * h * w], w, h, sigma);
            }
        }
        if let Some((y0, x0, side)) = cutout {
            for k in 0..c {
                for y in y0..(y0 + side).min(h) {
                    let row = (k * h + y) * w;
                    dst[row + x0..row + (x0 + side).min(w)].fill(0.0);
                }
            }
        }
    }
}

/// Rotates the hue of one RGB pixel by `shift` turns of the colour wheel, keeping its HSV
/// saturation and value (the conversion torchvision's `adjust_hue` uses).
fn shift_hue([r, g, b]: [f32; 3], shift: f32) -> [f32; 3] {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let chroma = max - min;
    if chroma <= 0.0 {
        return [r, g, b];
    }
    // Hue in turns, [0, 1).
    let h = if max == r {
        ((g - b) / chroma).rem_euclid(6.0)
    } else if max == g {
        (b - r) / chroma + 2.0
    } else {
        (r - g) / chroma + 4.0
    } / 6.0;
    let h6 = (h + shift).rem_euclid(1.0) * 6.0;
    let x = chroma * (1.0 - ((h6 % 2.0) - 1.0).abs());
    let (r1, g1, b1) = match h6 as u32 {
        0 => (chroma, x, 0.0),
        1 => (x, chroma, 0.0),
        2 => (0.0, chroma, x),
        3 => (0.0, x, chroma),
        4 => (x, 0.0, chroma),
        _ => (chroma, 0.0, x),
    };
    [r1 + min, g1 + min, b1 + min]
}

fn bilinear(src: &[f32], w: usize, h: usize, x: f32, y: f32) -> f32 {
    let x0 = x.floor();
    let y0 = y.floor();
    let fx = x - x0;
    let fy = y - y0;
    let at = |xi: f32, yi: f32| -> f32 {
        if xi < 0.0 || yi < 0.0 || xi >= w as f32 || yi >= h as f32 {
            0.0
        } else {
            src[yi as usize * w + xi as usize]
        }
    };
    let a = at(x0, y0) * (1.0 - fx) + at(x0 + 1.0, y0) * fx;
    let b = at(x0, y0 + 1.0) * (1.0 - fx) + at(x0 + 1.0, y0 + 1.0) * fx;
    a * (1.0 - fy) + b * fy
}

/// Separable Gaussian blur of one `w × h` plane in place (edges clamped).
fn gaussian_blur(plane: &mut [f32], w: usize, h: usize, sigma: f32) {
    let radius = (2.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let pass = |src: &[f32], dst: &mut [f32], horizontal: bool| {
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (j, k) in kernel.iter().enumerate() {
                    let d = j as isize - radius;
                    let (xx, yy) = if horizontal {
                        ((x as isize + d).clamp(0, w as isize - 1) as usize, y)
                    } else {
                        (x, (y as isize + d).clamp(0, h as isize - 1) as usize)
                    };
                    acc += k * src[yy * w + xx];
                }
                dst[y * w + x] = acc;
            }
        }
    };
    let mut tmp = vec![0.0f32; plane.len()];
    pass(plane, &mut tmp, true);
    pass(&tmp, plane, false);
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
        let src: Vec<f32> = (0..3 * 32 * 32)
            .map(|i| ((i * 37) % 100) as f32 / 100.0)
            .collect();
        let aug = Augmenter::for_shape(AugmentConfig::identity(), 3, 32, 32);
        let mut out = vec![0.0; src.len()];
        aug.view(&src, &mut out, 1, 1);
        for (a, b) in src.iter().zip(&out) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn flip_mirrors_and_grayscale_equalizes_the_channels() {
        // A horizontal ramp in red, constant green and blue.
        let (h, w) = (8, 8);
        let mut src = vec![0.5f32; 3 * h * w];
        for y in 0..h {
            for x in 0..w {
                src[y * w + x] = x as f32 / 7.0;
            }
        }
        let mut out = vec![0.0; src.len()];
        let flip = AugmentConfig {
            flip_prob: 1.0,
            ..AugmentConfig::identity()
        };
        Augmenter::for_shape(flip, 3, h, w).view(&src, &mut out, 1, 1);
        for x in 0..w {
            assert!((out[x] - src[w - 1 - x]).abs() < 1e-5);
        }
        let gray = AugmentConfig {
            grayscale_prob: 1.0,
            ..AugmentConfig::identity()
        };
        Augmenter::for_shape(gray, 3, h, w).view(&src, &mut out, 1, 1);
        for p in 0..h * w {
            let expect = 0.299 * src[p] + 0.587 * 0.5 + 0.114 * 0.5;
            for k in 0..3 {
                assert!((out[k * h * w + p] - expect).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn hue_shift_turns_the_colour_wheel_and_keeps_gray() {
        // (pixel, shift in turns, expected). A third of a turn: red → green → blue → red.
        // Orange (hue 30°) by +30° is yellow, by -60° magenta-red (hue 330°), with value and
        // saturation kept: colorsys.hsv_to_rgb(h, 0.75, 0.8). Grays have no hue.
        let cases = [
            ([1.0, 0.0, 0.0], 1.0 / 3.0, [0.0, 1.0, 0.0]),
            ([0.0, 1.0, 0.0], 1.0 / 3.0, [0.0, 0.0, 1.0]),
            ([0.0, 0.0, 1.0], -2.0 / 3.0, [1.0, 0.0, 0.0]),
            ([0.8, 0.5, 0.2], 1.0 / 12.0, [0.8, 0.8, 0.2]),
            ([0.8, 0.5, 0.2], -1.0 / 6.0, [0.8, 0.2, 0.5]),
            ([0.4, 0.4, 0.4], 0.3, [0.4, 0.4, 0.4]),
        ];
        for (pixel, shift, expect) in cases {
            let got = shift_hue(pixel, shift);
            assert!(
                got.iter().zip(&expect).all(|(a, b)| (a - b).abs() < 1e-5),
                "{pixel:?} by {shift}: {got:?}, expected {expect:?}"
            );
        }
        // Through the augmenter: the identity settings with only a hue range keep each
        // pixel's max and min channel values.
        let (h, w) = (4, 4);
        let src: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i * 7) % 11) as f32 / 10.0)
            .collect();
        let cfg = AugmentConfig {
            hue: 0.5,
            ..AugmentConfig::identity()
        };
        let mut out = vec![0.0; src.len()];
        Augmenter::for_shape(cfg, 3, h, w).view(&src, &mut out, 3, 1);
        assert_ne!(out, src);
        for p in 0..h * w {
            let px = |v: &[f32]| [v[p], v[h * w + p], v[2 * h * w + p]];
            let (a, b) = (px(&src), px(&out));
            let max = |v: [f32; 3]| v[0].max(v[1]).max(v[2]);
            let min = |v: [f32; 3]| v[0].min(v[1]).min(v[2]);
            assert!((max(a) - max(b)).abs() < 1e-4 && (min(a) - min(b)).abs() < 1e-4);
        }
    }

    #[test]
    fn blur_keeps_the_mean_and_cutout_zeroes_a_square() {
        let (h, w) = (16, 16);
        let src: Vec<f32> = (0..h * w)
            .map(|i| if i % 2 == 0 { 0.8 } else { 0.2 })
            .collect();
        let mut plane = src.clone();
        gaussian_blur(&mut plane, w, h, 1.0);
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean(&plane) - mean(&src)).abs() < 1e-3);
        // The checkerboard's alternation is smoothed away.
        assert!((plane[8 * w + 8] - plane[8 * w + 9]).abs() < 0.1);
        let cut = AugmentConfig {
            cutout_prob: 1.0,
            cutout_max: 1.0,
            ..AugmentConfig::identity()
        };
        let ones = vec![1.0f32; h * w];
        let mut zeros_seen = false;
        for seed in 0..10 {
            let mut out = vec![0.0; h * w];
            Augmenter::for_shape(cut, 1, h, w).view(&ones, &mut out, seed, 1);
            zeros_seen |= out.contains(&0.0);
            assert!(out.iter().all(|&v| v == 0.0 || v == 1.0));
        }
        assert!(zeros_seen);
    }
}
