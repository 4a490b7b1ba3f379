//! The site's privacy ledger, persisted as JSON (atomically) in the state folder.

use std::path::{Path, PathBuf};

use anyhow::Context;

use fedssl_common::dp::accountant::{LedgerEntry, PrivacyLedger};

/// A ledger bound to its file.
#[derive(Debug)]
pub struct LedgerStore {
    path: PathBuf,
    /// The ledger.
    pub ledger: PrivacyLedger,
}

impl LedgerStore {
    /// File name inside the state folder.
    pub const FILE: &'static str = "privacy-ledger.json";

    /// Opens the ledger in `dir`, creating an empty one. The budget and δ come from the
    /// configuration; past spends always count.
    pub fn open(dir: &Path, epsilon_budget: f64, delta: f64) -> anyhow::Result<Self> {
        let path = dir.join(Self::FILE);
        let mut ledger = if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str::<PrivacyLedger>(&text).with_context(|| {
                format!(
                    "{} is corrupt; refusing to train without knowing past privacy spend",
                    path.display()
                )
            })?
        } else {
            PrivacyLedger::new(epsilon_budget, delta)
        };
        ledger.epsilon_budget = epsilon_budget;
        ledger.delta = delta;
        Ok(Self { path, ledger })
    }

    /// Records a spend and makes it durable before anything is sent.
    pub fn record(&mut self, round: u64, rho: f64, base_model_hash: &str) -> anyhow::Result<()> {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.ledger.entries.push(LedgerEntry {
            round,
            rho,
            base_model_hash: base_model_hash.to_string(),
            at,
        });
        self.save()
    }

    fn save(&self) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.ledger)?;
        fedssl_common::atomic_write(&self.path, text.as_bytes())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}
