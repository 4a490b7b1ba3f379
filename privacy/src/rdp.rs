//! Rényi-DP accounting of the (Poisson-subsampled) Gaussian mechanism.
//!
//! - RDP of the Poisson-subsampled Gaussian at order α (Mironov, Talwar, Zhang 2019,
//!   "Rényi Differential Privacy of the Sampled Gaussian Mechanism"): `A_α` is the α-th
//!   moment of the likelihood ratio of the mixture `(1−q)·N(0, σ²) + q·N(1, σ²)` against
//!   `N(0, σ²)`; RDP(α) = ln A_α / (α − 1). Integer orders use the finite binomial sum
//!   (Sec. 3.2); fractional orders the two convergent series split at `z₀` (Sec. 3.3), with
//!   the signs of the generalized binomial coefficients kept (the sum is exact, not bounded).
//!   At q = 1 it is the Gaussian mechanism's α/(2σ²).
//! - Composition adds RDP order by order, over steps, rounds and mechanisms.
//! - (ε, δ) from an RDP curve: the conversion of Canonne, Kamath, Steinke 2020 (Prop. 12)
//!   and Asoodeh et al. 2020, `ε = r + ln(1 − 1/α) − ln(δ·α)/(α − 1)`, minimized over the
//!   orders, with ε = 0 where `δ² + e^{−r} > 1` (the KL bound), as dp_accounting does;
//!   `tests/privacy_accountant.rs` checks the whole pipeline against dp_accounting 0.6.
//!
//! The neighbour relation of these bounds is add-or-remove one element (one record for
//! DP-SGD, one site's update for client-level DP), with the L2 sensitivity 1 that σ is
//! measured in.

/// The orders of the RDP curve (dp_accounting's default set: 1.1 … 10.9 in steps of 0.1,
/// 11 … 63, then 128, 256, 512, 1024).
pub fn default_orders() -> Vec<f64> {
    (1..100)
        .map(|x| 1.0 + x as f64 / 10.0)
        .chain((11..64).map(f64::from))
        .chain([128.0, 256.0, 512.0, 1024.0])
        .collect()
}

/// RDP at order `alpha` of one application of the Poisson-subsampled Gaussian mechanism
/// with sampling rate `q` and noise multiplier `sigma` (noise std / L2 sensitivity).
pub fn poisson_gaussian_rdp(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q <= 0.0 {
        return 0.0;
    }
    if sigma <= 0.0 || alpha.is_infinite() {
        return f64::INFINITY;
    }
    if q >= 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    let log_a = if alpha.fract() == 0.0 && alpha <= 1e6 {
        log_a_int(q, sigma, alpha as u64)
    } else {
        log_a_frac(q, sigma, alpha)
    };
    (log_a / (alpha - 1.0)).max(0.0)
}

/// ln A_α for integer α: Σₖ C(α, k)·(1 − q)^(α−k)·q^k·exp((k² − k)/(2σ²)).
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let (lq, l1q, s2) = (q.ln(), (-q).ln_1p(), 2.0 * sigma * sigma);
    let af = alpha as f64;
    let terms = (0..=alpha).map(|k| {
        let k = k as f64;
        ln_binom(af, k).0 + k * lq + (af - k) * l1q + (k * k - k) / s2
    });
    log_sum(terms.map(|t| (t, 1.0)))
}

/// ln A_α for fractional α (MTZ 2019, Sec. 3.3): the integral of the likelihood ratio to
/// the α splits at `z₀ = σ²·ln(1/q − 1) + ½`, where `q·N(1)/N(0) = 1 − q`; below it the
/// ratio expands in powers of `q·N(1)/((1 − q)·N(0)) ≤ 1`, above it in the inverse powers.
/// Term i of each series integrates a shifted Gaussian against half-lines, giving erfc.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (lq, l1q, s2) = (q.ln(), (-q).ln_1p(), 2.0 * sigma * sigma);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let root2s = std::f64::consts::SQRT_2 * sigma;
    let mut terms: Vec<(f64, f64)> = Vec::new();
    let mut peak = f64::NEG_INFINITY;
    let (mut last0, mut last1) = (f64::INFINITY, f64::INFINITY);
    for i in 0..100_000u32 {
        let i = f64::from(i);
        let j = alpha - i;
        let (lc, sign) = ln_binom(alpha, i);
        // Below z₀: C(α, i)(1 − q)^(α−i) q^i · e^{(i²−i)/2σ²} · Φ((z₀ − i)/σ).
        let s0 = lc + i * lq + j * l1q + (i * i - i) / s2 + ln_half_erfc((i - z0) / root2s);
        // Above z₀: C(α, i) q^(α−i) (1 − q)^i · e^{(j²−j)/2σ²} · (1 − Φ((z₀ − j)/σ)).
        let s1 = lc + j * lq + i * l1q + (j * j - j) / s2 + ln_half_erfc((z0 - j) / root2s);
        terms.push((s0, sign));
        terms.push((s1, sign));
        peak = peak.max(s0).max(s1);
        // Past α the terms alternate and shrink: stop once both are negligible and falling.
        if i > alpha + 1.0 && s0 < last0 && s1 < last1 && s0.max(s1) < peak - 40.0 {
            break;
        }
        (last0, last1) = (s0, s1);
    }
    log_sum(terms.into_iter())
}

/// ln |C(a, k)| and its sign, for real a ≥ 0 and integer k ≥ 0 (the generalized binomial
/// coefficient a(a−1)…(a−k+1)/k!).
fn ln_binom(a: f64, k: f64) -> (f64, f64) {
    if a.fract() == 0.0 && k > a {
        return (f64::NEG_INFINITY, 1.0);
    }
    let (g1, _) = libm::lgamma_r(a + 1.0);
    let (g2, _) = libm::lgamma_r(k + 1.0);
    let (g3, s3) = libm::lgamma_r(a - k + 1.0);
    (g1 - g2 - g3, if s3 < 0 { -1.0 } else { 1.0 })
}

/// ln(½·erfc(x)), accurate in the far tail where erfc underflows.
fn ln_half_erfc(x: f64) -> f64 {
    if x < 20.0 {
        (0.5 * libm::erfc(x)).ln()
    } else {
        // erfc(x) = e^{−x²}/(x√π)·(1 − 1/(2x²) + 3/(4x⁴) − 15/(8x⁶) + …)
        let x2 = x * x;
        let series = 1.0 - 0.5 / x2 + 0.75 / (x2 * x2) - 1.875 / (x2 * x2 * x2);
        -x2 - (x * std::f64::consts::PI.sqrt()).ln() + series.ln() + 0.5f64.ln()
    }
}

/// ln Σ sᵢ·e^{lᵢ} for (lᵢ, sᵢ) pairs with signs sᵢ = ±1 (the sum must be positive).
fn log_sum(terms: impl Iterator<Item = (f64, f64)>) -> f64 {
    let terms: Vec<(f64, f64)> = terms.filter(|(l, _)| *l > f64::NEG_INFINITY).collect();
    let peak = terms.iter().map(|t| t.0).fold(f64::NEG_INFINITY, f64::max);
    if peak == f64::INFINITY {
        return f64::INFINITY;
    }
    let sum: f64 = terms.iter().map(|&(l, s)| s * (l - peak).exp()).sum();
    peak + sum.max(f64::MIN_POSITIVE).ln()
}

/// ε at `delta` of an RDP curve (`rdp[i]` at `orders[i]`), and the order that gives it.
pub fn epsilon_from_rdp(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::NAN);
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = if r.is_nan() || r == f64::INFINITY {
            f64::INFINITY
        } else if r <= 0.0 || delta * delta + (-r).exp_m1() > 0.0 {
            0.0
        } else if a > 1.01 {
            r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
        } else {
            f64::INFINITY
        };
        if eps < best.0 {
            best = (eps, a);
        }
    }
    (best.0.max(0.0), best.1)
}

/// A Rényi-DP accountant: the composed RDP curve of every event so far.
#[derive(Debug, Clone, PartialEq)]
pub struct RdpAccountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
}

impl Default for RdpAccountant {
    fn default() -> Self {
        Self::new(default_orders())
    }
}

impl RdpAccountant {
    /// An accountant over `orders`, with nothing spent.
    pub fn new(orders: Vec<f64>) -> Self {
        let rdp = vec![0.0; orders.len()];
        Self { orders, rdp }
    }

    /// Composes `count` applications of the Poisson-subsampled Gaussian (q = 1: the plain
    /// Gaussian mechanism).
    pub fn compose_poisson_gaussian(&mut self, q: f64, sigma: f64, count: u64) {
        for (r, &a) in self.rdp.iter_mut().zip(&self.orders) {
            *r += count as f64 * poisson_gaussian_rdp(q, sigma, a);
        }
    }

    /// ε at `delta` of everything composed so far.
    pub fn epsilon(&self, delta: f64) -> f64 {
        epsilon_from_rdp(&self.orders, &self.rdp, delta).0
    }
}

/// ε at `delta` of `steps` compositions of the Poisson-subsampled Gaussian.
pub fn epsilon(q: f64, sigma: f64, steps: u64, delta: f64) -> f64 {
    let mut acc = RdpAccountant::default();
    acc.compose_poisson_gaussian(q, sigma, steps);
    acc.epsilon(delta)
}

/// The smallest noise multiplier σ (to a relative 1e-6) whose `steps` compositions at
/// sampling rate `q` stay within `target` ε at `delta`; `None` when even σ = 10⁶ does not.
pub fn calibrate_sigma(q: f64, steps: u64, delta: f64, target: f64) -> Option<f64> {
    if !(target > 0.0 && target.is_finite()) {
        return None;
    }
    let over = |s: f64| epsilon(q, s, steps, delta) > target;
    let mut hi = 1.0;
    while over(hi) {
        hi *= 2.0;
        if hi > 1e6 {
            return None;
        }
    }
    let mut lo = hi / 2.0;
    while !over(lo) && lo > 1e-6 {
        hi = lo;
        lo /= 2.0;
    }
    while hi - lo > 1e-6 * hi {
        let mid = 0.5 * (lo + hi);
        if over(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}

#[cfg(test)]
mod tests {
    #[test]
    fn calibration_reaches_the_target_from_above() {
        for &(q, steps, target) in &[(0.01, 1000u64, 1.0), (0.1, 200, 8.0), (1.0, 10, 4.0)] {
            let s = calibrate_sigma(q, steps, 1e-5, target).unwrap();
            let e = epsilon(q, s, steps, 1e-5);
            assert!(
                e <= target && e > target * 0.999,
                "q={q}: σ={s} gives ε={e}"
            );
        }
        assert_eq!(calibrate_sigma(0.5, 10, 1e-5, 0.0), None);
    }

    use super::*;

    /// Integer orders by direct summation in plain arithmetic (no logs), where it does not
    /// overflow: the log-space sum agrees.
    #[test]
    fn integer_orders_match_a_direct_sum() {
        for &(q, sigma) in &[(0.01f64, 1.0f64), (0.1, 2.0), (0.5, 4.0)] {
            for alpha in 2u64..=20 {
                let mut a = 0.0f64;
                let mut binom = 1.0f64;
                for k in 0..=alpha {
                    if k > 0 {
                        binom *= (alpha - k + 1) as f64 / k as f64;
                    }
                    let kf = k as f64;
                    a += binom
                        * (1.0 - q).powi((alpha - k) as i32)
                        * q.powi(k as i32)
                        * ((kf * kf - kf) / (2.0 * sigma * sigma)).exp();
                }
                let want = a.ln() / (alpha as f64 - 1.0);
                let got = poisson_gaussian_rdp(q, sigma, alpha as f64);
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs().max(1e-300),
                    "q={q} σ={sigma} α={alpha}: {got} vs {want}"
                );
            }
        }
    }

    /// A fractional order lies between its integer neighbours (RDP is non-decreasing in α),
    /// and the series is continuous: α = 3 ± 1e-9 lands on the integer formula.
    #[test]
    fn fractional_orders_are_monotone_and_continuous() {
        for &(q, sigma) in &[(0.001, 0.8), (0.01, 1.0), (0.1, 2.0), (0.3, 0.7)] {
            let mut last = 0.0;
            for i in 11..60 {
                let alpha = i as f64 / 10.0;
                let r = poisson_gaussian_rdp(q, sigma, alpha);
                assert!(
                    r >= last * (1.0 - 1e-9),
                    "q={q} σ={sigma} α={alpha}: {r} < {last}"
                );
                last = r;
            }
            let int = poisson_gaussian_rdp(q, sigma, 3.0);
            let near = poisson_gaussian_rdp(q, sigma, 3.0 + 1e-9);
            assert!((near - int).abs() <= 1e-6 * int, "{near} vs {int}");
        }
    }

    #[test]
    fn full_sampling_is_the_gaussian_mechanism() {
        assert_eq!(poisson_gaussian_rdp(1.0, 2.0, 8.0), 1.0);
        assert_eq!(poisson_gaussian_rdp(0.0, 2.0, 8.0), 0.0);
        let mut acc = RdpAccountant::default();
        acc.compose_poisson_gaussian(0.01, 1.0, 0);
        assert_eq!(acc.epsilon(1e-5), 0.0);
    }
}
