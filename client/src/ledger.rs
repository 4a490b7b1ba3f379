//! The site's privacy ledger on disk, failing closed.
//!
//! The ledger (`privacy-ledger.json`, written atomically with fsync) is the site's only
//! memory of what it has spent. Opening it refuses to go on, with what to do, when:
//! - another process holds the state folder (an exclusive lock on `.lock`, held for the
//!   process's life): two clients on one folder would each spend and one write would win;
//! - the ledger is missing while the folder holds other site state: a deleted ledger would
//!   restart ε at 0 (a first start is an empty folder, or `fedssl client --init-ledger`);
//! - the ledger is older than the site's last acknowledged round, or lacks the round of a
//!   pending upload (it was restored from an older copy);
//! - the configured δ differs from the δ pinned in the ledger when it was created (raising δ
//!   would lower the ε reported for the past).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;

use fedssl_privacy::ledger::{LedgerEntry, PrivacyLedger};

use crate::state::SiteState;

/// A ledger bound to its file, with the state folder locked.
#[derive(Debug)]
pub struct LedgerStore {
    path: PathBuf,
    /// The ledger.
    pub ledger: PrivacyLedger,
    /// Held for as long as the store lives; the lock goes with it.
    _lock: File,
}

/// Why the ledger cannot be used; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Another process holds the state folder.
    #[error("another fedssl client is using the state folder {0} (it holds {0}/.lock); run one client per state folder, or stop the other one")]
    Locked(String),
    /// The ledger is missing where other site state exists.
    #[error("{ledger} is missing, but {dir} holds this site's state ({files}): starting a new ledger would restart ε at 0 and forget what the site already spent. Restore the ledger from a backup. Only if no earlier privacy spend belongs to this data, start a new one with `fedssl client --init-ledger`")]
    Missing {
        /// The ledger's path.
        ledger: String,
        /// The state folder.
        dir: String,
        /// The state files found.
        files: String,
    },
    /// δ differs from the pinned one.
    #[error("the ledger {path} pins δ = {pinned:e} (set when it was created); the config asks for δ = {configured:e}. δ cannot change once privacy was spent at it: set delta = {pinned:e} in the client config")]
    DeltaChanged {
        /// The ledger's path.
        path: String,
        /// δ in the ledger.
        pinned: f64,
        /// δ in the config.
        configured: f64,
    },
    /// The ledger is older than what the site knows it spent.
    #[error("the ledger {path} is older than this site's state: {why}. It was probably restored from an older copy, which would under-report ε. Restore the newest ledger; refusing to train")]
    RolledBack {
        /// The ledger's path.
        path: String,
        /// What gave it away.
        why: String,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] anyhow::Error),
}

impl LedgerStore {
    /// File name inside the state folder.
    pub const FILE: &'static str = "privacy-ledger.json";
    /// Lock file inside the state folder.
    pub const LOCK: &'static str = ".lock";

    /// Locks the state folder and opens its ledger, creating one at `delta` when the folder
    /// holds no site state yet or when `init` says so explicitly.
    pub fn open(state: &SiteState, delta: f64, init: bool) -> Result<Self, LedgerError> {
        let dir = state.dir();
        let lock = lock_folder(dir)?;
        let path = dir.join(Self::FILE);
        let shown = || path.display().to_string();
        let ledger = if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", shown()))?;
            PrivacyLedger::parse(&text).with_context(|| {
                format!(
                    "{} is corrupt; refusing to train without knowing past privacy spend (restore it from a backup)",
                    shown()
                )
            })?
        } else {
            let files = state.state_files();
            if !files.is_empty() && !init {
                return Err(LedgerError::Missing {
                    ledger: shown(),
                    dir: dir.display().to_string(),
                    files: files.join(", "),
                });
            }
            if !files.is_empty() {
                tracing::warn!(files = %files.join(", "), "starting a new privacy ledger next to existing site state, as --init-ledger asked");
            }
            let fresh = PrivacyLedger::new(delta, unix_now());
            save(&path, &fresh)?;
            fresh
        };
        if ledger.delta != delta {
            return Err(LedgerError::DeltaChanged {
                path: shown(),
                pinned: ledger.delta,
                configured: delta,
            });
        }
        if let Some(ack) = state.acknowledged() {
            if ack.round > ledger.last_round() || ack.ledger_entries > ledger.entries.len() {
                return Err(LedgerError::RolledBack {
                    path: shown(),
                    why: format!(
                        "the server acknowledged this site's update for round {} when the ledger held {} entries, but the ledger's last round is {} with {} entries",
                        ack.round,
                        ack.ledger_entries,
                        ledger.last_round(),
                        ledger.entries.len()
                    ),
                });
            }
        }
        state.recover_prepared(|round, base| {
            ledger
                .entry(round)
                .is_some_and(|e| e.base_model_hash == base)
        })?;
        if let Some(p) = state.pending() {
            if ledger.entry(p.round).is_none() {
                return Err(LedgerError::RolledBack {
                    path: shown(),
                    why: format!(
                        "an update for round {} was privatized and kept to send, but the ledger has no entry for that round",
                        p.round
                    ),
                });
            }
        }
        Ok(Self {
            path,
            ledger,
            _lock: lock,
        })
    }

    /// Records a spend and makes it durable (before anything derived from it may leave).
    pub fn record(&mut self, entry: LedgerEntry) -> anyhow::Result<()> {
        self.ledger.entries.push(entry);
        save(&self.path, &self.ledger)
    }
}

fn save(path: &Path, ledger: &PrivacyLedger) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(ledger)?;
    fedssl_core::atomic_write(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn lock_folder(dir: &Path) -> Result<File, LedgerError> {
    let path = dir.join(LedgerStore::LOCK);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(LedgerError::Locked(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(anyhow::Error::new(e)
            .context(format!("cannot lock {}", path.display()))
            .into()),
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedssl_privacy::ledger::Release;

    fn entry(round: u64) -> LedgerEntry {
        LedgerEntry {
            round,
            base_model_hash: format!("m{round}"),
            at: 0,
            releases: vec![Release {
                what: "update".into(),
                bounds: vec![],
            }],
        }
    }

    #[test]
    fn a_second_process_on_the_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = SiteState::open(dir.path()).unwrap();
        let first = LedgerStore::open(&state, 1e-5, false).unwrap();
        let e = LedgerStore::open(&state, 1e-5, false).unwrap_err();
        assert!(matches!(e, LedgerError::Locked(_)), "{e}");
        drop(first);
        LedgerStore::open(&state, 1e-5, false).unwrap();
    }

    #[test]
    fn a_deleted_ledger_is_not_restarted_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let state = SiteState::open(dir.path()).unwrap();
        {
            let mut l = LedgerStore::open(&state, 1e-5, false).unwrap();
            l.record(entry(1)).unwrap();
            state.save_fedema_lambda(2.0).unwrap();
        }
        std::fs::remove_file(dir.path().join(LedgerStore::FILE)).unwrap();
        let e = LedgerStore::open(&state, 1e-5, false).unwrap_err();
        assert!(
            matches!(e, LedgerError::Missing { .. }) && e.to_string().contains("--init-ledger"),
            "{e}"
        );
        // Explicitly asked: a new ledger.
        let l = LedgerStore::open(&state, 1e-5, true).unwrap();
        assert!(l.ledger.entries.is_empty());
    }

    #[test]
    fn delta_is_pinned_at_creation() {
        let dir = tempfile::tempdir().unwrap();
        let state = SiteState::open(dir.path()).unwrap();
        drop(LedgerStore::open(&state, 1e-5, false).unwrap());
        let e = LedgerStore::open(&state, 1e-3, false).unwrap_err();
        assert!(
            matches!(e, LedgerError::DeltaChanged { .. }) && e.to_string().contains("delta = 1e-5"),
            "{e}"
        );
    }

    #[test]
    fn a_rolled_back_ledger_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = SiteState::open(dir.path()).unwrap();
        let path = dir.path().join(LedgerStore::FILE);
        let old = {
            let mut l = LedgerStore::open(&state, 1e-5, false).unwrap();
            l.record(entry(1)).unwrap();
            let old = std::fs::read(&path).unwrap();
            l.record(entry(2)).unwrap();
            state.save_acknowledged(2, l.ledger.entries.len()).unwrap();
            old
        };
        std::fs::write(&path, old).unwrap();
        let e = LedgerStore::open(&state, 1e-5, false).unwrap_err();
        assert!(matches!(e, LedgerError::RolledBack { .. }), "{e}");
    }
}
