//! Privacy accounting in zero-concentrated DP (ρ adds up under composition), reported as
//! (ε, δ) through opendp's zCDP → approximate-DP conversion.

use opendp::combinators::ConcentratedMeasure;
use opendp::measures::ZeroConcentratedDivergence;
use serde::{Deserialize, Serialize};

/// ε of a ρ-zCDP guarantee at a given δ: opendp's tight conversion, or, where opendp
/// overflows (ρ above about 5·10⁴, i.e. ε far beyond any meaningful protection), the
/// closed-form upper bound ρ + 2·√(ρ·ln(1/δ)) (Bun & Steinke 2016, Prop. 1.3).
pub fn epsilon_from_rho(rho: f64, delta: f64) -> anyhow::Result<f64> {
    anyhow::ensure!(
        rho.is_finite() && rho >= 0.0,
        "ρ must be a finite non-negative number, got {rho}"
    );
    anyhow::ensure!(
        delta > 0.0 && delta < 1.0,
        "δ must be in (0, 1), got {delta}"
    );
    if rho == 0.0 {
        return Ok(0.0);
    }
    let profile = <ZeroConcentratedDivergence as ConcentratedMeasure>::convert(rho)
        .map_err(|e| anyhow::anyhow!("opendp zCDP conversion: {e}"))?;
    match profile.epsilon(delta) {
        Ok(e) => Ok(e),
        Err(_) => Ok(rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()),
    }
}

/// One round's privacy spend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Round the client took part in.
    pub round: u64,
    /// ρ spent.
    pub rho: f64,
    /// Hash of the global model the update was computed from.
    pub base_model_hash: String,
    /// Unix seconds.
    pub at: u64,
}

/// A data owner's privacy ledger: rounds taken part in, ρ composed, budget in (ε, δ).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacyLedger {
    /// Largest ε the owner accepts.
    pub epsilon_budget: f64,
    /// δ at which ε is reported.
    pub delta: f64,
    /// Spends, in order.
    pub entries: Vec<LedgerEntry>,
}

impl PrivacyLedger {
    /// An empty ledger.
    pub fn new(epsilon_budget: f64, delta: f64) -> Self {
        Self {
            epsilon_budget,
            delta,
            entries: Vec::new(),
        }
    }

    /// Total ρ (zCDP composes additively).
    pub fn total_rho(&self) -> f64 {
        self.entries.iter().map(|e| e.rho).sum()
    }

    /// ε spent so far at the ledger's δ.
    pub fn epsilon(&self) -> anyhow::Result<f64> {
        epsilon_from_rho(self.total_rho(), self.delta)
    }

    /// ε after one more spend of `rho`.
    pub fn epsilon_after(&self, rho: f64) -> anyhow::Result<f64> {
        epsilon_from_rho(self.total_rho() + rho, self.delta)
    }

    /// Checks that spending `rho` keeps the ledger within budget.
    pub fn check(&self, rho: f64) -> Result<(), BudgetExceeded> {
        let after = self.epsilon_after(rho).unwrap_or(f64::INFINITY);
        if after > self.epsilon_budget {
            return Err(BudgetExceeded {
                spent: self.epsilon().unwrap_or(f64::INFINITY),
                after,
                budget: self.epsilon_budget,
                delta: self.delta,
            });
        }
        Ok(())
    }

    /// The entry for `round`, if already spent.
    pub fn entry(&self, round: u64, base_model_hash: &str) -> Option<&LedgerEntry> {
        self.entries
            .iter()
            .find(|e| e.round == round && e.base_model_hash == base_model_hash)
    }
}

/// The next round would take the ledger over its budget.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "privacy budget exhausted: ε spent so far {spent:.3}, the next round would bring it to \
     {after:.3} > budget {budget} (δ = {delta:e}); refusing to train. Raise --epsilon-budget \
     only if the data owner agrees, or use a larger noise multiplier"
)]
pub struct BudgetExceeded {
    /// ε spent so far.
    pub spent: f64,
    /// ε after the refused round.
    pub after: f64,
    /// Budget.
    pub budget: f64,
    /// δ.
    pub delta: f64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_rho_falls_back_to_the_closed_form_bound() {
        // opendp overflows here; the bound ρ + 2√(ρ ln 1/δ) is stated instead.
        let (rho, delta) = (1e8f64, 1e-5f64);
        let want = rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt();
        assert_eq!(epsilon_from_rho(rho, delta).unwrap(), want);
        // Below the overflow, opendp's tighter value is used and is below the bound.
        let tight = epsilon_from_rho(1e3, delta).unwrap();
        assert!(tight < 1e3 + 2.0 * (1e3 * (1.0 / delta).ln()).sqrt());
        assert!(epsilon_from_rho(f64::INFINITY, delta).is_err());
    }

    use super::*;

    #[test]
    fn conversion_is_between_known_bounds() {
        // Bun & Steinke: ε ≤ ρ + 2√(ρ ln(1/δ)); the tight conversion is below it and above ρ.
        for &(rho, delta) in &[(0.5, 1e-5), (2.0, 1e-6), (10.0, 1e-5)] {
            let eps = epsilon_from_rho(rho, delta).unwrap();
            let upper = rho + 2.0 * (rho * (1.0f64 / delta).ln()).sqrt();
            assert!(
                eps <= upper + 1e-9 && eps > rho,
                "ρ={rho}: ε={eps}, bound {upper}"
            );
        }
    }

    #[test]
    fn budget_check_refuses_overspend() {
        let mut l = PrivacyLedger::new(5.0, 1e-5);
        let rho = 0.2;
        let mut rounds = 0;
        while l.check(rho).is_ok() {
            l.entries.push(LedgerEntry {
                round: rounds + 1,
                rho,
                base_model_hash: String::new(),
                at: 0,
            });
            rounds += 1;
        }
        assert!(rounds > 0);
        assert!(l.epsilon().unwrap() <= 5.0);
        assert!(l.epsilon_after(rho).unwrap() > 5.0);
    }
}
