//! The embedded default dataset: procedural 28×28 grayscale shapes in ten classes, and the
//! same shapes at any size in colour ([`generate_shaped`]).
//!
//! Each image draws a class shape at a random position, size, aspect, rotation and stroke
//! width, over a random background gradient, with a distractor blob and pixel noise. The
//! nuisance variation (mostly translation and scale) makes a linear classifier on raw
//! pixels clearly worse than one on a translation-invariant learned representation. In
//! colour, shape and background each get a random colour, so colour says nothing about
//! the class.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use super::{Dataset, SampleShape, Splits};
use fedssl_core::spec::IMAGE_SIDE;

/// Class names, in label order.
pub const CLASS_NAMES: [&str; 10] = [
    "disk", "ring", "square", "frame", "triangle", "plus", "cross", "h-bars", "v-bars", "checker",
];

/// Default sizes of the generated splits.
pub const DEFAULT_TRAIN: usize = 6000;
/// Default size of the test split.
pub const DEFAULT_TEST: usize = 2000;

/// `n` labeled 28×28 grayscale images, classes balanced round-robin, deterministic for
/// `seed`.
pub fn generate(n: usize, seed: u64) -> Dataset {
    generate_shaped(n, SampleShape::GRAY_28, seed)
}

/// The default train / test splits of images of `shape` ([`generate_shaped`]).
pub fn splits_shaped(shape: SampleShape, seed: u64) -> Splits {
    Splits {
        train: generate_shaped(DEFAULT_TRAIN, shape, seed),
        test: generate_shaped(DEFAULT_TEST, shape, seed ^ 0x5eed_7e57),
    }
}

/// `n` labeled images of `shape` (grayscale or RGB, any size), classes balanced
/// round-robin, deterministic for `seed`. Images of any other shape come out black.
pub fn generate_shaped(n: usize, shape: SampleShape, seed: u64) -> Dataset {
    let d = shape.len();
    let mut images = vec![0.0f32; n * d];
    if let SampleShape::Image {
        channels: channels @ (1 | 3),
        height,
        width,
    } = shape
    {
        images.par_chunks_mut(d).enumerate().for_each(|(i, img)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i as u64);
            render((i % 10) as u8, &mut rng, [channels, height, width], img);
        });
    }
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    Dataset {
        samples: images,
        shape,
        labels: Some(labels),
        num_classes: 10,
    }
}

fn inside(class: u8, x: f32, y: f32, t: f32) -> bool {
    let r = (x * x + y * y).sqrt();
    let box_d = x.abs().max(y.abs());
    match class {
        0 => r < 1.0,
        1 => (r - 0.8).abs() < t,
        2 => box_d < 0.8,
        3 => (box_d - 0.8).abs() < t,
        4 => {
            // Upward triangle with vertices (0,-1), (±0.95, 0.7).
            y < 0.7 && y > -1.0 + 1.79 * x.abs()
        }
        5 => (x.abs() < t && y.abs() < 1.0) || (y.abs() < t && x.abs() < 1.0),
        6 => {
            let (u, v) = (
                (x + y) * std::f32::consts::FRAC_1_SQRT_2,
                (x - y) * std::f32::consts::FRAC_1_SQRT_2,
            );
            (u.abs() < t && v.abs() < 1.0) || (v.abs() < t && u.abs() < 1.0)
        }
        7 => box_d < 0.9 && (y * 2.6).rem_euclid(2.0) < 1.0,
        8 => box_d < 0.9 && (x * 2.6).rem_euclid(2.0) < 1.0,
        _ => box_d < 0.85 && (x > 0.0) == (y > 0.0) && box_d > 0.1,
    }
}

/// What [`render`] drew, in the 28×28 grid's units: what a caption can say about it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Drawn {
    /// Centre column (8–20).
    pub cx: f32,
    /// Centre row (8–20).
    pub cy: f32,
    /// Half-size (4.5–9).
    pub size: f32,
    /// Brightness of the shape (0.55–1).
    pub fg: f32,
}

/// Draws an image of `class` into `img` and says what it drew.
pub(crate) fn render(
    class: u8,
    rng: &mut ChaCha8Rng,
    [channels, height, width]: [usize; 3],
    img: &mut [f32],
) -> Drawn {
    // Drawn on the 28×28 grid, then scaled to the image.
    let side = IMAGE_SIDE as f32;
    let (kx, ky) = (width as f32 / side, height as f32 / side);
    let cx = rng.gen_range(8.0..20.0);
    let cy = rng.gen_range(8.0..20.0);
    let size = rng.gen_range(4.5..9.0f32);
    let aspect = rng.gen_range(0.8..1.25f32);
    let (sx, sy) = (size * aspect.sqrt(), size / aspect.sqrt());
    let theta = rng.gen_range(-25.0f32..25.0).to_radians();
    let (sin, cos) = theta.sin_cos();
    let stroke = rng.gen_range(1.0..2.2f32) / size;
    let fg = rng.gen_range(0.55..1.0f32);
    let bg = rng.gen_range(0.0..0.3f32);
    let (gx, gy) = (rng.gen_range(-0.01..0.01f32), rng.gen_range(-0.01..0.01f32));
    let (bx, by, br) = (
        rng.gen_range(0.0..side),
        rng.gen_range(0.0..side),
        rng.gen_range(1.0..2.5f32),
    );
    let blob = rng.gen_range(0.2..0.6f32);
    let noise = Normal::new(0.0f32, rng.gen_range(0.01..0.08f32)).ok();
    // Colour images: a colour for the shape and a tint for the background.
    let tints: Option<([f32; 3], [f32; 3])> = (channels == 3).then(|| {
        let fg = [0; 3].map(|_| rng.gen_range(0.2..1.0f32));
        let bg = [0; 3].map(|_| rng.gen_range(0.3..1.0f32));
        (fg, bg)
    });
    const SS: [f32; 2] = [0.25, 0.75];
    let plane = height * width;
    for py in 0..height {
        for px in 0..width {
            let mut cover = 0.0;
            for oy in SS {
                for ox in SS {
                    let dx = (px as f32 + ox) / kx - cx;
                    let dy = (py as f32 + oy) / ky - cy;
                    let u = (cos * dx + sin * dy) / sx;
                    let v = (-sin * dx + cos * dy) / sy;
                    if inside(class, u, v, stroke) {
                        cover += 0.25;
                    }
                }
            }
            let (x, y) = (px as f32 / kx, py as f32 / ky);
            let mut val = bg + gx * (x - 14.0) + gy * (y - 14.0);
            let db = ((x - bx).powi(2) + (y - by).powi(2)).sqrt();
            if db < br {
                val = val.max(blob);
            }
            match &tints {
                None => {
                    val = val * (1.0 - cover) + fg * cover;
                    if let Some(n) = &noise {
                        val += n.sample(rng);
                    }
                    img[py * width + px] = val.clamp(0.0, 1.0);
                }
                Some((fgc, bgc)) => {
                    for c in 0..3 {
                        let mut v = val * bgc[c] * (1.0 - cover) + fg * fgc[c] * cover;
                        if let Some(n) = &noise {
                            v += n.sample(rng);
                        }
                        img[c * plane + py * width + px] = v.clamp(0.0, 1.0);
                    }
                }
            }
        }
    }
    Drawn { cx, cy, size, fg }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_balanced_and_varied() {
        let a = generate(50, 1);
        assert_eq!(a, generate(50, 1));
        assert_ne!(a.samples, generate(50, 2).samples);
        let labels = a.labels.as_ref().unwrap();
        for c in 0..10u8 {
            assert_eq!(labels.iter().filter(|&&l| l == c).count(), 5);
        }
        // Two images of the same class differ (within-class variation).
        assert_ne!(a.sample(0), a.sample(10));
        assert!(a.samples.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn colour_images_at_any_size() {
        let shape = SampleShape::Image {
            channels: 3,
            height: 32,
            width: 32,
        };
        let d = generate_shaped(20, shape, 1);
        assert_eq!(d.dim(), 3 * 32 * 32);
        assert!(d.samples.iter().all(|v| (0.0..=1.0).contains(v)));
        // The channels differ (colour), and images of one class vary.
        let s = d.sample(0);
        assert_ne!(&s[..1024], &s[1024..2048]);
        assert_ne!(d.sample(0), d.sample(10));
    }
}
