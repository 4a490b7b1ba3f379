//! Local state that survives a client restart: the site's whole model from its last round
//! (its local parts: heads, local BatchNorm, and its own encoder for FedEMA / FedU), BYOL's
//! momentum target, FedEMA's λ, and an update that was privatized but not yet acknowledged
//! (resending it costs no privacy).

use std::path::{Path, PathBuf};

use anyhow::Context;

use fedssl_common::model::Weights;
use fedssl_common::protocol::{frame, Upload};

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
        Ok(fedssl_common::atomic_write(
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

    /// The privatized update awaiting acknowledgement, if any.
    pub fn pending(&self) -> Option<Upload> {
        let bytes = std::fs::read(self.dir.join("pending-upload.bin")).ok()?;
        frame::decode_message::<Upload>(&bytes).ok()
    }

    /// Stores a privatized update before it is sent.
    pub fn save_pending(&self, u: &Upload) -> anyhow::Result<()> {
        let bytes = bincode::serde::encode_to_vec(u, bincode::config::standard())?;
        Ok(fedssl_common::atomic_write(
            &self.dir.join("pending-upload.bin"),
            &bytes,
        )?)
    }

    /// Forgets the pending update once the server acknowledged it.
    pub fn clear_pending(&self) {
        let _ = std::fs::remove_file(self.dir.join("pending-upload.bin"));
    }

    /// Saves the final global model.
    pub fn save_global(&self, w: &Weights) -> anyhow::Result<PathBuf> {
        let p = self.dir.join("global-encoder.safetensors");
        w.save(&p)?;
        Ok(p)
    }
}
