//! The Gaussian mechanism on a whole update, sampled with opendp's exact discrete Gaussian.

use anyhow::Context;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_gaussian;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::L2Distance;
use rayon::prelude::*;

use super::clip::clip_l2;
use super::{Mechanism, Privatized};
use crate::model::Weights;

/// opendp's Gaussian measurement on a sized f32 vector under L2 distance, in zCDP.
type VectorGaussian = opendp::core::Measurement<
    VectorDomain<AtomDomain<f32>>,
    L2Distance<f32>,
    ZeroConcentratedDivergence,
    Vec<f32>,
>;

/// Coordinates per parallel sampling chunk.
const CHUNK: usize = 16_384;

/// Client-level Gaussian mechanism: clip to `clip_norm`, add N(0, (z·C)²) to every coordinate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussianMechanism {
    /// L2 clipping bound `C`.
    pub clip_norm: f64,
    /// Noise multiplier `z`.
    pub noise_multiplier: f64,
    /// Granularity exponent of opendp's sampler (noise lives on the grid 2^k).
    pub k: i32,
    /// Number of coordinates of the update.
    pub dim: usize,
}

impl GaussianMechanism {
    /// Default granularity: 2^-30 keeps sampling fast; it grows the sensitivity by 2^-30·√d.
    pub const DEFAULT_K: i32 = -30;

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
            k: Self::DEFAULT_K,
            dim,
        })
    }

    /// Standard deviation of the noise, `z·C`.
    pub fn scale(&self) -> f64 {
        self.noise_multiplier * self.clip_norm
    }

    fn measurement(&self, size: usize) -> anyhow::Result<VectorGaussian> {
        make_gaussian::<_, _, ZeroConcentratedDivergence>(
            VectorDomain::new(AtomDomain::<f32>::new_non_nan()).with_size(size),
            L2Distance::<f32>::default(),
            self.scale(),
            Some(self.k),
        )
        .map_err(|e| anyhow::anyhow!("opendp make_gaussian: {e}"))
    }

    /// Adds noise to `values` in parallel chunks (the noise is i.i.d. per coordinate, so
    /// chunking is the same mechanism as one vector-valued release).
    pub fn add_noise(&self, values: &mut [f32]) -> anyhow::Result<()> {
        // opendp measurements are not Send: each worker builds its own (cheap).
        values.par_chunks_mut(CHUNK).try_for_each(|chunk| {
            let noised = self
                .measurement(chunk.len())?
                .invoke(&chunk.to_vec())
                .map_err(|e| anyhow::anyhow!("opendp sampling: {e}"))?;
            chunk.copy_from_slice(&noised);
            anyhow::Ok(())
        })
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
        let mut flat: Vec<f32> = update.values().collect();
        self.add_noise(&mut flat)?;
        let mut it = flat.into_iter();
        for t in &mut update.tensors {
            for v in &mut t.values {
                *v = it
                    .next()
                    .context("internal: noise vector shorter than update")?;
            }
        }
        Ok(Privatized {
            rho: self.rho()?,
            norm,
        })
    }

    fn rho(&self) -> anyhow::Result<f64> {
        let m = self.measurement(self.dim.max(1))?;
        m.map(&(self.clip_norm as f32))
            .map_err(|e| anyhow::anyhow!("opendp privacy map: {e}"))
    }

    fn max_plausible_norm(&self) -> f64 {
        // ‖clip(u) + n‖ ≤ C + ‖n‖, and ‖n‖ ≤ zC(√P + 10) except with probability < e^-50
        // (Gaussian concentration of the norm: P(‖n‖ ≥ σ(√P + t)) ≤ e^{-t²/2}).
        self.clip_norm + self.scale() * ((self.dim as f64).sqrt() + 10.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn rho_matches_closed_form() {
        // ρ = (Δ/σ)²/2 = 1/(2z²), up to the tiny 2^k·√d granularity term.
        let m = GaussianMechanism::new(1.0, 2.0, 1000).unwrap();
        let rho = m.rho().unwrap();
        assert!((rho - 0.125).abs() < 1e-4, "{rho}");
    }

    #[test]
    fn privatize_bounds_norm() {
        let mut w = Weights {
            tensors: vec![crate::model::weights::WeightTensor {
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
