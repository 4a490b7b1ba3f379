//! `fedssl-common`: everything the server and the clients must agree on.
//!
//! - [`protocol`]: wire messages, length-prefixed framing, named-tensor payloads.
//! - [`kernels`]: fast CPU kernels (convolution, BatchNorm + ReLU) as a burn backend extension.
//! - [`model`]: the encoders (ConvNet-S, 1-D CNN, MLP), the objectives' heads, the model a
//!   site trains with its global and local parts, and conversion to/from [`model::Weights`].
//! - [`ssl`]: the self-supervised objectives behind one trait, and augmentations per modality.
//! - [`federation`]: the federated SSL algorithms' settings (FedAvg, FedEMA, FedU).
//! - [`dp`]: L2 clipping, opendp's exact Gaussian mechanism, zCDP accounting.
//! - [`aggregate`]: streaming FedAvg.
//! - [`data`]: sample shapes, generated images / sensor windows / records, the IDX and CSV
//!   readers, partitioning.
//! - [`net`]: certificates, rustls/quinn configuration, framed stream I/O.
//! - [`eval`]: feature extraction, linear probe, kNN, collapse monitors, fine-tuning.
//! - [`config`]: configuration types shared by the command line, server and client.
//! - [`device`]: compute device selection with a CUDA driver probe.

pub mod aggregate;
pub mod config;
pub mod data;
pub mod device;
pub mod dp;
pub mod eval;
pub mod federation;
pub mod kernels;
pub mod model;
pub mod net;
pub mod protocol;
pub mod ssl;
pub mod strategy;

/// Version of the wire protocol; peers with a different value refuse each other.
pub const PROTOCOL_VERSION: u32 = 9;
/// Version of this software, sent in the handshake for diagnostics.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Writes `data` to `path` atomically: a temporary file in the same folder, fsync, rename,
/// then fsync of the folder, so a crash leaves either the old or the new file, never a mix.
pub fn atomic_write(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
