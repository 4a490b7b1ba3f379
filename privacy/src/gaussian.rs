//! Client-level Gaussian mechanism: a site clips its whole update and adds exact discrete
//! Gaussian noise ([`super::discrete_gaussian::GridGaussian`]) before it leaves the site.

use super::clip::clip_l2;
use super::discrete_gaussian::GridGaussian;
use super::ledger::{GaussianEvent, MechanismKind, Unit};
use super::{Mechanism, Privatized};
use fedssl_core::weights::Weights;

/// Client-level Gaussian mechanism: clip to `clip_norm`, add noise of standard deviation
/// `noise_multiplier · clip_norm` to every coordinate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussianMechanism {
    /// L2 clipping bound `C`.
    pub clip_norm: f64,
    /// Noise multiplier `z`.
    pub noise_multiplier: f64,
    /// Number of coordinates of the update.
    pub dim: usize,
    noise: GridGaussian,
}

impl GaussianMechanism {
    /// A mechanism for updates of `dim` coordinates.
    pub fn new(clip_norm: f64, noise_multiplier: f64, dim: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            clip_norm.is_finite() && clip_norm > 0.0,
            "clip_norm must be a positive number, got {clip_norm}"
        );
        anyhow::ensure!(
            noise_multiplier.is_finite() && noise_multiplier > 0.0,
            "noise_multiplier must be a positive number, got {noise_multiplier} \
             (zero noise gives no privacy guarantee)"
        );
        Ok(Self {
            clip_norm,
            noise_multiplier,
            dim,
            // Widened until the multiplier that holds after grid rounding is at least z,
            // so the plan's z is what the ledger charges.
            noise: GridGaussian::with_multiplier(noise_multiplier, clip_norm, dim)?,
        })
    }

    /// Standard deviation of the noise actually added (at least `z·C`).
    pub fn scale(&self) -> f64 {
        self.noise.sigma()
    }

    /// Adds the mechanism's noise to `values`.
    pub fn add_noise(&self, values: &mut [f32]) -> anyhow::Result<()> {
        self.noise.add_noise(values)
    }
}

impl Mechanism for GaussianMechanism {
    fn privatize(&self, update: &mut Weights) -> anyhow::Result<Privatized> {
        anyhow::ensure!(
            update.num_params() == self.dim,
            "update has {} coordinates, mechanism was built for {}",
            update.num_params(),
            self.dim
        );
        anyhow::ensure!(update.is_finite(), "update contains NaN or infinite values");
        let norm = clip_l2(update, self.clip_norm);
        for t in &mut update.tensors {
            self.noise.add_noise(&mut t.values)?;
        }
        Ok(Privatized { norm })
    }

    fn bounds(&self) -> Vec<GaussianEvent> {
        // A site's clipped update moves the sum by at most C; one record moves the site's
        // clipped update by at most 2C (both versions have norm ≤ C).
        [(Unit::Site, 1.0), (Unit::Record, 2.0)]
            .into_iter()
            .map(|(unit, k)| {
                GaussianEvent::single(
                    MechanismKind::ClientLevel,
                    unit,
                    self.noise.noise_multiplier(k * self.clip_norm, self.dim),
                    self.clip_norm,
                )
            })
            .collect()
    }

    fn max_plausible_norm(&self) -> f64 {
        max_plausible_norm(
            self.clip_norm,
            self.noise_multiplier * self.clip_norm,
            self.dim,
        )
    }
}

/// The largest norm of a clipped update plus N(0, σ²) noise in `dim` coordinates, except
/// with probability below e^-50: ‖clip(u) + n‖ ≤ C + ‖n‖, and
/// P(‖n‖ ≥ σ(√P + t)) ≤ e^{−t²/2} (Gaussian concentration of the norm). The grid noise's σ
/// exceeds the requested one by under 1e-5 relative, covered by the slack.
pub fn max_plausible_norm(clip_norm: f64, sigma: f64, dim: usize) -> f64 {
    clip_norm + sigma * (1.0 + 1e-5) * ((dim as f64).sqrt() + 10.0)
}

/// The smallest norm of a clipped update plus N(0, σ²) noise in `dim` coordinates, except
/// with probability below e^-50: ‖clip(u) + n‖ ≥ ‖n‖ − C, and
/// P(‖n‖ ≤ σ(√P − t)) ≤ e^{−t²/2}. Zero where the noise is too small to tell.
pub fn min_plausible_norm(clip_norm: f64, sigma: f64, dim: usize) -> f64 {
    (sigma * (1.0 - 1e-5) * ((dim as f64).sqrt() - 10.0) - clip_norm).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noised_update_lies_within_the_plausible_norms() {
        // 10 000 coordinates, C = 1, z = 0.5: ‖n‖ ≈ 50, so every draw lies in [39, 61].
        let (c, z, d) = (1.0, 0.5, 10_000);
        let (lo, hi) = (
            min_plausible_norm(c, z * c, d),
            max_plausible_norm(c, z * c, d),
        );
        assert!(
            (lo - (0.5 * 90.0 * (1.0 - 1e-5) - 1.0)).abs() < 1e-9,
            "{lo}"
        );
        let m = GaussianMechanism::new(c, z, d).unwrap();
        for _ in 0..5 {
            let mut v = vec![0.0f32; d];
            v[0] = 1.0; // a clipped update of norm C
            m.add_noise(&mut v).unwrap();
            let n = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
            assert!(lo < n && n < hi, "{lo} < {n} < {hi}");
        }
        // The update without its noise has norm 1: far below the floor.
        assert!(lo > 1.0);
        assert_eq!(
            min_plausible_norm(1.0, 0.1, 50),
            0.0,
            "too few coordinates to tell"
        );
    }

    #[test]
    fn noise_std_matches_z_times_c() {
        let m = GaussianMechanism::new(0.5, 1.5, 40_000).unwrap();
        let mut v = vec![0.0f32; 40_000];
        m.add_noise(&mut v).unwrap();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let sd = var.sqrt();
        // Standard error of the sample sd is sd/√(2n) ≈ 0.0027 here; allow 5 of them.
        assert!((sd - 0.75).abs() < 0.014, "sd {sd}");
        assert!(mean.abs() < 0.02, "mean {mean}");
    }

    #[test]
    fn bounds_name_site_and_record_with_their_sensitivities() {
        let m = GaussianMechanism::new(1.0, 2.0, 1000).unwrap();
        let b = m.bounds();
        let site = b.iter().find(|e| e.unit == Unit::Site).unwrap();
        let record = b.iter().find(|e| e.unit == Unit::Record).unwrap();
        // z = 2 up to the grid's 2^k·√d (about 2·√1000/2^20 relative).
        assert!((site.noise_multiplier - 2.0).abs() < 2e-4, "{site:?}");
        assert!((record.noise_multiplier - 1.0).abs() < 1e-4, "{record:?}");
    }

    #[test]
    fn privatize_bounds_norm() {
        let mut w = Weights {
            tensors: vec![fedssl_core::weights::WeightTensor {
                name: "w".into(),
                shape: vec![5000],
                values: vec![3.0; 5000],
            }],
        };
        let m = GaussianMechanism::new(1.0, 0.01, 5000).unwrap();
        m.privatize(&mut w).unwrap();
        assert!(w.l2_norm() < m.max_plausible_norm());
        assert!(w.l2_norm() > 0.5);
    }
}
