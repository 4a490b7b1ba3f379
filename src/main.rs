//! The `fedssl` command line.

use fedssl_ml::prelude::*;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use fedssl::bench;
use fedssl::simulate::{render_report, simulate, SimulateArgs};
use fedssl_core::federation::Federation;
use fedssl_core::read_toml;
use fedssl_ml::data::{Partition, SampleShape};
use fedssl_ml::eval::FinetuneConfig;
use fedssl_ml::model::EncoderConfig;
use fedssl_server::config::{PlanConfig, ServerConfig};
use fedssl_server::evaluate::EvalOptions;

#[derive(Parser)]
#[command(
    name = "fedssl",
    version,
    about = "Federated self-supervised learning over QUIC + mutual TLS with differential privacy"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Compute threads for training, evaluation and benchmarks (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Log lines on stderr: `text` for people (coloured only on a terminal; NO_COLOR turns
    /// colours off) or `json`, one object per line, for log collectors.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: fedssl::LogFormat,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a server and N clients on loopback (the main job), then linear-probe the result.
    Simulate(Box<SimArgs>),
    /// Benchmarks: each prints a table and writes it as JSON and CSV.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
        /// Folder for results.
        #[arg(long, global = true, default_value = "bench-results")]
        out: PathBuf,
    },
    /// Write commented configuration templates (and, for a deployment, the certificates),
    /// one folder per party.
    Init {
        #[command(subcommand)]
        cmd: InitCmd,
    },
    /// Create or extend a deployment's certificates.
    Certs {
        #[command(subcommand)]
        cmd: CertCmd,
    },
    /// Run the aggregation server.
    Server {
        /// Server configuration (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// What a run directory's state says (read-only; safe while the server runs): rounds,
    /// the open round, the latest model with its path and hash, sites, failures.
    Status {
        /// The server's run_dir, or a simulate --run-dir.
        #[arg(long)]
        run_dir: PathBuf,
        /// `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: StatusFormat,
    },
    /// Pause a running server (over its run directory's admin socket): the open round
    /// runs to its end, then no round opens until `resume`. A restart stays paused.
    Pause {
        /// The server's run_dir, or a simulate --run-dir.
        #[arg(long)]
        run_dir: PathBuf,
    },
    /// Resume a paused server.
    Resume {
        /// The server's run_dir, or a simulate --run-dir.
        #[arg(long)]
        run_dir: PathBuf,
    },
    /// Stop a running server now. Every acknowledged update is already durable; starting
    /// the server again resumes the open round.
    Stop {
        /// The server's run_dir, or a simulate --run-dir.
        #[arg(long)]
        run_dir: PathBuf,
    },
    /// Write a checkpoint's encoder for another framework: `--format torch` gives a PyTorch
    /// state dict (safetensors), a module defining the network, and reference features.
    Export {
        /// Encoder file (a server checkpoint describes its model; else pass --plan).
        #[arg(long)]
        model: PathBuf,
        /// Target format.
        #[arg(long, value_enum, default_value = "torch")]
        format: ExportFormat,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// The run's `[plan]` (only for a checkpoint that does not describe itself).
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Data to calibrate BatchNorm on (default: the modality's generated set); the
        /// reference inputs come from its test split.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Samples BatchNorm is calibrated on.
        #[arg(long, default_value_t = 2048)]
        calibration_samples: usize,
        /// Seed of the data subsets.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run a client.
    Client {
        /// Client configuration (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Start a new privacy ledger although the state folder holds this site's state
        /// (only when no earlier privacy spend belongs to its data: a new ledger starts at
        /// ε = 0).
        #[arg(long)]
        init_ledger: bool,
    },
    /// Privacy accounting of the (Poisson-subsampled) Gaussian mechanism.
    Privacy {
        #[command(subcommand)]
        cmd: PrivacyCmd,
    },
    /// Evaluate a saved encoder on labeled data: linear probe, kNN, collapse monitors,
    /// baselines and label efficiency (1%, 10%, 100% of the labels).
    Probe {
        /// Encoder file (safetensors, e.g. a server checkpoint).
        #[arg(long)]
        model: PathBuf,
        /// The run's `[plan]` as a TOML file (data shape, encoder, objective). Omitted: the
        /// model the checkpoint describes (every server checkpoint carries its spec), or for a
        /// file without one, ConvNet-S on 28×28 images with SimCLR.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Data: an IDX folder (images) or a CSV file / folder (tabular, series); omitted =
        /// the generated default dataset of the plan's modality.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Score on this separate labeled set (e.g. held-out subjects or sites): all of it,
        /// or the test split of an IDX folder; the probe still trains on --data. Its classes
        /// must be the same as the training set's.
        #[arg(long)]
        test_data: Option<PathBuf>,
        /// Labeled training samples for the probe.
        #[arg(long, default_value_t = 5000)]
        probe_train: usize,
        /// Test samples.
        #[arg(long, default_value_t = 2000)]
        probe_test: usize,
        /// Fine-tuning steps for the label-efficiency table (0 = probe only).
        #[arg(long, default_value_t = 0)]
        finetune_steps: usize,
        /// Seed of initializations, subsets and BatchNorm calibration.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// Output of `fedssl status`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum StatusFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Representation quality on a real IDX dataset: baselines, centralized and federated
    /// SSL (IID, Dirichlet 0.5 / 0.1, with DP). --quick: under 15 min on 2 cores; the full
    /// mode took 17 min with one ε (BENCHMARKS.md).
    Ssl {
        /// IDX folder (e.g. ../shared/data/fashion-mnist).
        #[arg(long)]
        data: PathBuf,
        /// The small mode (3000 pretraining images, 4 rounds).
        #[arg(long)]
        quick: bool,
        /// ε of the DP rows over the whole run, at δ = 1e-5 (comma-separated): a record-level
        /// DP-SGD row (ε per record) and a client-level row (ε per site) for each.
        #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
        dp_epsilon: Vec<f64>,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The linear probe under FedAvg, median, trimmed mean and Krum when 2 of 10 sites
    /// send sign-flipped ×10 or random updates, against each rule's clean run, on a real
    /// IDX dataset over loopback QUIC (12 federations; 7–10 min measured on 2 cores).
    Byzantine {
        /// IDX folder (e.g. ../shared/data/fashion-mnist).
        #[arg(long)]
        data: PathBuf,
        /// Sites per run.
        #[arg(long, default_value_t = 10)]
        sites: usize,
        /// Attacking sites among them.
        #[arg(long, default_value_t = 2)]
        byzantine: usize,
        /// Unlabeled training images per site.
        #[arg(long, default_value_t = 300)]
        per_site: usize,
        /// Rounds per run.
        #[arg(long, default_value_t = 5)]
        rounds: u64,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Images/s of a SimCLR training step and of forward-only, next to PyTorch.
    Train {
        /// Images per step (each as two views).
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Python interpreter with torch (default: python3).
        #[arg(long)]
        python: Option<PathBuf>,
        /// The PyTorch reference script.
        #[arg(long, default_value = "bench/pytorch_reference.py")]
        script: PathBuf,
    },
    /// One DP-SGD step of the GroupNorm ConvNet-S: fedssl's per-example kernels vs
    /// PyTorch + Opacus on the same weights and batch, and each side's non-private step.
    Dpsgd {
        /// Records per step.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Python with torch and opacus (default: a venv the bench makes under --out, with
        /// bench/requirements-opacus.txt).
        #[arg(long)]
        python: Option<PathBuf>,
        /// The Opacus reference script.
        #[arg(long, default_value = "bench/opacus_reference.py")]
        script: PathBuf,
    },
    /// Streaming FedAvg throughput against memcpy, and peak memory as K grows.
    Aggregate {
        /// Parameter counts.
        #[arg(long, value_delimiter = ',', default_values_t = vec![1_000_000usize, 10_000_000])]
        params: Vec<usize>,
        /// Numbers of updates.
        #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 10, 50, 100])]
        updates: Vec<usize>,
    },
    /// Clip + exact Gaussian noise time, fedssl's sampler vs opendp's, against one local
    /// ConvNet-S round.
    Dp {
        /// Parameter counts besides ConvNet-S's.
        #[arg(long, value_delimiter = ',', default_values_t = vec![1_000_000usize, 10_000_000])]
        params: Vec<usize>,
        /// Images in the local round (the default simulation gives each site 1500).
        #[arg(long, default_value_t = 1500)]
        round_samples: usize,
        /// Largest P opendp's sampler is timed on (it takes about a minute at 10 M).
        #[arg(long, default_value_t = 10_000_000)]
        opendp_max: usize,
    },
}

#[derive(Subcommand)]
enum PrivacyCmd {
    /// ε of T compositions of the Poisson-subsampled Gaussian mechanism (add-or-remove one
    /// element; q = 1: the plain Gaussian mechanism).
    Epsilon {
        /// Poisson sampling rate q in (0, 1].
        #[arg(long)]
        q: f64,
        /// Noise multiplier σ (noise standard deviation over the L2 sensitivity).
        #[arg(long)]
        sigma: f64,
        /// Compositions T (steps × rounds).
        #[arg(long)]
        steps: u64,
        /// δ.
        #[arg(long)]
        delta: f64,
        /// Accountant: rdp (Rényi DP, converted as dp_accounting does).
        #[arg(long, default_value = "rdp")]
        accountant: String,
        /// `text` or `json`.
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// The smallest σ whose T compositions at rate q stay within ε at δ.
    Sigma {
        /// Poisson sampling rate q in (0, 1].
        #[arg(long)]
        q: f64,
        /// Compositions T.
        #[arg(long)]
        steps: u64,
        /// δ.
        #[arg(long)]
        delta: f64,
        /// Target ε.
        #[arg(long)]
        epsilon: f64,
        /// `text` or `json`.
        #[arg(long, default_value = "text")]
        format: String,
    },
}

/// `fedssl privacy epsilon|sigma`: the answer as text or JSON.
fn privacy_command(cmd: PrivacyCmd) -> anyhow::Result<String> {
    use fedssl_privacy::rdp;
    let check = |q: f64, steps: u64, delta: f64| -> anyhow::Result<()> {
        anyhow::ensure!(q > 0.0 && q <= 1.0, "--q must be in (0, 1], got {q}");
        anyhow::ensure!(steps >= 1, "--steps must be at least 1");
        anyhow::ensure!(
            delta > 0.0 && delta < 1.0,
            "--delta must be in (0, 1), got {delta}"
        );
        Ok(())
    };
    let json = |format: &str| -> anyhow::Result<bool> {
        match format {
            "json" => Ok(true),
            "text" => Ok(false),
            f => anyhow::bail!("--format must be text or json, got {f:?}"),
        }
    };
    match cmd {
        PrivacyCmd::Epsilon {
            q,
            sigma,
            steps,
            delta,
            accountant,
            format,
        } => {
            check(q, steps, delta)?;
            anyhow::ensure!(
                sigma > 0.0 && sigma.is_finite(),
                "--sigma must be positive, got {sigma}"
            );
            anyhow::ensure!(
                accountant == "rdp",
                "--accountant {accountant:?} is not available: fedssl implements the RDP accountant (the PLD accountant is not implemented; RDP's ε is an upper bound of PLD's)"
            );
            let epsilon = rdp::epsilon(q, sigma, steps, delta);
            // opendp's zCDP figure where it applies (no subsampling).
            let opendp = (q == 1.0)
                .then(|| {
                    fedssl_privacy::epsilon_from_rho(steps as f64 / (2.0 * sigma * sigma), delta)
                })
                .transpose()?;
            if json(&format)? {
                Ok(serde_json::to_string_pretty(&serde_json::json!({
                    "epsilon": epsilon,
                    "accountant": accountant,
                    "q": q,
                    "sigma": sigma,
                    "steps": steps,
                    "delta": delta,
                    "neighbour": "add-or-remove-one",
                    "opendp_zcdp_epsilon": opendp,
                }))?)
            } else {
                let mut s = format!(
                    "ε = {epsilon:.4} at δ = {delta:e} (RDP accountant, add-or-remove one element): {steps} compositions of the Gaussian mechanism with σ = {sigma}, Poisson sampling rate q = {q}"
                );
                if let Some(o) = opendp {
                    s.push_str(&format!("\nopendp (zCDP, ρ = T/(2σ²)): ε = {o:.4}"));
                }
                Ok(s)
            }
        }
        PrivacyCmd::Sigma {
            q,
            steps,
            delta,
            epsilon,
            format,
        } => {
            check(q, steps, delta)?;
            let sigma = rdp::calibrate_sigma(q, steps, delta, epsilon).ok_or_else(|| {
                anyhow::anyhow!("no σ up to 10⁶ reaches ε = {epsilon} at δ = {delta:e}")
            })?;
            let reached = rdp::epsilon(q, sigma, steps, delta);
            if json(&format)? {
                Ok(serde_json::to_string_pretty(&serde_json::json!({
                    "sigma": sigma,
                    "epsilon": reached,
                    "target_epsilon": epsilon,
                    "accountant": "rdp",
                    "q": q,
                    "steps": steps,
                    "delta": delta,
                    "neighbour": "add-or-remove-one",
                }))?)
            } else {
                Ok(format!(
                    "σ = {sigma:.4}: {steps} compositions at q = {q} give ε = {reached:.4} ≤ {epsilon} at δ = {delta:e} (RDP accountant, add-or-remove one element)"
                ))
            }
        }
    }
}

#[derive(Subcommand)]
enum InitCmd {
    /// A CA, the server's folder and one folder per site, each with its config and
    /// certificates: copy each folder to its machine.
    Deployment {
        /// New or empty output folder.
        #[arg(long)]
        out: PathBuf,
        /// Site names, comma separated (certificate common names).
        #[arg(long, value_delimiter = ',', required = true)]
        sites: Vec<String>,
        /// Names or IPs the sites reach the server by (the first goes into the sites'
        /// server_addr and server_name; localhost and 127.0.0.1 are always added).
        #[arg(long = "server-name", num_args = 1..)]
        server_name: Vec<String>,
        /// The server's UDP port.
        #[arg(long, default_value_t = 4433)]
        port: u16,
        #[command(flatten)]
        ca: CaArgs,
    },
    /// Only server.toml (certificates: `fedssl certs init`).
    Server {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Sites a round waits for.
        #[arg(long, default_value_t = 3)]
        min_clients: usize,
        /// UDP port.
        #[arg(long, default_value_t = 4433)]
        port: u16,
    },
    /// Only client.toml for one site.
    Client {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// The site's name (its certificate's common name).
        #[arg(long)]
        name: String,
        /// The server's HOST:PORT.
        #[arg(long)]
        server_addr: String,
        /// A name in the server's certificate (default: the host of --server-addr).
        #[arg(long)]
        server_name: Option<String>,
    },
}

#[derive(Subcommand)]
enum CertCmd {
    /// Create a CA named after the deployment, a server certificate, client certificates
    /// and an empty revocation list (crl.pem).
    Init {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Server DNS names or IPs (localhost and 127.0.0.1 are always added).
        #[arg(long = "server-name", num_args = 1..)]
        server_name: Vec<String>,
        /// Client names, comma separated.
        #[arg(long, value_delimiter = ',')]
        clients: Vec<String>,
        #[command(flatten)]
        ca: CaArgs,
    },
    /// Issue one more client certificate with an existing CA.
    AddClient {
        /// Folder holding ca.pem and ca.key.
        #[arg(long)]
        dir: PathBuf,
        /// Client name.
        #[arg(long)]
        name: String,
        /// Days the certificate stays valid.
        #[arg(long, default_value_t = 365)]
        validity_days: u32,
        /// File whose first line is the CA key's passphrase (or set FEDSSL_CA_PASSPHRASE).
        #[arg(long)]
        ca_passphrase_file: Option<PathBuf>,
    },
    /// Revoke a site's certificate: adds it to the CA folder's crl.pem. Copy that file to
    /// the server's tls.crl path; a running server reloads it within seconds, refuses the
    /// site and closes its open connections.
    Revoke {
        /// Folder holding ca.pem, ca.key and the site's certificate.
        #[arg(long)]
        dir: PathBuf,
        /// The site's name.
        #[arg(long)]
        name: String,
        /// File whose first line is the CA key's passphrase (or set FEDSSL_CA_PASSPHRASE).
        #[arg(long)]
        ca_passphrase_file: Option<PathBuf>,
    },
    /// List a folder's certificates: role, name, serial, expiry, revoked or not.
    List {
        /// A certificate folder (the CA's, the server's or a site's).
        #[arg(long)]
        dir: PathBuf,
    },
}

/// How a new CA issues.
#[derive(clap::Args)]
struct CaArgs {
    /// The deployment's name: the CA is called "fedssl CA for NAME".
    #[arg(long = "deployment", default_value = "fedssl")]
    deployment: String,
    /// Days the server's and the sites' certificates stay valid (the CA: at least 10 years).
    #[arg(long, default_value_t = 365)]
    validity_days: u32,
    /// Encrypt ca.key with the passphrase on this file's first line (or set
    /// FEDSSL_CA_PASSPHRASE); every later add-client and revoke then needs it.
    #[arg(long)]
    ca_passphrase_file: Option<PathBuf>,
}

impl CaArgs {
    fn options(&self) -> anyhow::Result<fedssl_net::certs::CaOptions> {
        Ok(fedssl_net::certs::CaOptions {
            deployment: self.deployment.clone(),
            validity_days: self.validity_days,
            passphrase: ca_passphrase(self.ca_passphrase_file.as_deref())?,
        })
    }
}

/// Sends an operator's command to the server running on `run_dir` and prints its answer.
fn admin_command(
    rt: &tokio::runtime::Runtime,
    run_dir: &Path,
    cmd: fedssl_server::admin::Command,
) -> anyhow::Result<()> {
    let a = rt.block_on(fedssl_server::admin::send(run_dir, cmd))?;
    let open = a
        .open_round
        .map(|r| format!(", round {r} open"))
        .unwrap_or_default();
    anyhow::ensure!(a.ok, "the server refused: {}", a.message);
    println!(
        "{} ({} rounds committed{open})",
        a.message, a.rounds_committed
    );
    Ok(())
}

/// The CA key's passphrase: the first line of `file`, else `FEDSSL_CA_PASSPHRASE`, else none.
fn ca_passphrase(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the passphrase file {}", f.display()))?;
        let line = text.lines().next().unwrap_or("").to_string();
        anyhow::ensure!(
            !line.is_empty(),
            "{} is empty: its first line is the passphrase",
            f.display()
        );
        return Ok(Some(line));
    }
    Ok(std::env::var(fedssl_net::certs::PASSPHRASE_ENV)
        .ok()
        .filter(|p| !p.is_empty()))
}

#[derive(clap::Args)]
struct SimArgs {
    /// Serve the server's Prometheus /metrics and /healthz on this TCP address during the
    /// run (e.g. 127.0.0.1:9100).
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Simulated clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Federated rounds.
    #[arg(long, default_value_t = 8)]
    rounds: u64,
    /// Data instead of the generated set: an MNIST-style IDX folder (images), or a CSV file
    /// (tabular records; a CSV file or folder of them for time series, see docs/objectives.md).
    #[arg(long)]
    data: Option<PathBuf>,
    /// `iid` or `dirichlet:ALPHA`.
    #[arg(long, default_value = "iid")]
    partition: Partition,
    /// Run directory (default: runs/sim-<unix time>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Each site's ε budget, per record under DP-SGD, per site under client-level DP (at
    /// δ; default 10, or inf with --privacy none).
    #[arg(long)]
    epsilon_budget: Option<f64>,
    /// δ.
    #[arg(long, default_value_t = 1e-5)]
    delta: f64,
    /// Privacy mechanism: dp-sgd (record level), client-level, dp-sgd+client-level or none
    /// (default: the --plan file's, or the default plan's).
    #[arg(long)]
    privacy: Option<fedssl_privacy::plan::PrivacyMechanism>,
    /// DP-SGD: a fixed noise multiplier σ (per-step noise std over a record's sensitivity);
    /// without it each site calibrates σ to --target-epsilon (default 8).
    #[arg(long)]
    noise_multiplier: Option<f64>,
    /// DP-SGD clip norm C of one record's gradient.
    #[arg(long)]
    clip_norm: Option<f64>,
    /// DP-SGD: the ε per record each site reaches after all rounds (σ calibrated per site).
    #[arg(long)]
    target_epsilon: Option<f64>,
    /// Client-level noise multiplier z (noise std z·C on a site's whole update).
    #[arg(long)]
    client_noise_multiplier: Option<f64>,
    /// Client-level clip norm C of a site's whole update.
    #[arg(long)]
    client_clip_norm: Option<f64>,
    /// Client-level adaptive clipping toward this quantile of the update norms (e.g. 0.5):
    /// each site sends its noised indicator (σ = --clip-count-noise, default 1), charged to
    /// its ledger; the server moves C for the next round (rate --adaptive-clip-lr).
    #[arg(long)]
    client_adaptive_quantile: Option<f64>,
    /// Figures each site sends in plain numbers next to its update, outside ε, as a comma
    /// list: sample_count, loss, epsilon, train_seconds, collapse, site_eval, all, none
    /// (default none; without DP everything is sent).
    #[arg(long, default_value = "none")]
    site_report: String,
    /// Local epochs per round (default 1, or the --plan file's).
    #[arg(long)]
    local_epochs: Option<u32>,
    /// Samples (pairs, for two-view objectives) per batch (default 128, or the --plan
    /// file's).
    #[arg(long)]
    batch_size: Option<u32>,
    /// Local learning rate, Adam (default 0.001, or the --plan file's).
    #[arg(long)]
    learning_rate: Option<f64>,
    /// NT-Xent temperature of SimCLR (default 0.2, or the --plan file's; cross-modal alignment has its own: [plan.clip] temperature, default 0.1).
    #[arg(long)]
    temperature: Option<f64>,
    /// Self-supervised objective: simclr, simsiam, vicreg, byol, masked, denoising, cpc,
    /// clip, reorder (default simclr, or the --plan file's).
    #[arg(long)]
    objective: Option<fedssl_ml::ssl::ObjectiveKind>,
    /// Modality of the generated data: image (28×28 shapes), rgb (32×32 colour shapes),
    /// series (6-channel sensor windows of 64 steps), tabular (records of 16 features) or
    /// text (lines of 64 bytes about four topics).
    #[arg(long)]
    modality: Option<Modality>,
    /// Encoder: convnet-s, resnet[:WIDTH] (ResNet-18 layout, default width 16; 64 is
    /// ResNet-18), cnn1d[:WIDTH], mlp[:HIDDEN] or transformer[:DIM] (default: the
    /// modality's, or the --plan file's).
    #[arg(long)]
    encoder: Option<EncoderArg>,
    /// Normalization layers: batch or group (default: group under DP-SGD, batch otherwise).
    #[arg(long)]
    norm: Option<fedssl_ml::model::Norm>,
    /// Federated SSL algorithm: fedavg, fedema[:TAU] (default τ 0.7) or fedu[:THRESHOLD]
    /// (default 5.0; makes the predictor global).
    #[arg(long)]
    federation: Option<FederationArg>,
    /// A TOML file with the whole `[plan]` (objective, data shape, encoder, parts,
    /// augmentations, objective settings); the plan flags given with it override its
    /// values (--modality also resets its encoder to the modality's default).
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Pretraining samples in total (0 = the whole training split).
    #[arg(long, default_value_t = 0)]
    train_samples: usize,
    /// Labeled samples for the probe's training split.
    #[arg(long, default_value_t = 2000)]
    probe_train: usize,
    /// Test samples for the probe.
    #[arg(long, default_value_t = 2000)]
    probe_test: usize,
    /// Seconds after which a round closes with the updates that arrived.
    #[arg(long, default_value_t = 600.0)]
    round_deadline: f64,
    /// The server probes the global model every this many rounds (0 = only at the end;
    /// collapse monitors run every round).
    #[arg(long, default_value_t = 2)]
    eval_every: u64,
    /// Labeled samples each site keeps for federated evaluation (0 = none).
    #[arg(long, default_value_t = 100)]
    site_labels: usize,
    /// Federated evaluation every this many rounds (0 = never).
    #[arg(long, default_value_t = 4)]
    federated_eval_every: u64,
    /// Fine-tuning steps for the label-efficiency table (0 = probe only; fine-tuning and the
    /// supervised baseline train ConvNet-S once per label fraction).
    #[arg(long, default_value_t = 0)]
    finetune_steps: usize,
    /// How the sites share the cores: `serial` (one site trains at a time, on every core)
    /// or `split` (cores divided among the sites, which train side by side).
    #[arg(long, default_value = "serial")]
    schedule: fedssl_client::Schedule,
    /// Central DP at the server (DP-FedAvg): the noise multiplier z on the sum of clipped
    /// updates. The sites' updates reach the server un-noised unless the plan also noises
    /// them, so the ε it reports holds only if the server is honest.
    #[arg(long)]
    central_noise_multiplier: Option<f64>,
    /// Central DP: the (initial) clip bound of a site's update.
    #[arg(long, default_value_t = 0.1)]
    central_clip_norm: f64,
    /// Central DP: the Poisson rate at which each site is selected per round.
    #[arg(long, default_value_t = 1.0)]
    central_sample_rate: f64,
    /// Central DP: adaptive clipping toward this quantile of the update norms (e.g. 0.5).
    #[arg(long)]
    adaptive_clip_quantile: Option<f64>,
    /// Adaptive clipping's geometric learning rate.
    #[arg(long, default_value_t = 0.2)]
    adaptive_clip_lr: f64,
    /// Adaptive clipping: the noise standard deviation on the count of sites within the
    /// bound (default: expected sites per round / 20, as Andrew et al. suggest).
    #[arg(long)]
    clip_count_noise: Option<f64>,
    /// Seed of the plan (model init, views, noise) and of the evaluation (default 1, or
    /// the --plan file's).
    #[arg(long)]
    seed: Option<u64>,
}

/// The round plan of `simulate`: the `--plan` file's (or the default plan), with every plan
/// flag given on the command line overriding it.
fn simulate_plan(a: &SimArgs) -> anyhow::Result<PlanConfig> {
    let mut plan = match &a.plan {
        Some(path) => read_toml(path, "plan")?,
        None => PlanConfig::default(),
    };
    fn given<T: Copy>(flag: Option<T>, field: &mut T) {
        if let Some(v) = flag {
            *field = v;
        }
    }
    given(a.learning_rate, &mut plan.learning_rate);
    given(a.temperature, &mut plan.temperature);
    given(a.privacy, &mut plan.privacy.mechanism);
    given(a.clip_norm, &mut plan.privacy.clip_norm);
    if a.noise_multiplier.is_some() {
        plan.privacy.noise_multiplier = a.noise_multiplier;
    }
    if a.target_epsilon.is_some() {
        plan.privacy.target_epsilon = a.target_epsilon;
        plan.privacy.noise_multiplier = None;
    }
    given(a.client_clip_norm, &mut plan.privacy.client.clip_norm);
    given(
        a.client_noise_multiplier,
        &mut plan.privacy.client.noise_multiplier,
    );
    if let Some(q) = a.client_adaptive_quantile {
        plan.privacy.client.adaptive = Some(fedssl_server::config::AdaptiveClipConfig {
            target_quantile: q,
            learning_rate: a.adaptive_clip_lr,
            count_noise_multiplier: a.clip_count_noise.unwrap_or(1.0),
        });
    }
    given(a.local_epochs, &mut plan.local_epochs);
    given(a.batch_size, &mut plan.batch_size);
    given(a.seed, &mut plan.seed);
    given(a.objective, &mut plan.objective);
    if a.norm.is_some() {
        plan.norm = a.norm;
    }
    if let Some(m) = a.modality {
        plan.data = m.shape();
        plan.encoder = None;
    }
    if let Some(EncoderArg(e)) = a.encoder {
        plan.encoder = Some(e);
    }
    if let Some(FederationArg(f)) = a.federation {
        plan.federation = f;
        if matches!(f, Federation::FedU { .. }) {
            plan.parts.predictor = fedssl_ml::model::Placement::Global;
        }
    }
    Ok(plan)
}

/// The final evaluation of `simulate` and `probe`: probe, kNN, baselines, and label
/// efficiency at 1%, 10% and 100% of the labels (fine-tuned too when `finetune_steps > 0`).
fn eval_options(finetune_steps: usize, seed: u64) -> EvalOptions {
    EvalOptions {
        label_fractions: vec![0.01, 0.1, 1.0],
        finetune: (finetune_steps > 0).then(|| FinetuneConfig {
            steps: finetune_steps,
            ..FinetuneConfig::default()
        }),
        seed,
        ..EvalOptions::default()
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    fedssl::init(cli.log_format);
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .context("cannot size the compute thread pool")?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Simulate(a) => {
            let run_dir = a
                .run_dir
                .clone()
                .unwrap_or_else(|| fedssl::simulate::fresh_run_dir("sim"));
            let plan = simulate_plan(&a)?;
            let eval = Some(eval_options(a.finetune_steps, plan.seed));
            let args = SimulateArgs {
                clients: a.clients,
                rounds: a.rounds,
                data: a.data,
                partition: a.partition,
                run_dir: run_dir.clone(),
                device: a.device,
                epsilon_budget: a.epsilon_budget.unwrap_or(
                    if plan.privacy.mechanism.is_private() {
                        10.0
                    } else {
                        f64::INFINITY
                    },
                ),
                delta: a.delta,
                site_report: fedssl_client::config::ReportConfig::parse_list(&a.site_report)?,
                plan,
                train_samples: a.train_samples,
                probe_train: a.probe_train,
                probe_test: a.probe_test,
                round_deadline_secs: a.round_deadline,
                eval_every: a.eval_every,
                site_labels: a.site_labels,
                federated_eval_every: a.federated_eval_every,
                eval,
                progress: true,
                schedule: a.schedule,
                metrics_listen: a.metrics_listen,
                central_dp: a.central_noise_multiplier.map(|z| {
                    fedssl_server::config::CentralDpConfig {
                        noise_multiplier: z,
                        clip_norm: a.central_clip_norm,
                        sample_rate: a.central_sample_rate,
                        adaptive: a.adaptive_clip_quantile.map(|q| {
                            fedssl_server::config::AdaptiveClipConfig {
                                target_quantile: q,
                                learning_rate: a.adaptive_clip_lr,
                                count_noise_multiplier: a.clip_count_noise.unwrap_or(
                                    (a.central_sample_rate * a.clients as f64 / 20.0).max(1e-3),
                                ),
                            }
                        }),
                    }
                }),
            };
            let summary = rt.block_on(simulate(args))?;
            println!("{}", render_report(&summary, &run_dir));
        }
        Cmd::Bench { cmd, out, .. } => {
            let (table, stem) = match cmd {
                BenchCmd::Ssl {
                    data,
                    quick,
                    dp_epsilon,
                    seed,
                } => {
                    if !quick {
                        eprintln!("bench ssl (full mode): 10 000 pretraining images, 5 rounds per row, 10 000 labeled and 10 000 test images; measured 17 min on 2 cores with --dp-epsilon 8 (see BENCHMARKS.md; --quick: under 15 minutes)");
                    }
                    let cfg = bench::ssl::SslBench {
                        data,
                        scale: if quick {
                            bench::ssl::SslScale::quick()
                        } else {
                            bench::ssl::SslScale::full()
                        },
                        out: out.join(if quick {
                            "ssl-quick-runs"
                        } else {
                            "ssl-full-runs"
                        }),
                        seed,
                        dp_epsilons: dp_epsilon,
                    };
                    let t = rt.block_on(bench::ssl::run(&cfg))?;
                    (t, if quick { "ssl-quick" } else { "ssl-full" })
                }
                BenchCmd::Byzantine {
                    data,
                    sites,
                    byzantine,
                    per_site,
                    rounds,
                    seed,
                } => {
                    let cfg = bench::byzantine::ByzantineBench {
                        data,
                        sites,
                        byzantine,
                        per_site,
                        rounds,
                        labeled: 5000,
                        test: 2000,
                        out: out.join("byzantine-runs"),
                        seed,
                    };
                    (rt.block_on(bench::byzantine::run(&cfg))?, "byzantine")
                }
                BenchCmd::Train {
                    batch,
                    steps,
                    python,
                    script,
                } => {
                    let t = bench::train::run(&bench::train::TrainBench {
                        batch,
                        steps,
                        warmup: 2,
                        forward_batches: 20,
                        python,
                        script,
                        out: out.clone(),
                    })?;
                    (t, "train")
                }
                BenchCmd::Dpsgd {
                    batch,
                    steps,
                    python,
                    script,
                } => {
                    let t = bench::dpsgd::run(&bench::dpsgd::DpSgdBench {
                        batch,
                        steps,
                        warmup: 2,
                        python,
                        script,
                        requirements: PathBuf::from("bench/requirements-opacus.txt"),
                        out: out.clone(),
                    })?;
                    (t, "dpsgd")
                }
                BenchCmd::Aggregate { params, updates } => {
                    (bench::aggregate::run(&params, &updates)?, "aggregate")
                }
                BenchCmd::Dp {
                    params,
                    round_samples,
                    opendp_max,
                } => {
                    let mut p = vec![fedssl_ml::model::ModelSpec::default()
                        .initial_global(0)
                        .map_err(anyhow::Error::msg)?
                        .num_params()];
                    p.extend(params);
                    (bench::dp::run(&p, round_samples, opendp_max)?, "dp")
                }
            };
            println!("{}", table.render());
            let (json, csv) = table.write(&out, stem)?;
            println!("written: {} and {}", json.display(), csv.display());
        }
        Cmd::Status { run_dir, format } => {
            let s = fedssl_server::status::read(&run_dir)?;
            match format {
                StatusFormat::Text => {
                    let now = fedssl_server::endpoint::unix_now() as i64;
                    print!("{}", s.render(now));
                }
                StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&s)?),
            }
        }
        Cmd::Export {
            model,
            format: ExportFormat::Torch,
            out,
            plan,
            data,
            calibration_samples,
            seed,
        } => {
            let e = fedssl::export::export_torch(
                &model,
                plan.as_deref(),
                data.as_deref(),
                calibration_samples,
                &out,
                seed,
            )?;
            println!(
                "wrote {}: encoder.safetensors ({} tensors, {} parameters{}), fedssl_encoder.py, reference.safetensors, README.md",
                e.out.display(),
                e.tensors,
                e.parameters,
                if e.calibrated_on > 0 {
                    format!(", BatchNorm calibrated on {} samples", e.calibrated_on)
                } else {
                    String::new()
                }
            );
        }
        Cmd::Pause { run_dir } => {
            admin_command(&rt, &run_dir, fedssl_server::admin::Command::Pause)?
        }
        Cmd::Resume { run_dir } => {
            admin_command(&rt, &run_dir, fedssl_server::admin::Command::Resume)?
        }
        Cmd::Stop { run_dir } => admin_command(&rt, &run_dir, fedssl_server::admin::Command::Stop)?,
        Cmd::Init { cmd } => match cmd {
            InitCmd::Deployment {
                out,
                sites,
                server_name,
                port,
                ca,
            } => {
                let dirs = fedssl::init::deployment(
                    &out,
                    &fedssl::init::Deployment {
                        sites,
                        server_names: server_name,
                        port,
                        ca: ca.options()?,
                    },
                )?;
                println!("deployment written to {}:", out.display());
                println!("  {}  the CA: keep ca.key offline; `fedssl certs add-client --dir {}` issues more, `certs revoke` shuts a site out", dirs[0].display(), dirs[0].display());
                println!(
                    "  {}  copy to the server, then: fedssl server --config server.toml",
                    dirs[1].display()
                );
                for d in &dirs[2..] {
                    println!(
                        "  {}  copy to the site, then: fedssl client --config client.toml",
                        d.display()
                    );
                }
            }
            InitCmd::Server {
                out,
                min_clients,
                port,
            } => {
                let p = fedssl::init::server(&out, min_clients, port)?;
                println!("{} written; put ca.pem, server.pem, server.key and crl.pem beside it (fedssl certs init)", p.display());
            }
            InitCmd::Client {
                out,
                name,
                server_addr,
                server_name,
            } => {
                let host = server_name.unwrap_or_else(|| {
                    server_addr
                        .rsplit_once(':')
                        .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
                        .unwrap_or_else(|| server_addr.clone())
                });
                let p = fedssl::init::client(&out, &name, &server_addr, &host)?;
                println!(
                    "{} written; put ca.pem, client-{name}.pem and client-{name}.key beside it",
                    p.display()
                );
            }
        },
        Cmd::Certs { cmd } => {
            match cmd {
                CertCmd::Init {
                    out,
                    server_name,
                    clients,
                    ca,
                } => {
                    let opts = ca.options()?;
                    fedssl_net::certs::init_with(&out, &server_name, &clients, &opts)?;
                    println!(
                    "certificates for deployment `{}` written to {} (valid {} days; private keys mode 0600{}); crl.pem revokes none yet",
                    opts.deployment,
                    out.display(),
                    opts.validity_days,
                    if opts.passphrase.is_some() { ", ca.key encrypted" } else { "" }
                );
                }
                CertCmd::AddClient {
                    dir,
                    name,
                    validity_days,
                    ca_passphrase_file,
                } => {
                    let pass = ca_passphrase(ca_passphrase_file.as_deref())?;
                    fedssl_net::certs::add_client(&dir, &name, validity_days, pass.as_deref())?;
                    println!(
                        "issued client certificate for `{name}` in {} (valid {validity_days} days)",
                        dir.display()
                    );
                }
                CertCmd::Revoke {
                    dir,
                    name,
                    ca_passphrase_file,
                } => {
                    let pass = ca_passphrase(ca_passphrase_file.as_deref())?;
                    let r = fedssl_net::certs::revoke(&dir, &name, pass.as_deref())?;
                    let crl = dir.join(fedssl_net::certs::CRL);
                    if r.already {
                        println!("`{name}` (serial {}) was already revoked; {} re-signed as CRL number {}", r.serial, crl.display(), r.crl_number);
                    } else {
                        println!("revoked `{name}` (serial {}); {} now revokes {} certificate(s), CRL number {}", r.serial, crl.display(), r.revoked, r.crl_number);
                    }
                    println!("copy it to the server's tls.crl path: a running server reloads it within 2 s and closes the site's connections");
                }
                CertCmd::List { dir } => {
                    let now = fedssl_server::endpoint::unix_now() as i64;
                    let rows = fedssl_net::certs::list(&dir)?;
                    anyhow::ensure!(
                        !rows.is_empty(),
                        "{} holds no certificate (*.pem)",
                        dir.display()
                    );
                    println!(
                        "{:<7} {:<32} {:<12} {:<22} status",
                        "role", "name", "expires", "serial"
                    );
                    for (c, revoked) in rows {
                        let days = c.days_left(now);
                        let status = if revoked {
                            "REVOKED".to_string()
                        } else if c.is_expired(now) {
                            "EXPIRED".to_string()
                        } else if days < fedssl_net::certs::EXPIRY_WARNING_DAYS {
                            format!("expires in {days} days: renew")
                        } else {
                            format!("valid, {days} days left")
                        };
                        let serial = fedssl_net::certs::hex_serial(&c.serial);
                        let short = serial.get(..20).unwrap_or(&serial);
                        println!(
                            "{:<7} {:<32} {:<12} {:<22} {status}",
                            c.role,
                            c.common_name,
                            fedssl_net::certs::date(c.not_after),
                            format!("{short}…")
                        );
                    }
                }
            }
        }
        Cmd::Server { config } => {
            let mut cfg: ServerConfig = read_toml(&config, "server config")?;
            cfg.resolve_paths(&fedssl_core::config_dir(&config));
            std::fs::create_dir_all(&cfg.run_dir)?;
            fedssl_core::atomic_write(
                &cfg.run_dir.join("config.toml"),
                toml::to_string_pretty(&cfg)?.as_bytes(),
            )?;
            let report = rt.block_on(fedssl_server::run_server(
                cfg,
                fedssl_server::ServerOptions {
                    progress: Some(fedssl::progress()),
                    ..Default::default()
                },
            ))?;
            if report.stopped_by_operator {
                println!(
                    "server stopped by the operator after {} committed rounds (model {}); start it again with the same config to continue",
                    report.rounds_completed, report.final_hash
                );
            } else {
                println!(
                    "server done: {} rounds committed, final model {}",
                    report.rounds_completed, report.final_hash
                );
            }
        }
        Cmd::Privacy { cmd } => println!("{}", privacy_command(cmd)?),
        Cmd::Client {
            config,
            init_ledger,
        } => match rt.block_on(fedssl_client::session::run_from_file(
            &config,
            init_ledger,
            Some(fedssl::progress()),
        )) {
            Ok(report) => println!("{}", serde_json::to_string_pretty(&report)?),
            Err(e) => {
                eprintln!("Error: {e:#}");
                std::process::exit(fedssl_client::failure::exit_code(&e).into());
            }
        },
        Cmd::Probe {
            model,
            plan,
            data,
            test_data,
            probe_train,
            probe_test,
            finetune_steps,
            seed,
        } => {
            let w = fedssl_ml::model::Weights::load(&model)?;
            let spec = fedssl::export::checkpoint_spec(&model, plan.as_deref())?;
            let splits = fedssl_ml::data::load_splits(data.as_deref(), spec.shape, seed)?;
            let test = match &test_data {
                Some(path) => {
                    let t = fedssl_ml::data::load_test_set(path, spec.shape)?;
                    anyhow::ensure!(
                        t.num_classes == splits.train.num_classes,
                        "{}: {} classes, the training set has {}; a probe can only score a test set with the same classes (CSV labels are numbered in sorted order per file, so both files need the same label values)",
                        path.display(),
                        t.num_classes,
                        splits.train.num_classes
                    );
                    t
                }
                None => splits.test,
            };
            let r = fedssl_server::evaluate::evaluate(
                &spec,
                &w,
                &splits.train.take(probe_train),
                &test.take(probe_test),
                &eval_options(finetune_steps, seed),
            )?;
            println!("{}", fedssl_server::evaluate::render_eval(&r));
        }
    }
    Ok(())
}

/// `export --format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    /// PyTorch: state dict (safetensors) + module + reference features.
    Torch,
}

/// `--modality`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Modality {
    /// 28×28 grayscale images.
    Image,
    /// 32×32 RGB images.
    Rgb,
    /// 6-channel windows of 64 steps.
    Series,
    /// Records of 16 features.
    Tabular,
    /// Lines of 64 bytes.
    Text,
    /// 28×28 grayscale images with captions of 64 bytes (objective clip).
    ImageText,
}

impl Modality {
    fn shape(self) -> SampleShape {
        match self {
            Self::Image => SampleShape::GRAY_28,
            Self::Rgb => SampleShape::Image {
                channels: 3,
                height: 32,
                width: 32,
            },
            Self::Text => SampleShape::Text {
                length: fedssl_ml::data::topics::LENGTH,
            },
            Self::ImageText => fedssl_ml::data::captions::SHAPE,
            Self::Series => SampleShape::Series {
                channels: fedssl_ml::data::sensors::CHANNELS,
                length: fedssl_ml::data::sensors::LENGTH,
            },
            Self::Tabular => SampleShape::Tabular {
                features: fedssl_ml::data::records::FEATURES,
            },
        }
    }
}

/// Splits a `NAME[:VALUE]` argument and parses its value.
fn name_and_value<T: std::str::FromStr>(s: &str) -> Result<(&str, Option<T>), String>
where
    T::Err: std::fmt::Display,
{
    match s.split_once(':') {
        Some((n, v)) => Ok((n, Some(v.parse::<T>().map_err(|e| format!("{s}: {e}"))?))),
        None => Ok((s, None)),
    }
}

/// `--encoder NAME[:WIDTH]`.
#[derive(Debug, Clone, Copy)]
struct EncoderArg(EncoderConfig);

impl std::str::FromStr for EncoderArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, width) = name_and_value::<usize>(s)?;
        let e = match name {
            "convnet-s" if width.is_none() => EncoderConfig::ConvnetS,
            "resnet" => EncoderConfig::Resnet {
                width: width.unwrap_or(16),
            },
            "cnn1d" => EncoderConfig::Cnn1d {
                width: width.unwrap_or(32),
            },
            "mlp" => EncoderConfig::Mlp {
                hidden: width.unwrap_or(256),
            },
            "transformer" => EncoderConfig::Transformer {
                dim: width.unwrap_or(64),
                layers: 2,
                heads: 4,
            },
            other => {
                return Err(format!(
                    "unknown encoder {other:?} (expected convnet-s, resnet[:WIDTH], cnn1d[:WIDTH], mlp[:HIDDEN] or transformer[:DIM])"
                ))
            }
        };
        Ok(Self(e))
    }
}

/// `--federation fedavg | fedema[:TAU] | fedu[:THRESHOLD]`.
#[derive(Debug, Clone, Copy)]
struct FederationArg(Federation);

impl std::str::FromStr for FederationArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, value) = name_and_value::<f64>(s)?;
        let f = match name {
            "fedavg" => Federation::FedAvg,
            "fedema" => Federation::FedEma {
                tau: value.unwrap_or(0.7),
            },
            "fedu" => Federation::FedU {
                threshold: value.unwrap_or(5.0),
            },
            other => {
                return Err(format!(
                "unknown federation {other:?} (expected fedavg, fedema[:TAU] or fedu[:THRESHOLD])"
            ))
            }
        };
        f.validate()?;
        Ok(Self(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim_args(args: &[&str]) -> SimArgs {
        let mut argv = vec!["fedssl", "simulate"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).map(|c| c.cmd) {
            Ok(Cmd::Simulate(a)) => *a,
            _ => panic!("not a simulate command line: {args:?}"),
        }
    }

    #[test]
    fn plan_flags_override_the_plan_file_and_default_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plan.toml");
        std::fs::write(
            &file,
            "objective = \"byol\"\nbatch_size = 64\nlocal_epochs = 5\nseed = 7\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let plan = simulate_plan(&sim_args(&["--plan", path])).unwrap();
        assert_eq!((plan.batch_size, plan.local_epochs, plan.seed), (64, 5, 7));
        assert_eq!(plan.objective, fedssl_ml::ssl::ObjectiveKind::Byol);
        let plan = simulate_plan(&sim_args(&[
            "--plan",
            path,
            "--batch-size",
            "32",
            "--seed",
            "9",
            "--clip-norm",
            "2.5",
        ]))
        .unwrap();
        assert_eq!((plan.batch_size, plan.local_epochs, plan.seed), (32, 5, 9));
        assert_eq!(plan.privacy.clip_norm, 2.5);
        // Without a file, the plan holds the defaults the flags' help texts state.
        let plan = simulate_plan(&sim_args(&[])).unwrap();
        assert_eq!((plan.batch_size, plan.local_epochs, plan.seed), (128, 1, 1));
        assert_eq!((plan.learning_rate, plan.temperature), (1e-3, 0.2));
        assert_eq!(plan.privacy, PlanConfig::default().privacy);
        let plan = simulate_plan(&sim_args(&[
            "--privacy",
            "client-level",
            "--client-noise-multiplier",
            "0.5",
        ]))
        .unwrap();
        assert_eq!(plan.privacy.mechanism.name(), "client-level");
        assert_eq!(plan.privacy.client.noise_multiplier, 0.5);
        assert!(simulate_plan(&sim_args(&["--plan", "/nonexistent/plan.toml"])).is_err());
    }
}
