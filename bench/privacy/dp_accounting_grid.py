#!/usr/bin/env python3
"""Reference ε of the Poisson-subsampled Gaussian mechanism from Google's dp_accounting.

Writes one CSV row per (q, σ, T, δ) of the grid the privacy issue names, with ε from
dp_accounting's RDP accountant (default orders) and its PLD accountant (default
discretization), under the add-or-remove-one neighbour relation, and a third figure that
needs neither: the RDP of every default order by numerical integration of the likelihood
ratio's α-th moment (mpmath quadrature at 30 digits), converted to ε by dp_accounting's
compute_epsilon. dp_accounting drops the fractional orders whose series does not converge
in 1000 terms (it logs "failed to converge" at q = 0.1, σ ≤ 1); the quadrature keeps them.
fedssl's Rust accountant is checked against this file by `tests/privacy_accountant.rs`;
fedssl never calls this code.

    python -m venv /tmp/dpref && /tmp/dpref/bin/pip install -r bench/privacy/requirements.txt
    /tmp/dpref/bin/python bench/privacy/dp_accounting_grid.py > tests/data/dp_accounting_grid.csv
"""
import csv
import sys

import mpmath

import dp_accounting
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant, privacy_loss_mechanism
from dp_accounting.rdp import rdp_privacy_accountant

QS = [0.001, 0.01, 0.1, 1.0]
SIGMAS = [0.5, 0.8, 1.0, 2.0, 4.0]
STEPS = [1, 10, 100, 1000, 10000]
DELTAS = [1e-5, 1e-6]


def event(q, sigma, steps):
    g = dp_event.GaussianDpEvent(sigma)
    one = g if q == 1.0 else dp_event.PoissonSampledDpEvent(q, g)
    return dp_event.SelfComposedDpEvent(one, steps)


def quadrature_rdp(q, sigma, alpha):
    """RDP at order alpha of the Poisson-subsampled Gaussian, by numerical integration of
    E_{z~N(0,σ²)}[((1-q) + q·exp((2z-1)/(2σ²)))^alpha] (Mironov, Talwar, Zhang 2019, eq. 3)."""
    if q == 1.0:
        return alpha / (2 * sigma ** 2)
    a = mpmath.mpf(alpha)
    s = mpmath.mpf(sigma)

    def moment(z):
        return mpmath.npdf(z, 0, s) * ((1 - q) + q * mpmath.exp((2 * z - 1) / (2 * s * s))) ** a

    # The integrand's mass sits near 0 and, for large alpha, near alpha (the tilted mean).
    points = sorted({-mpmath.inf, -40 * s, 0, mpmath.mpf(0.5), 1, a / 2, a, 2 * a, a + 40 * s, mpmath.inf})
    return float(mpmath.log(mpmath.quad(moment, points)) / (a - 1))


def tight_epsilon(delta_for_epsilon, delta):
    """The smallest ε with δ(ε) ≤ delta, by bisection (δ(ε) decreases in ε)."""
    lo, hi = 0.0, 1.0
    while delta_for_epsilon(hi) > delta:
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if delta_for_epsilon(mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def main():
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["q", "sigma", "steps", "delta", "rdp_epsilon", "pld_epsilon",
                "quadrature_rdp_epsilon"])
    orders = rdp_privacy_accountant.DEFAULT_RDP_ORDERS
    for q in QS:
        for sigma in SIGMAS:
            curve = [quadrature_rdp(q, sigma, a) for a in orders]
            for steps in STEPS:
                rdp = rdp_privacy_accountant.RdpAccountant()
                rdp.compose(event(q, sigma, steps))
                if q == 1.0:
                    # T Gaussians of noise multiplier σ are exactly one of σ/√T, whose
                    # δ(ε) dp_accounting computes in closed form; its discretized PLD of
                    # that Gaussian needs more memory than a 24 GiB machine has at σ = 0.5
                    # and T ≥ 1000 (measured: 8 GiB and growing).
                    loss = privacy_loss_mechanism.GaussianPrivacyLoss(
                        sigma / steps ** 0.5, sensitivity=1.0)
                    pld_eps = lambda d: tight_epsilon(loss.get_delta_for_epsilon, d)
                else:
                    pld = pld_privacy_accountant.PLDAccountant()
                    pld.compose(event(q, sigma, steps))
                    pld_eps = pld.get_epsilon
                for delta in DELTAS:
                    quad_eps, _ = rdp_privacy_accountant.compute_epsilon(
                        orders, [steps * r for r in curve], delta)
                    w.writerow([q, sigma, steps, delta,
                                repr(float(rdp.get_epsilon(delta))),
                                repr(float(pld_eps(delta))),
                                repr(float(quad_eps))])
                sys.stdout.flush()
    print("dp_accounting grid written", file=sys.stderr)


if __name__ == "__main__":
    main()
