//! What a privacy ledger holds: every release a site made, described as events any
//! accountant can recompute (mechanism, noise multiplier, sampling rate, steps, clip bound,
//! privacy unit, neighbour relation), and the (ε, δ) they add up to per privacy unit.
//!
//! One round's upload is one [`Release`]. A release may carry several bounds for the same
//! unit; each is a valid bound on the same output, so the unit's Rényi curve for the release
//! is their pointwise minimum. Example: DP-SGD followed by client-level noise gives a record
//! the DP-SGD bound (the client-level noise is post-processing) and also the client-level
//! bound at sensitivity 2C (a record moves a clipped update by at most 2C); the smaller
//! counts. Releases compose by adding their curves.

use serde::{Deserialize, Serialize};

use super::rdp;

/// Whose privacy an ε is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    /// One record of a site (a patient, an image, a recording window).
    Record,
    /// A whole site (all of its records).
    Site,
}

impl Unit {
    /// `"record"` or `"site"`.
    pub fn name(&self) -> &'static str {
        match self {
            Unit::Record => "record",
            Unit::Site => "site",
        }
    }

    /// The neighbour relation every ε of this unit is stated under: datasets that differ
    /// by adding or removing one record (one site).
    pub fn neighbour(&self) -> &'static str {
        match self {
            Unit::Record => "add-or-remove one record",
            Unit::Site => "add-or-remove one site",
        }
    }
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which datasets count as neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Neighbour {
    /// One dataset has one more element (record or site) than the other.
    #[default]
    AddOrRemoveOne,
}

impl Neighbour {
    /// `"add-or-remove-one"`.
    pub fn name(&self) -> &'static str {
        "add-or-remove-one"
    }
}

/// How ε is computed from the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AccountantKind {
    /// Rényi DP of the (Poisson-subsampled) Gaussian, composed, converted as dp_accounting.
    #[default]
    Rdp,
}

impl AccountantKind {
    /// `"rdp"`.
    pub fn name(&self) -> &'static str {
        "rdp"
    }
}

/// The mechanism an event describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MechanismKind {
    /// Per-record clipped, Poisson-sampled, noised gradient steps on the site.
    DpSgd,
    /// The whole update clipped and noised by the site.
    ClientLevel,
    /// The noised indicator "my update was within the clip bound" of adaptive clipping.
    ClipCount,
    /// Central DP at the server: the noised sum of clipped site updates (with adaptive
    /// clipping, jointly with the noised count), on a Poisson sample of sites.
    CentralDp,
    /// Version-1 ledgers stored zCDP ρ only; converted to the Gaussian of the same ρ.
    LegacyZcdp,
}

/// `steps` compositions of the Gaussian mechanism with noise multiplier
/// `noise_multiplier` (noise standard deviation over L2 sensitivity), each on a Poisson
/// sample of rate `sampling_rate` of the unit's elements (1 = no sampling), as a bound for
/// privacy unit `unit` under `neighbour`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GaussianEvent {
    /// Which mechanism produced it.
    pub mechanism: MechanismKind,
    /// Whose privacy the bound is about.
    pub unit: Unit,
    /// The neighbour relation of the bound.
    pub neighbour: Neighbour,
    /// Noise standard deviation divided by the L2 sensitivity for `unit`.
    pub noise_multiplier: f64,
    /// Poisson sampling rate q (1 when every element takes part).
    pub sampling_rate: f64,
    /// Compositions.
    pub steps: u64,
    /// The clip bound C the sensitivity derives from (for the record).
    pub clip_norm: f64,
}

impl GaussianEvent {
    /// One release of the Gaussian mechanism on the whole of the unit's data (no sampling,
    /// one step), add-or-remove-one neighbours: client-level noise, a noised count, a
    /// central-DP round (whose sampling the caller sets).
    pub fn single(
        mechanism: MechanismKind,
        unit: Unit,
        noise_multiplier: f64,
        clip_norm: f64,
    ) -> Self {
        Self {
            mechanism,
            unit,
            neighbour: Neighbour::AddOrRemoveOne,
            noise_multiplier,
            sampling_rate: 1.0,
            steps: 1,
            clip_norm,
        }
    }

    /// The event's Rényi curve at `orders`.
    fn rdp_curve(&self, orders: &[f64]) -> Vec<f64> {
        orders
            .iter()
            .map(|&a| {
                self.steps as f64
                    * rdp::poisson_gaussian_rdp(self.sampling_rate, self.noise_multiplier, a)
            })
            .collect()
    }
}

/// One release from a site, with every bound known for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// What was released (e.g. `"update"`, `"clip-count"`).
    pub what: String,
    /// Bounds on this release; per unit the smallest holds.
    pub bounds: Vec<GaussianEvent>,
}

impl Release {
    /// The release's Rényi curve for `unit`, or `None` when no bound covers that unit.
    fn rdp_curve(&self, unit: Unit, orders: &[f64]) -> Option<Vec<f64>> {
        self.bounds
            .iter()
            .filter(|b| b.unit == unit)
            .map(|b| b.rdp_curve(orders))
            .reduce(|a, b| a.iter().zip(&b).map(|(x, y)| x.min(*y)).collect())
    }
}

/// What one round cost a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Round.
    pub round: u64,
    /// Hash of the global model the release was computed from.
    pub base_model_hash: String,
    /// Unix seconds.
    pub at: u64,
    /// What left the site in that round.
    pub releases: Vec<Release>,
}

/// Current ledger file format.
pub const LEDGER_FORMAT: u32 = 2;

/// A site's privacy ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacyLedger {
    /// File format ([`LEDGER_FORMAT`]).
    pub format: u32,
    /// δ of every ε this ledger reports, pinned when the ledger was created.
    pub delta: f64,
    /// Unix seconds of creation.
    pub created_at: u64,
    /// Spends, in order.
    pub entries: Vec<LedgerEntry>,
}

/// ε of one unit: `None` when some release did not protect that unit at all.
pub type UnitEpsilon = Option<f64>;

impl PrivacyLedger {
    /// An empty ledger at `delta`.
    pub fn new(delta: f64, created_at: u64) -> Self {
        Self {
            format: LEDGER_FORMAT,
            delta,
            created_at,
            entries: Vec::new(),
        }
    }

    /// ε for `unit` at the ledger's δ, of everything spent plus `extra` (a planned round);
    /// `None` when a release does not protect the unit; 0 with no releases.
    pub fn epsilon_with(&self, unit: Unit, extra: &[Release]) -> UnitEpsilon {
        let orders = rdp::default_orders();
        let mut total = vec![0.0; orders.len()];
        let releases = self.entries.iter().flat_map(|e| &e.releases).chain(extra);
        for r in releases {
            let curve = r.rdp_curve(unit, &orders)?;
            total.iter_mut().zip(curve).for_each(|(t, c)| *t += c);
        }
        Some(rdp::epsilon_from_rdp(&orders, &total, self.delta).0)
    }

    /// ε for `unit` of everything spent so far.
    pub fn epsilon(&self, unit: Unit) -> UnitEpsilon {
        self.epsilon_with(unit, &[])
    }

    /// Checks that spending `extra` keeps `unit`'s ε within `budget`.
    pub fn check(&self, unit: Unit, extra: &[Release], budget: f64) -> Result<(), BudgetExceeded> {
        let after = self.epsilon_with(unit, extra).unwrap_or(f64::INFINITY);
        if after > budget {
            return Err(BudgetExceeded {
                unit,
                spent: self.epsilon(unit).unwrap_or(f64::INFINITY),
                after,
                budget,
                delta: self.delta,
            });
        }
        Ok(())
    }

    /// The entry for `round`, if that round was spent.
    pub fn entry(&self, round: u64) -> Option<&LedgerEntry> {
        self.entries.iter().find(|e| e.round == round)
    }

    /// The last round spent (0 if none).
    pub fn last_round(&self) -> u64 {
        self.entries.iter().map(|e| e.round).max().unwrap_or(0)
    }

    /// Parses a ledger file of any known format (version 1 stored zCDP ρ per round; each
    /// becomes a Gaussian event with the same ρ: σ = 1/√(2ρ), unit site).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        if value.get("format").is_some() {
            let ledger: Self = serde_json::from_value(value)?;
            anyhow::ensure!(
                ledger.format == LEDGER_FORMAT,
                "ledger format {} is newer than this program understands ({LEDGER_FORMAT}); use a newer fedssl",
                ledger.format
            );
            anyhow::ensure!(
                ledger.delta > 0.0 && ledger.delta < 1.0,
                "the ledger's δ {} is not in (0, 1)",
                ledger.delta
            );
            return Ok(ledger);
        }
        let v1: LedgerV1 = serde_json::from_value(value)?;
        Ok(Self {
            format: LEDGER_FORMAT,
            delta: v1.delta,
            created_at: v1.entries.first().map(|e| e.at).unwrap_or(0),
            entries: v1
                .entries
                .into_iter()
                .map(|e| LedgerEntry {
                    round: e.round,
                    base_model_hash: e.base_model_hash,
                    at: e.at,
                    releases: vec![Release {
                        what: "update".into(),
                        bounds: [Unit::Site, Unit::Record]
                            .into_iter()
                            .map(|unit| {
                                // ρ = 1/(2σ²) at the site; a record moves the clipped
                                // update by up to 2C, halving σ.
                                let z = (0.5 / e.rho.max(1e-300)).sqrt()
                                    / if unit == Unit::Record { 2.0 } else { 1.0 };
                                GaussianEvent::single(MechanismKind::LegacyZcdp, unit, z, 0.0)
                            })
                            .collect(),
                    }],
                })
                .collect(),
        })
    }
}

#[derive(Deserialize)]
struct LedgerV1 {
    delta: f64,
    entries: Vec<LedgerEntryV1>,
}

#[derive(Deserialize)]
struct LedgerEntryV1 {
    round: u64,
    rho: f64,
    base_model_hash: String,
    at: u64,
}

/// The next round would take the ledger over its budget.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "privacy budget exhausted: ε per {unit} spent so far {spent:.3}, the next round would bring it to \
     {after:.3} > budget {budget} (δ = {delta:e}, RDP accountant, add-or-remove-one {unit}); refusing \
     to train. Raise epsilon_budget only if the data owner agrees, or ask for more noise"
)]
pub struct BudgetExceeded {
    /// The unit whose budget would be exceeded.
    pub unit: Unit,
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
    use super::*;

    fn dpsgd(sigma: f64, q: f64, steps: u64) -> GaussianEvent {
        GaussianEvent {
            mechanism: MechanismKind::DpSgd,
            unit: Unit::Record,
            neighbour: Neighbour::AddOrRemoveOne,
            noise_multiplier: sigma,
            sampling_rate: q,
            steps,
            clip_norm: 1.0,
        }
    }

    fn entry(round: u64, bounds: Vec<GaussianEvent>) -> LedgerEntry {
        LedgerEntry {
            round,
            base_model_hash: String::new(),
            at: 0,
            releases: vec![Release {
                what: "update".into(),
                bounds,
            }],
        }
    }

    #[test]
    fn rounds_compose_like_one_long_run() {
        let mut l = PrivacyLedger::new(1e-5, 0);
        for r in 1..=10 {
            l.entries.push(entry(r, vec![dpsgd(1.0, 0.01, 100)]));
        }
        let mut acc = rdp::RdpAccountant::default();
        acc.compose_poisson_gaussian(0.01, 1.0, 1000);
        let e = l.epsilon(Unit::Record).unwrap();
        assert!((e - acc.epsilon(1e-5)).abs() < 1e-9, "{e}");
        // DP-SGD alone protects no site.
        assert_eq!(l.epsilon(Unit::Site), None);
    }

    #[test]
    fn the_smaller_bound_of_a_release_counts() {
        let mut l = PrivacyLedger::new(1e-5, 0);
        let weak = GaussianEvent {
            mechanism: MechanismKind::ClientLevel,
            noise_multiplier: 0.1,
            sampling_rate: 1.0,
            steps: 1,
            ..dpsgd(0.0, 0.0, 0)
        };
        l.entries.push(entry(1, vec![dpsgd(1.0, 0.01, 100), weak]));
        let both = l.epsilon(Unit::Record).unwrap();
        let mut only = PrivacyLedger::new(1e-5, 0);
        only.entries.push(entry(1, vec![dpsgd(1.0, 0.01, 100)]));
        assert!(both <= only.epsilon(Unit::Record).unwrap() + 1e-12);
    }

    #[test]
    fn budget_check_refuses_overspend() {
        let mut l = PrivacyLedger::new(1e-5, 0);
        let round = |r| entry(r, vec![dpsgd(1.0, 0.01, 100)]);
        let mut rounds = 0;
        while l
            .check(Unit::Record, &round(rounds + 1).releases, 5.0)
            .is_ok()
        {
            rounds += 1;
            l.entries.push(round(rounds));
        }
        assert!(rounds > 0);
        assert!(l.epsilon(Unit::Record).unwrap() <= 5.0);
        let e = l.check(Unit::Record, &round(99).releases, 5.0).unwrap_err();
        assert!(e.after > 5.0 && e.to_string().contains("per record"), "{e}");
    }

    #[test]
    fn version_one_ledgers_keep_their_spend() {
        let text = r#"{"epsilon_budget": 10.0, "delta": 1e-5, "entries": [
            {"round": 1, "rho": 0.125, "base_model_hash": "ab", "at": 5}]}"#;
        let l = PrivacyLedger::parse(text).unwrap();
        assert_eq!(l.entries.len(), 1);
        let want = {
            let mut a = rdp::RdpAccountant::default();
            a.compose_poisson_gaussian(1.0, 2.0, 1);
            a.epsilon(1e-5)
        };
        assert!((l.epsilon(Unit::Site).unwrap() - want).abs() < 1e-9);
        assert!(PrivacyLedger::parse(
            "{\"format\": 9, \"delta\": 1e-5, \"created_at\": 0, \"entries\": []}"
        )
        .is_err());
    }
}
