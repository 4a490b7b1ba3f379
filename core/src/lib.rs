//! `fedssl-core`: what every other crate builds on. No async runtime, network, ML backend
//! or DP library.
//!
//! - [`weights`]: model weights as named `f32` tensors (arithmetic, hash, safetensors files).
//! - [`spec`]: the description of a run's model, objective, sample shape and views.
//! - [`federation`]: the federated SSL algorithms' settings (FedAvg, FedEMA, FedU).
//! - [`device`]: compute device selection with a CUDA driver probe.
//! - [`atomic_write`]: crash-safe file replacement.

pub mod device;
pub mod federation;
pub mod spec;
pub mod weights;

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

/// Makes a relative `path` relative to `base` (the folder of the config file that named
/// it), so a config works from any working directory; absolute paths stay as they are.
pub fn resolve_path(base: &std::path::Path, path: &mut std::path::PathBuf) {
    if path.is_relative() && !path.as_os_str().is_empty() {
        *path = base.join(&*path);
    }
}

/// The folder of a config file, for [`resolve_path`] (the working directory for a bare
/// file name).
pub fn config_dir(config: &std::path::Path) -> std::path::PathBuf {
    match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}

/// Reads and parses a TOML file (a server or client config, a plan); `what` names it in
/// the error, with the file's path.
pub fn read_toml<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    what: &str,
) -> anyhow::Result<T> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a valid {what}", path.display()))
}
