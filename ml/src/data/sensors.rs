//! The generated sensor set: windows of 6-channel inertial recordings (accelerometer x/y/z
//! then gyroscope x/y/z) of six activities.
//!
//! Each activity has its own step frequency, harmonic content and dominant axes; every
//! window draws a random phase (where in the gait cycle it starts), amplitude, tempo,
//! sensor offset, orientation mix and noise. The gyroscope follows the derivative of the
//! accelerometer's motion, so the two groups of channels carry paired information (what
//! cross-modal alignment learns from). The random phase makes a linear classifier on raw
//! values weak, and a shift-invariant learned representation much better.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use super::{Dataset, SampleShape, Splits};

/// Activity names, in label order.
pub const ACTIVITIES: [&str; 6] = ["walk", "run", "stairs-up", "stairs-down", "cycle", "rest"];

/// Channels of a generated window.
pub const CHANNELS: usize = 6;
/// Steps of a generated window.
pub const LENGTH: usize = 64;

/// Per activity: cycles per window, second-harmonic weight, axis weights.
/// Pairs of activities share a tempo and differ only in harmonic content or axes.
const PROFILES: [(f32, f32, [f32; 3]); 6] = [
    (3.0, 0.3, [1.0, 0.4, 0.2]),
    (4.0, 0.5, [1.0, 0.6, 0.3]),
    (3.0, 0.3, [0.4, 1.0, 0.2]),
    (3.0, 0.7, [1.0, 0.4, 0.2]),
    (4.0, 0.0, [0.3, 0.3, 1.0]),
    (1.5, 0.0, [0.3, 0.3, 0.3]),
];

/// `n` labeled windows of `channels × length` (channels beyond 6 repeat the pattern with
/// other noise; fewer keep the first ones), classes round-robin, deterministic for `seed`.
pub fn generate(n: usize, channels: usize, length: usize, seed: u64) -> Dataset {
    let d = channels * length;
    let mut samples = vec![0.0f32; n * d];
    samples
        .par_chunks_mut(d.max(1))
        .enumerate()
        .for_each(|(i, out)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i as u64);
            render(i % ACTIVITIES.len(), channels, length, &mut rng, out);
        });
    Dataset {
        samples,
        shape: SampleShape::Series { channels, length },
        labels: Some((0..n).map(|i| (i % ACTIVITIES.len()) as u8).collect()),
        num_classes: ACTIVITIES.len(),
    }
}

/// Default train / test splits for windows of `channels × length`.
pub fn splits(channels: usize, length: usize, seed: u64) -> Splits {
    Splits {
        train: generate(3000, channels, length, seed),
        test: generate(1000, channels, length, seed ^ 0x5e45_0125),
    }
}

fn render(class: usize, channels: usize, length: usize, rng: &mut ChaCha8Rng, out: &mut [f32]) {
    let (cycles, harmonic, axes) = PROFILES[class];
    let tempo = rng.gen_range(0.75f32..1.3);
    let phase = rng.gen_range(0.0..std::f32::consts::TAU);
    let amp = rng.gen_range(0.5f32..1.5);
    let noise = Normal::new(0.0f32, 0.35).ok();
    let tau = std::f32::consts::TAU;
    let w = tau * cycles * tempo / length as f32;
    for ch in 0..channels {
        let axis = ch % 3;
        let gyro = (ch / 3) % 2 == 1;
        let mix = rng.gen_range(0.6f32..1.4);
        let offset = rng.gen_range(-0.5f32..0.5);
        let delay = axis as f32 * 0.6;
        for t in 0..length {
            let x = w * t as f32 + phase + delay;
            let v = if gyro {
                // The derivative of the accelerometer's motion (scaled), shifted by π/2.
                x.cos() + 2.0 * harmonic * (2.0 * x).cos()
            } else {
                x.sin() + harmonic * (2.0 * x).sin()
            };
            let n = noise.as_ref().map_or(0.0, |d| d.sample(rng));
            out[ch * length + t] = amp * mix * axes[axis] * v + offset + n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_labeled_and_finite() {
        let a = generate(24, 6, 64, 1);
        assert_eq!(a, generate(24, 6, 64, 1));
        assert_eq!(a.len(), 24);
        assert_eq!(a.labels.as_ref().unwrap()[7], 1);
        assert!(a.samples.iter().all(|v| v.is_finite()));
        assert_ne!(
            a.sample(0),
            a.sample(6),
            "two windows of one activity differ"
        );
    }
}
