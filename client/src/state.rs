//! Local state that survives a client restart: the site's whole model from its last round
//! (its local parts: heads, local BatchNorm, and its own encoder for FedEMA / FedU), BYOL's
//! momentum target, FedEMA's λ, the last round the server acknowledged, and the privatized
//! update of the latest round, kept until the server has moved past that round (resending
//! the same bytes costs no privacy; noising the round again would).
//!
//! A privatized update is stored in two phases around the ledger write: first as
//! `pending-upload.bin.prepared`, then the ledger entry, then renamed to
//! `pending-upload.bin`. A crash before the ledger write leaves a prepared file that is
//! deleted on the next start (never charged, never sent); a crash after it leaves one that
//! is promoted.

use std::path::{Path, PathBuf};

use anyhow::Context;

use fedssl_ml::model::Weights;
use fedssl_protocol::{frame, Upload};

const PENDING: &str = "pending-upload.bin";
const PREPARED: &str = "pending-upload.bin.prepared";
const ACKNOWLEDGED: &str = "acknowledged.json";
/// Files that exist only after a site took part in a round.
const STATE_FILES: [&str; 7] = [
    "local-model.safetensors",
    "target.safetensors",
    "fedema-lambda.txt",
    PENDING,
    PREPARED,
    ACKNOWLEDGED,
    "global-encoder.safetensors",
];

/// The last round the server acknowledged (for detecting a rolled-back ledger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Acknowledged {
    /// Round.
    pub round: u64,
    /// Ledger entries when it was acknowledged.
    pub ledger_entries: usize,
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The state folder of one site.
#[derive(Debug, Clone)]
pub struct SiteState {
    dir: PathBuf,
}

impl SiteState {
    /// Opens (creating) the folder.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create state folder {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The site's model after its last round, if any.
    pub fn local_model(&self) -> Option<Weights> {
        self.weights("local-model")
    }

    /// Saves the site's model.
    pub fn save_local_model(&self, w: &Weights) -> anyhow::Result<()> {
        self.save_weights("local-model", w)
    }

    /// The saved momentum target (BYOL), if any.
    pub fn target(&self) -> Option<Weights> {
        self.weights("target")
    }

    /// Saves the momentum target.
    pub fn save_target(&self, w: &Weights) -> anyhow::Result<()> {
        self.save_weights("target", w)
    }

    /// FedEMA's λ, once set.
    pub fn fedema_lambda(&self) -> Option<f64> {
        let text = std::fs::read_to_string(self.dir.join("fedema-lambda.txt")).ok()?;
        text.trim().parse().ok().filter(|l: &f64| l.is_finite())
    }

    /// Saves FedEMA's λ.
    pub fn save_fedema_lambda(&self, lambda: f64) -> anyhow::Result<()> {
        Ok(fedssl_core::atomic_write(
            &self.dir.join("fedema-lambda.txt"),
            format!("{lambda}\n").as_bytes(),
        )?)
    }

    fn weights(&self, name: &str) -> Option<Weights> {
        let p = self.dir.join(format!("{name}.safetensors"));
        p.exists().then(|| Weights::load(&p).ok()).flatten()
    }

    fn save_weights(&self, name: &str, w: &Weights) -> anyhow::Result<()> {
        Ok(w.save(&self.dir.join(format!("{name}.safetensors")))?)
    }

    /// The privatized update of the latest round, if still kept.
    pub fn pending(&self) -> Option<Upload> {
        let bytes = std::fs::read(self.dir.join(PENDING)).ok()?;
        frame::decode_message::<Upload>(&bytes).ok()
    }

    /// First phase of storing a privatized update: written, not yet in force.
    pub fn prepare_pending(&self, u: &Upload) -> anyhow::Result<()> {
        let bytes = bincode::serde::encode_to_vec(u, bincode::config::standard())?;
        Ok(fedssl_core::atomic_write(&self.dir.join(PREPARED), &bytes)?)
    }

    /// Second phase, after the ledger entry is durable: the prepared update becomes the
    /// pending one.
    pub fn promote_prepared(&self) -> anyhow::Result<()> {
        std::fs::rename(self.dir.join(PREPARED), self.dir.join(PENDING))
            .context("cannot promote the prepared update")?;
        sync_dir(&self.dir);
        Ok(())
    }

    /// After a crash: promotes a prepared update whose (round, base model) the ledger
    /// charged, deletes one it did not.
    pub fn recover_prepared(&self, charged: impl Fn(u64, &str) -> bool) -> anyhow::Result<()> {
        let path = self.dir.join(PREPARED);
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok(());
        };
        match frame::decode_message::<Upload>(&bytes) {
            Ok(u) if charged(u.round, &u.base_model_hash) => {
                tracing::info!(
                    round = u.round,
                    "recovered an update privatized before a crash"
                );
                self.promote_prepared()
            }
            _ => {
                std::fs::remove_file(&path)
                    .context("cannot remove an uncharged prepared update")?;
                sync_dir(&self.dir);
                Ok(())
            }
        }
    }

    /// Forgets the pending update (the server has moved past its round).
    pub fn clear_pending(&self) {
        let _ = std::fs::remove_file(self.dir.join(PENDING));
    }

    /// The last round the server acknowledged, with the ledger's length then.
    pub fn acknowledged(&self) -> Option<Acknowledged> {
        let text = std::fs::read_to_string(self.dir.join(ACKNOWLEDGED)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Records that the server acknowledged `round` while the ledger had `ledger_entries`.
    pub fn save_acknowledged(&self, round: u64, ledger_entries: usize) -> anyhow::Result<()> {
        let a = Acknowledged {
            round,
            ledger_entries,
        };
        Ok(fedssl_core::atomic_write(
            &self.dir.join(ACKNOWLEDGED),
            serde_json::to_string(&a)?.as_bytes(),
        )?)
    }

    /// The site-state files present (what a missing ledger would be missing next to).
    pub fn state_files(&self) -> Vec<String> {
        STATE_FILES
            .iter()
            .filter(|f| self.dir.join(f).exists())
            .map(|f| f.to_string())
            .collect()
    }

    /// Saves the final global model.
    pub fn save_global(&self, w: &Weights) -> anyhow::Result<PathBuf> {
        let p = self.dir.join("global-encoder.safetensors");
        w.save(&p)?;
        Ok(p)
    }
}
