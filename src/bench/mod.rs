//! `fedssl bench`: measured speed and quality, printed as tables and written as JSON / CSV.
//! None of these is a test: they measure, they do not assert.
//!
//! - [`train`]: local SimCLR step throughput against PyTorch on the same machine.
//! - [`aggregate`]: streaming FedAvg throughput against memcpy, and memory as K grows.
//! - [`dp`]: clip + exact Gaussian noise time, against opendp and a local round.
//! - [`dpsgd`]: a DP-SGD step against Opacus, and against the non-private step.
//! - [`ssl`]: representation quality on a real dataset, centralized vs federated vs DP.
//! - [`byzantine`]: the probe under each aggregation rule with 20 % attacking sites.

pub mod aggregate;
pub mod byzantine;
pub mod dp;
pub mod dpsgd;
pub mod ssl;
pub mod table;
pub mod train;

pub use table::Table;

use std::path::Path;
use std::process::Command;

use anyhow::Context;

/// Runs a Python reference: `python script --weights W --input I --threads T` plus `args`.
/// Exit code 3 means its packages are missing (`missing` says what to do); otherwise its last
/// line of output is the JSON result.
pub fn run_python_reference<T: serde::de::DeserializeOwned>(
    python: &Path,
    script: &Path,
    (weights, input): (&Path, &Path),
    args: &[(&str, String)],
    what: &str,
    missing: &str,
) -> anyhow::Result<T> {
    anyhow::ensure!(
        script.exists(),
        "the reference script {} is missing",
        script.display()
    );
    tracing::info!(python = %python.display(), "running the {what} reference");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args(["--weights".as_ref(), weights.as_os_str()])
        .args(["--input".as_ref(), input.as_os_str()])
        .args(["--threads", &rayon::current_num_threads().to_string()]);
    for (k, v) in args {
        cmd.arg(format!("--{k}")).arg(v);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(3) {
        anyhow::bail!("{missing}: {}", python.display());
    }
    anyhow::ensure!(
        out.status.success(),
        "the {what} reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("unexpected reference output: {line}"))
}
