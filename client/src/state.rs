//! Local state that survives a client restart: the projector (local part of the model) and
//! an update that was privatized but not yet acknowledged (resending it costs no privacy).

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

    /// The saved projector, if any.
    pub fn projector(&self) -> Option<Weights> {
        self.head("projector")
    }

    /// Saves the projector.
    pub fn save_projector(&self, w: &Weights) -> anyhow::Result<()> {
        self.save_head("projector", w)
    }

    /// The saved predictor (objectives with one), if any.
    pub fn predictor(&self) -> Option<Weights> {
        self.head("predictor")
    }

    /// Saves the predictor.
    pub fn save_predictor(&self, w: &Weights) -> anyhow::Result<()> {
        self.save_head("predictor", w)
    }

    fn head(&self, name: &str) -> Option<Weights> {
        let p = self.dir.join(format!("{name}.safetensors"));
        p.exists().then(|| Weights::load(&p).ok()).flatten()
    }

    fn save_head(&self, name: &str, w: &Weights) -> anyhow::Result<()> {
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
