//! The `fedssl` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use fedssl::simulate::{render_report, simulate, SimulateArgs};
use fedssl_common::config::{PlanConfig, ServerConfig};
use fedssl_common::data::Partition;
use fedssl_common::eval::FinetuneConfig;
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
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a server and N clients on loopback (the main job), then linear-probe the result.
    Simulate(Box<SimArgs>),
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
    /// Run a client.
    Client {
        /// Client configuration (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Evaluate a saved encoder on labeled data: linear probe, kNN, collapse monitors,
    /// baselines and label efficiency (1%, 10%, 100% of the labels).
    Probe {
        /// Encoder file (safetensors, e.g. a server checkpoint).
        #[arg(long)]
        model: PathBuf,
        /// IDX folder; omitted = the generated default dataset.
        #[arg(long)]
        data: Option<PathBuf>,
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

#[derive(Subcommand)]
enum CertCmd {
    /// Create a CA, a server certificate and client certificates.
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
    },
    /// Issue one more client certificate with an existing CA.
    AddClient {
        /// Folder holding ca.pem and ca.key.
        #[arg(long)]
        dir: PathBuf,
        /// Client name.
        #[arg(long)]
        name: String,
    },
}

#[derive(clap::Args)]
struct SimArgs {
    /// Simulated clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Federated rounds.
    #[arg(long, default_value_t = 8)]
    rounds: u64,
    /// MNIST-style IDX folder instead of the generated default dataset.
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
    /// Each site's ε budget (at δ).
    #[arg(long, default_value_t = 1e7)]
    epsilon_budget: f64,
    /// δ.
    #[arg(long, default_value_t = 1e-5)]
    delta: f64,
    /// Noise multiplier z (noise std z·C on each client's whole update).
    #[arg(long, default_value_t = 0.01)]
    noise_multiplier: f64,
    /// L2 clip norm C of each client's update.
    #[arg(long, default_value_t = 1.0)]
    clip_norm: f64,
    /// Local epochs per round.
    #[arg(long, default_value_t = 1)]
    local_epochs: u32,
    /// Pairs per batch.
    #[arg(long, default_value_t = 128)]
    batch_size: u32,
    /// Local learning rate (Adam).
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// NT-Xent temperature.
    #[arg(long, default_value_t = 0.2)]
    temperature: f64,
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
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
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

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn,quinn_proto=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    init_logging();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Simulate(a) => {
            let run_dir = a.run_dir.clone().unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                PathBuf::from(format!("runs/sim-{t}"))
            });
            let args = SimulateArgs {
                clients: a.clients,
                rounds: a.rounds,
                data: a.data,
                partition: a.partition,
                run_dir: run_dir.clone(),
                device: a.device,
                epsilon_budget: a.epsilon_budget,
                delta: a.delta,
                plan: PlanConfig {
                    local_epochs: a.local_epochs,
                    batch_size: a.batch_size,
                    learning_rate: a.learning_rate,
                    temperature: a.temperature,
                    clip_norm: a.clip_norm,
                    noise_multiplier: a.noise_multiplier,
                    seed: a.seed,
                },
                train_samples: a.train_samples,
                probe_train: a.probe_train,
                probe_test: a.probe_test,
                round_deadline_secs: a.round_deadline,
                eval_every: a.eval_every,
                site_labels: a.site_labels,
                federated_eval_every: a.federated_eval_every,
                eval: eval_options(a.finetune_steps, a.seed),
                progress: true,
            };
            let summary = rt.block_on(simulate(args))?;
            println!("{}", render_report(&summary, &run_dir));
        }
        Cmd::Certs { cmd } => match cmd {
            CertCmd::Init {
                out,
                server_name,
                clients,
            } => {
                fedssl_common::net::certs::init(&out, &server_name, &clients)?;
                println!(
                    "certificates written to {} (private keys mode 0600)",
                    out.display()
                );
            }
            CertCmd::AddClient { dir, name } => {
                fedssl_common::net::certs::add_client(&dir, &name)?;
                println!(
                    "issued client certificate for `{name}` in {}",
                    dir.display()
                );
            }
        },
        Cmd::Server { config } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("cannot read server config {}", config.display()))?;
            let cfg: ServerConfig = toml::from_str(&text)
                .with_context(|| format!("{} is not a valid server config", config.display()))?;
            std::fs::create_dir_all(&cfg.run_dir)?;
            fedssl_common::atomic_write(
                &cfg.run_dir.join("config.toml"),
                toml::to_string_pretty(&cfg)?.as_bytes(),
            )?;
            let report = rt.block_on(fedssl_server::run_server(
                cfg,
                fedssl_server::ServerOptions {
                    progress: true,
                    ..Default::default()
                },
            ))?;
            println!(
                "server done: {} rounds committed, final model {}",
                report.rounds_completed, report.final_hash
            );
        }
        Cmd::Client { config } => {
            let report = rt.block_on(fedssl_client::session::run_from_file(&config))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Cmd::Probe {
            model,
            data,
            probe_train,
            probe_test,
            finetune_steps,
            seed,
        } => {
            let w = fedssl_common::model::Weights::load(&model)?;
            let splits = fedssl_common::data::load_splits(data.as_deref(), seed)?;
            let r = fedssl_server::evaluate::evaluate(
                &w,
                &splits.train.take(probe_train),
                &splits.test.take(probe_test),
                &eval_options(finetune_steps, seed),
            )?;
            println!("{}", fedssl_server::evaluate::render_eval(&r));
        }
    }
    Ok(())
}
