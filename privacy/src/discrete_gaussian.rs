//! An exact sampler of the discrete Gaussian in integer arithmetic, fast enough for DP-SGD.
//!
//! The algorithm is Canonne, Kamath, Steinke 2020 ("The Discrete Gaussian for Differential
//! Privacy", Alg. 1–3), the one opendp implements with arbitrary-precision rationals:
//! - `Bern(exp(−γ))` for rational γ: for γ ≤ 1 count successes of `Bern(γ/k)`, k = 1, 2, …
//!   and accept when the count is even; for γ > 1 chain ⌊γ⌋ draws of `Bern(e^{−1})`;
//! - discrete Laplace of integer scale t from a uniform remainder and a geometric quotient;
//! - discrete Gaussian N_ℤ(0, σ²) by rejection from the discrete Laplace of scale ⌊σ⌋ + 1.
//!
//! What makes it fast and keeps it exact:
//! - σ² is a rational `num/den` of machine integers, and every comparison is an integer
//!   one (`u128`; the rare candidate whose numbers do not fit falls back to big integers);
//! - `Bern(n/d)` compares the binary expansion of n/d, produced by long division, with
//!   random bits one at a time: two random bits per draw on average, not a 128-bit uniform;
//! - random bits come from ChaCha20 (a CSPRNG) seeded from the operating system, one
//!   generator per thread of work, so long vectors are sampled in parallel.
//!
//! [`GridGaussian`] turns it into the Gaussian mechanism on real vectors: noise on the grid
//! 2^k with k chosen from σ, the input rounded to the same grid, the sum formed in integers.

use num_bigint::BigUint;
use rand::RngCore;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

/// Random bits, one at a time, from a CSPRNG.
pub struct Bits<R: RngCore = ChaCha20Rng> {
    rng: R,
    word: u64,
    left: u32,
}

impl Bits<ChaCha20Rng> {
    /// ChaCha20 seeded from the operating system's entropy source.
    pub fn from_os() -> anyhow::Result<Self> {
        let rng = ChaCha20Rng::from_rng(rand::rngs::OsRng)
            .map_err(|e| anyhow::anyhow!("the operating system gave no entropy: {e}"))?;
        Ok(Self::new(rng))
    }
}

impl<R: RngCore> Bits<R> {
    /// Bits from `rng`.
    pub fn new(rng: R) -> Self {
        Self {
            rng,
            word: 0,
            left: 0,
        }
    }

    /// One uniform bit.
    #[inline]
    pub fn bit(&mut self) -> bool {
        if self.left == 0 {
            self.word = self.rng.next_u64();
            self.left = 64;
        }
        let b = self.word & 1 == 1;
        self.word >>= 1;
        self.left -= 1;
        b
    }

    /// A uniform integer in `[0, n)`, `n ≥ 1`, by rejection on the fewest bits.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n >= 1);
        if n == 1 {
            return 0;
        }
        let bits = 64 - (n - 1).leading_zeros();
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        loop {
            let v = self.rng.next_u64() & mask;
            if v < n {
                return v;
            }
        }
    }
}

/// The integer arithmetic the Bernoulli draws need: `u128`, or [`BigUint`] when a
/// candidate's numbers do not fit.
trait Int: Clone + Ord + std::ops::SubAssign + Sized {
    fn from_u64(v: u64) -> Self;
    fn is_zero(&self) -> bool;
    fn double(&mut self);
    fn mul_u64(&self, k: u64) -> Self;
}

impl Int for u128 {
    #[inline]
    fn from_u64(v: u64) -> Self {
        v as u128
    }
    #[inline]
    fn is_zero(&self) -> bool {
        *self == 0
    }
    #[inline]
    fn double(&mut self) {
        *self <<= 1;
    }
    #[inline]
    fn mul_u64(&self, k: u64) -> Self {
        self * k as u128
    }
}

impl Int for BigUint {
    fn from_u64(v: u64) -> Self {
        BigUint::from(v)
    }
    fn is_zero(&self) -> bool {
        self.bits() == 0
    }
    fn double(&mut self) {
        *self <<= 1u32;
    }
    fn mul_u64(&self, k: u64) -> Self {
        self * k
    }
}

/// `Bern(n/d)` for `0 ≤ n ≤ d`, `d > 0`: the first random bit that differs from the binary
/// expansion of n/d decides (u < p exactly when u has the 0 where p has the 1).
/// For `u128`, `d` must stay below 2^127 so that doubling cannot overflow (callers keep it
/// below 2^100, so that `d·k` in [`bernoulli_exp_unit`] cannot overflow either).
#[inline]
fn bernoulli_ratio<T: Int, R: RngCore>(bits: &mut Bits<R>, mut n: T, d: &T) -> bool {
    if n >= *d {
        return true;
    }
    loop {
        if n.is_zero() {
            return false;
        }
        n.double();
        let p_bit = n >= *d;
        if p_bit {
            n -= d.clone();
        }
        let u_bit = bits.bit();
        if u_bit != p_bit {
            return p_bit;
        }
    }
}

/// `Bern(exp(−n/d))` for `0 ≤ n/d ≤ 1` (CKS Alg. 1, first case).
fn bernoulli_exp_unit<T: Int, R: RngCore>(bits: &mut Bits<R>, n: &T, d: &T) -> bool {
    let mut k = 1u64;
    while bernoulli_ratio(bits, n.clone(), &d.mul_u64(k)) {
        k += 1;
    }
    k % 2 == 1
}

/// `Bern(exp(−n/d))` for any `n/d ≥ 0` (CKS Alg. 1).
fn bernoulli_exp<T: Int, R: RngCore>(bits: &mut Bits<R>, mut n: T, d: &T) -> bool {
    let one = T::from_u64(1);
    while n > *d {
        if !bernoulli_exp_unit(bits, &one, &one) {
            return false;
        }
        n -= d.clone();
    }
    bernoulli_exp_unit(bits, &n, d)
}

/// The discrete Laplace of integer scale `t ≥ 1`: P(x) ∝ exp(−|x|/t) (CKS Alg. 2).
fn discrete_laplace<R: RngCore>(bits: &mut Bits<R>, t: u64) -> i64 {
    let tt = t as u128;
    loop {
        let u = bits.below(t);
        if !bernoulli_exp(bits, u as u128, &tt) {
            continue;
        }
        let mut v = 0u64;
        while bernoulli_exp(bits, 1u128, &1u128) {
            v += 1;
        }
        let x = u + t * v;
        let negative = bits.bit();
        if negative && x == 0 {
            continue;
        }
        return if negative { -(x as i64) } else { x as i64 };
    }
}

/// An exact sampler of N_ℤ(0, σ²) for rational σ² = `num/den`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscreteGaussian {
    num: u64,
    den: u64,
    /// Scale of the discrete Laplace proposal: ⌊σ⌋ + 1.
    t: u64,
}

impl DiscreteGaussian {
    /// σ² = `num/den`; both positive and below 2^62.
    pub fn new(num: u64, den: u64) -> anyhow::Result<Self> {
        anyhow::ensure!(
            num > 0 && den > 0 && num < 1 << 62 && den < 1 << 62,
            "the discrete Gaussian needs 0 < σ² = {num}/{den} with both parts below 2^62"
        );
        // ⌊σ⌋ = ⌊√(num/den)⌋, found exactly in integers.
        let mut s = ((num as f64 / den as f64).sqrt()) as u64;
        while (s as u128 + 1).pow(2) * den as u128 <= num as u128 {
            s += 1;
        }
        while s > 0 && (s as u128).pow(2) * den as u128 > num as u128 {
            s -= 1;
        }
        Ok(Self { num, den, t: s + 1 })
    }

    /// σ² as a float.
    pub fn variance(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// One draw (CKS Alg. 3): a discrete Laplace candidate Y, accepted with probability
    /// exp(−(|Y| − σ²/t)²/(2σ²)) = exp(−(|Y|·t·den − num)² / (2·num·den·t²)).
    pub fn sample<R: RngCore>(&self, bits: &mut Bits<R>) -> i64 {
        let (num, den, t) = (self.num as u128, self.den as u128, self.t as u128);
        loop {
            let y = discrete_laplace(bits, self.t);
            let ay = y.unsigned_abs() as u128;
            let fast = ay
                .checked_mul(t)
                .and_then(|v| v.checked_mul(den))
                .map(|v| v.abs_diff(num))
                .and_then(|diff| diff.checked_mul(diff))
                .zip(
                    (2 * num)
                        .checked_mul(den)
                        .and_then(|v| v.checked_mul(t * t))
                        .filter(|d| *d < 1 << 100),
                );
            let accept = match fast {
                Some((n, d)) => bernoulli_exp(bits, n, &d),
                None => {
                    let big = |v: u128| BigUint::from(v);
                    let a = big(ay) * big(t) * big(den);
                    let diff = if a >= big(num) {
                        a - big(num)
                    } else {
                        big(num) - a
                    };
                    let n = &diff * &diff;
                    let d = big(2) * big(num) * big(den) * big(t) * big(t);
                    bernoulli_exp(bits, n, &d)
                }
            };
            if accept {
                return y;
            }
        }
    }
}

/// The Gaussian mechanism on real vectors with exact discrete noise on a grid: noise
/// `2^k · N_ℤ(0, σ_int²)`, where `σ_int = ⌈σ / 2^k⌉` and k makes σ_int ≈ 2^20, added to the
/// input rounded to the same grid, in integers.
///
/// Rounding to the grid moves each coordinate by at most 2^(k−1), so it adds at most
/// `2^k·√d` to the L2 sensitivity of the rounded input: [`GridGaussian::noise_multiplier`]
/// states the multiplier that holds for the rounded sensitivity, which the accountant uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridGaussian {
    sampler: DiscreteGaussian,
    /// log2 of the grid step.
    k: i32,
}

/// Coordinates per parallel sampling task (each seeds its own ChaCha20 from the OS).
const CHUNK: usize = 1 << 16;

impl GridGaussian {
    /// Grid noise with standard deviation at least `sigma` (> 0, finite).
    pub fn new(sigma: f64) -> anyhow::Result<Self> {
        anyhow::ensure!(
            sigma.is_finite() && sigma > 0.0,
            "the noise standard deviation must be a positive number, got {sigma}"
        );
        let k = sigma.log2().floor() as i32 - 20;
        let sigma_int = (sigma / 2f64.powi(k)).ceil() as u64;
        let sampler = DiscreteGaussian::new(sigma_int * sigma_int, 1)?;
        Ok(Self { sampler, k })
    }

    /// Grid noise whose multiplier after rounding ([`Self::noise_multiplier`]) is at least
    /// `multiplier` for an input of L2 sensitivity `sensitivity` over `dim` coordinates:
    /// the requested σ = multiplier · sensitivity, widened until rounding is covered.
    pub fn with_multiplier(multiplier: f64, sensitivity: f64, dim: usize) -> anyhow::Result<Self> {
        let mut noise = Self::new(multiplier * sensitivity)?;
        for _ in 0..8 {
            let z = noise.noise_multiplier(sensitivity, dim);
            if z >= multiplier {
                return Ok(noise);
            }
            noise = Self::new(noise.sigma() * multiplier / z * (1.0 + 1e-9))?;
        }
        anyhow::bail!(
            "cannot reach noise multiplier {multiplier} for sensitivity {sensitivity} over {dim} coordinates on the sampler's grid"
        )
    }

    /// The grid step 2^k.
    pub fn step(&self) -> f64 {
        2f64.powi(self.k)
    }

    /// The noise's standard deviation (≥ the requested one; the discrete Gaussian's own
    /// variance is a hair below σ_int², which only matters to the tests that measure it).
    pub fn sigma(&self) -> f64 {
        self.sampler.variance().sqrt() * self.step()
    }

    /// The noise multiplier that holds for an input of L2 sensitivity `sensitivity` over
    /// `dim` coordinates, after rounding to the grid: σ / (sensitivity + 2^k·√dim).
    pub fn noise_multiplier(&self, sensitivity: f64, dim: usize) -> f64 {
        self.sigma() / (sensitivity + self.step() * (dim as f64).sqrt())
    }

    /// Adds noise to every coordinate of `values` (finite), in parallel chunks, each with
    /// its own OS-seeded ChaCha20.
    pub fn add_noise(&self, values: &mut [f32]) -> anyhow::Result<()> {
        anyhow::ensure!(
            values.iter().all(|v| v.is_finite()),
            "cannot privatize a vector with NaN or infinite values"
        );
        let step = self.step();
        let inv = 1.0 / step;
        values.par_chunks_mut(CHUNK).try_for_each(|chunk| {
            let mut bits = Bits::from_os()?;
            for v in chunk {
                // Exact in f64: v is an f32 and the step a power of two.
                let grid = (*v as f64 * inv).round() as i64;
                let noised = grid.saturating_add(self.sampler.sample(&mut bits));
                *v = (noised as f64 * step) as f32;
            }
            anyhow::Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded(seed: u64) -> Bits<ChaCha20Rng> {
        Bits::new(ChaCha20Rng::seed_from_u64(seed))
    }

    /// Pearson's χ² statistic of `counts` against the discrete Gaussian pmf, cells with an
    /// expected count below 5 pooled into the two tails; returns (statistic, degrees of
    /// freedom).
    fn chi_square(counts: &std::collections::BTreeMap<i64, u64>, var: f64, n: u64) -> (f64, usize) {
        let radius = (12.0 * var.sqrt()).ceil() as i64 + 2;
        let weight = |x: i64| (-(x as f64).powi(2) / (2.0 * var)).exp();
        let z: f64 = (-radius * 4..=radius * 4).map(weight).sum();
        let mut cells: Vec<(f64, f64)> = Vec::new(); // (observed, expected)
        let (mut lo_o, mut lo_e) = (0.0, 0.0);
        let mut x = -radius * 4;
        while x <= radius * 4 {
            let e = n as f64 * weight(x) / z;
            let o = *counts.get(&x).unwrap_or(&0) as f64;
            if e < 5.0 && cells.is_empty() {
                lo_o += o;
                lo_e += e;
            } else {
                cells.push((o, e));
            }
            x += 1;
        }
        // Pool the upper tail back into the last cell with an expected count ≥ 5.
        let mut tail = (0.0, 0.0);
        while let Some(&(o, e)) = cells.last() {
            if e >= 5.0 {
                break;
            }
            tail.0 += o;
            tail.1 += e;
            cells.pop();
        }
        if let Some(last) = cells.last_mut() {
            last.0 += tail.0;
            last.1 += tail.1;
        }
        if let Some(first) = cells.first_mut() {
            first.0 += lo_o;
            first.1 += lo_e;
        }
        let stat = cells.iter().map(|(o, e)| (o - e).powi(2) / e).sum();
        (stat, cells.len() - 1)
    }

    /// Upper 0.1 % point of χ²(k), Wilson–Hilferty.
    fn chi2_critical(k: usize) -> f64 {
        let k = k as f64;
        let z = 3.090_232; // Φ⁻¹(0.999)
        k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
    }

    #[test]
    fn samples_follow_the_discrete_gaussian_pmf() {
        // Integer, fractional and large variances; 1/3 exercises a non-terminating expansion.
        for (i, &(num, den)) in [(1u64, 3u64), (9, 4), (25, 1), (1000, 7), (40_000, 1)]
            .iter()
            .enumerate()
        {
            let g = DiscreteGaussian::new(num, den).unwrap();
            let mut bits = seeded(i as u64 + 10);
            let n = 200_000u64;
            let mut counts = std::collections::BTreeMap::new();
            for _ in 0..n {
                *counts.entry(g.sample(&mut bits)).or_insert(0) += 1;
            }
            let (stat, dof) = chi_square(&counts, g.variance(), n);
            assert!(
                stat < chi2_critical(dof),
                "σ² = {num}/{den}: χ² = {stat:.1} on {dof} dof (critical {:.1})",
                chi2_critical(dof)
            );
        }
    }

    #[test]
    fn bernoulli_exp_has_the_right_rate() {
        let mut bits = seeded(3);
        for &(n, d) in &[(1u128, 2u128), (3, 1), (7, 3), (0, 5)] {
            let trials = 200_000;
            let hits = (0..trials)
                .filter(|_| bernoulli_exp(&mut bits, n, &d))
                .count() as f64;
            let p = (-(n as f64) / d as f64).exp();
            let sd = (p * (1.0 - p) / trials as f64).sqrt().max(1e-9);
            assert!(
                ((hits / trials as f64) - p).abs() < 5.0 * sd,
                "exp(-{n}/{d})"
            );
        }
    }

    /// A two-sample χ² test of homogeneity against opendp's exact sampler at the same σ
    /// (opendp is the reference: arbitrary-precision rationals, its own randomness).
    #[test]
    fn agrees_with_opendp_sampler() {
        use dashu::rational::RBig;
        let g = DiscreteGaussian::new(49, 4).unwrap(); // σ = 3.5
        let n = 20_000usize;
        let mut bits = seeded(77);
        let ours: Vec<i64> = (0..n).map(|_| g.sample(&mut bits)).collect();
        let scale = RBig::from_parts(7.into(), 2u8.into());
        let theirs: Vec<i64> = (0..n)
            .map(|_| {
                let x = opendp::traits::samplers::sample_discrete_gaussian(scale.clone()).unwrap();
                i64::try_from(x).unwrap()
            })
            .collect();
        // Cells -9..=9 plus the two tails (expected counts all above 5 at σ = 3.5).
        let cell = |x: i64| (x.clamp(-10, 10) + 10) as usize;
        let (mut a, mut b) = ([0f64; 21], [0f64; 21]);
        ours.iter().for_each(|&x| a[cell(x)] += 1.0);
        theirs.iter().for_each(|&x| b[cell(x)] += 1.0);
        let stat: f64 = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| **x + **y > 0.0)
            .map(|(x, y)| (x - y).powi(2) / (x + y))
            .sum();
        assert!(
            stat < chi2_critical(20),
            "two-sample χ² = {stat:.1} on 20 dof"
        );
        let var = |v: &[i64]| v.iter().map(|&x| (x * x) as f64).sum::<f64>() / n as f64;
        assert!((var(&ours) / var(&theirs) - 1.0).abs() < 0.05);
    }

    #[test]
    fn big_integer_path_agrees_with_u128() {
        // The same draws through both arithmetics give the same decisions.
        for seed in 0..50 {
            let (n, d) = (123_456_789_012u128, 98_765_432_101u128);
            let a = bernoulli_exp(&mut seeded(seed), n, &d);
            let b = bernoulli_exp(&mut seeded(seed), BigUint::from(n), &BigUint::from(d));
            assert_eq!(a, b);
        }
    }

    #[test]
    fn grid_noise_has_the_requested_scale_and_keeps_the_input() {
        let g = GridGaussian::new(0.75).unwrap();
        assert!(g.sigma() >= 0.75 && g.sigma() < 0.75 * (1.0 + 1e-5));
        let mut v = vec![0.25f32; 200_000];
        g.add_noise(&mut v).unwrap();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let sd = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        assert!((mean - 0.25).abs() < 5.0 * 0.75 / n.sqrt(), "mean {mean}");
        assert!((sd - 0.75).abs() < 5.0 * 0.75 / (2.0 * n).sqrt(), "sd {sd}");
        assert!(g.add_noise(&mut [f32::NAN]).is_err());
        // The multiplier the accountant uses accounts for rounding to the grid.
        let z = g.noise_multiplier(1.0, 1_000_000);
        assert!(z < 0.75 && z > 0.75 * (1.0 - 1e-3), "{z}");
    }
}
