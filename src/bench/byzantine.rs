//! `fedssl bench byzantine`: what 20 % Byzantine sites do to the learned representation
//! under each aggregation rule, on a real IDX dataset over loopback QUIC.
//!
//! Every run is a real federation: the server (`run_server`), the honest sites
//! (`run_client`) and the attackers connect over QUIC with mutual TLS on 127.0.0.1. An
//! attacker trains like an honest site, then sends `−10 ×` its update (sign flip) or a
//! random Gaussian direction at 10 × its update's norm. Each rule runs once clean and once
//! per attack on the same data, seeds and plan; the final encoder of every run is scored by
//! the same linear probe and kNN on the same labeled and test images.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::SeedableRng;
use rand_distr::Distribution;
use tracing::info;

use fedssl_client::config::{ClientConfig, ClientData};
use fedssl_core::device::ComputeDevice;
use fedssl_ml::data::{idx, partition::partition, Dataset, Partition};
use fedssl_net::{certs, io, tls::TlsFiles};
use fedssl_privacy::plan::{PrivacyMechanism, PrivacyPlan};
use fedssl_protocol::{ClientMsg, Hello, ModelPayload, ServerMsg, SiteReport, Upload};
use fedssl_server::config::{PlanConfig, ServerConfig};
use fedssl_server::evaluate::{evaluate, EvalOptions};
use fedssl_server::strategy::config::{StrategyConfig, StrategyKind};

use super::table::{machine, num, pct, Table};

/// What a Byzantine site sends instead of its update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// −10 × its honest update.
    SignFlip,
    /// A random Gaussian direction scaled to 10 × its honest update's norm (the runs have
    /// no DP clip bound, so the attacker's norm is tied to the honest scale instead).
    Random,
}

impl Attack {
    /// The table's name of the attack.
    pub fn label(self) -> &'static str {
        match self {
            Attack::SignFlip => "sign flip ×10",
            Attack::Random => "random, 10 × norm",
        }
    }
}

/// A site that follows the protocol and trains like an honest one, then sends what
/// `attack` says instead of its update. Returns when the server says the run is finished.
pub async fn attacker(
    addr: SocketAddr,
    files: &TlsFiles,
    name: &str,
    data: Dataset,
    attack: Attack,
    seed: u64,
) -> anyhow::Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let crypto = fedssl_net::tls::client_crypto(files)?;
    let ep = fedssl_net::endpoint::client(addr, crypto, Default::default())?;
    let conn = ep.connect(addr, "localhost")?.await?;
    let max = fedssl_protocol::DEFAULT_MAX_FRAME;
    let t = Duration::from_secs(3600);
    let hello = ClientMsg::Hello(Hello {
        protocol_version: fedssl_protocol::PROTOCOL_VERSION,
        software_version: fedssl_protocol::SOFTWARE_VERSION.into(),
        capabilities: vec![],
        claimed_name: name.into(),
        num_samples: None,
    });
    let (resp, _) = io::request(&conn, &hello, max, t).await?;
    anyhow::ensure!(
        matches!(resp, ServerMsg::Welcome(_)),
        "{name}: not welcomed: {resp:?}"
    );
    let mut after = 0;
    loop {
        let (resp, _) =
            io::request(&conn, &ClientMsg::NextTask { after_round: after }, max, t).await?;
        match resp {
            ServerMsg::Task(task) => {
                let global = task.model.decode(&task.model.declared_spec())?;
                let (g, plan, d) = (global.clone(), task.plan.clone(), data.clone());
                let out = tokio::task::spawn_blocking(move || {
                    fedssl_client::trainer::train(
                        ComputeDevice::Cpu,
                        fedssl_client::trainer::TrainJob {
                            global: &g,
                            local: None,
                            target: None,
                            lambda: None,
                            data: &d,
                            plan: &plan,
                            site_seed: 7,
                            dp_sgd: None,
                            progress: None,
                        },
                    )
                })
                .await??;
                let mut update = out.global.sub(&global)?;
                match attack {
                    Attack::SignFlip => update.scale(-10.0),
                    Attack::Random => {
                        let norm = update.l2_norm();
                        for t in &mut update.tensors {
                            for v in &mut t.values {
                                *v = rand_distr::StandardNormal.sample(&mut rng);
                            }
                        }
                        let r = update.l2_norm();
                        update.scale((10.0 * norm / r) as f32);
                    }
                }
                let up = Upload {
                    round: task.round,
                    nonce: task.nonce,
                    base_model_hash: task.model.hash.clone(),
                    update: ModelPayload::from_weights(&update),
                    report: SiteReport::default(),
                };
                let (resp, _) =
                    io::request(&conn, &ClientMsg::Upload(Box::new(up)), max, t).await?;
                anyhow::ensure!(
                    matches!(resp, ServerMsg::UploadAccepted { .. }),
                    "{name}: upload not accepted: {resp:?}"
                );
                after = task.round;
            }
            ServerMsg::Wait { retry_after_ms } => {
                tokio::time::sleep(Duration::from_millis(retry_after_ms.max(50))).await
            }
            ServerMsg::Finished { .. } => return Ok(()),
            other => anyhow::bail!("{name}: unexpected answer {other:?}"),
        }
    }
}

/// Settings of the benchmark.
#[derive(Debug, Clone)]
pub struct ByzantineBench {
    /// IDX folder (e.g. `../shared/data/fashion-mnist`).
    pub data: PathBuf,
    /// Sites in each run.
    pub sites: usize,
    /// How many of them attack (the first ones).
    pub byzantine: usize,
    /// Unlabeled training images per site (IID shards of the training split).
    pub per_site: usize,
    /// Rounds.
    pub rounds: u64,
    /// Labeled images the probe trains on, and test images it is scored on.
    pub labeled: usize,
    /// Test images.
    pub test: usize,
    /// Where the runs go.
    pub out: PathBuf,
    /// Seed.
    pub seed: u64,
}

/// The rules compared: FedAvg, the coordinate-wise median, the trimmed mean and Krum.
fn rules(byzantine: usize) -> Vec<(String, StrategyConfig)> {
    let base = StrategyConfig::default();
    vec![
        ("FedAvg".into(), base),
        (
            "median".into(),
            StrategyConfig {
                name: StrategyKind::Median,
                ..base
            },
        ),
        (
            "trimmed mean (β 0.2)".into(),
            StrategyConfig {
                name: StrategyKind::TrimmedMean,
                trim_fraction: 0.2,
                ..base
            },
        ),
        (
            format!("Krum (f {byzantine})"),
            StrategyConfig {
                name: StrategyKind::Krum,
                byzantine,
                ..base
            },
        ),
    ]
}

/// Runs the benchmark.
pub async fn run(cfg: &ByzantineBench) -> anyhow::Result<Table> {
    anyhow::ensure!(
        cfg.byzantine < cfg.sites && cfg.sites >= 2 * cfg.byzantine + 3,
        "--sites must be at least 2 × --byzantine + 3 (Krum's condition)"
    );
    let splits = idx::load_dir(&cfg.data)
        .with_context(|| format!("cannot load the IDX dataset in {}", cfg.data.display()))?;
    let pool = splits.train.take(cfg.sites * cfg.per_site);
    anyhow::ensure!(
        pool.len() == cfg.sites * cfg.per_site,
        "the training split has {} images; {} sites × {} need more",
        splits.train.len(),
        cfg.sites,
        cfg.per_site
    );
    let parts = partition(pool.len(), None, cfg.sites, Partition::Iid, cfg.seed, 2)?;
    let shards: Vec<Dataset> = parts.iter().map(|p| pool.subset(p).unlabeled()).collect();
    let labeled = splits.train.take(cfg.labeled);
    let test = splits.test.take(cfg.test);
    let plan = PlanConfig {
        local_epochs: 1,
        batch_size: 100,
        temperature: 0.5,
        privacy: PrivacyPlan {
            mechanism: PrivacyMechanism::None,
            ..PrivacyPlan::default()
        },
        seed: cfg.seed,
        ..PlanConfig::default()
    };
    let opts = EvalOptions {
        baselines: false,
        seed: cfg.seed,
        ..EvalOptions::default()
    };

    let mut t = Table::new(
        format!(
            "bench byzantine: {} — ConvNet-S SimCLR, {} sites × {} images (IID), {} attack, {} rounds",
            cfg.data.display(),
            cfg.sites,
            cfg.per_site,
            cfg.byzantine,
            cfg.rounds
        ),
        &[
            "rule",
            "attack",
            "linear probe",
            "kNN",
            "probe − same rule clean",
            "probe − FedAvg clean",
            "wall s",
        ],
    );
    let mut fedavg_clean = None;
    for (name, strategy) in rules(cfg.byzantine) {
        let mut clean = None;
        for attack in [None, Some(Attack::SignFlip), Some(Attack::Random)] {
            let label = attack.map(Attack::label).unwrap_or("none");
            info!(rule = %name, attack = label, "bench byzantine: run");
            let started = Instant::now();
            let dir = cfg.out.join(format!(
                "{:?}-{}",
                strategy.name,
                attack.map(|a| format!("{a:?}")).unwrap_or("clean".into())
            ));
            let mut plan = plan.clone();
            plan.strategy = strategy;
            let model = federation(cfg, &dir, plan.clone(), &shards, attack).await?;
            let e = evaluate(&plan.model_spec(), &model, &labeled, &test, &opts)?;
            let probe = e.linear_probe_accuracy;
            let clean_probe = *clean.get_or_insert(probe);
            let fedavg = *fedavg_clean.get_or_insert(probe);
            let delta = |r: f64| format!("{:+.2}", 100.0 * (probe - r));
            t.row(vec![
                name.clone(),
                label.into(),
                pct(Some(probe)),
                pct(Some(e.knn_accuracy)),
                delta(clean_probe),
                delta(fedavg),
                num(Some(started.elapsed().as_secs_f64()), 0),
            ]);
        }
    }
    t.note(format!(
        "sites 0..{} train honestly on their shard, then send −10 × their update (sign flip) or a random Gaussian direction at 10 × its norm; no DP (no clip bound), so the attack's norm is tied to the honest updates' scale",
        cfg.byzantine
    ));
    t.note(format!(
        "probe: the final global encoder's features, standardized, softmax regression (L2 penalty chosen on a validation split), {} labeled / {} test images of the same split for every run; kNN: k = 200, T = 0.1",
        labeled.len(),
        test.len()
    ));
    t.note("plan: SimCLR, τ 0.5, batch 100, 1 local epoch per round, the default learning rate; every run draws the same shards and seeds (training is multi-threaded, so clean runs of different rules differ by run-to-run noise as well as by the rule)");
    t.note(format!("machine: {}", machine()));
    Ok(t)
}

/// One federation over loopback: the server with `plan`, the honest sites, and the
/// attackers (the first `cfg.byzantine` sites) when `attack` is set. Returns the final
/// global encoder.
async fn federation(
    cfg: &ByzantineBench,
    dir: &Path,
    plan: PlanConfig,
    shards: &[Dataset],
    attack: Option<Attack>,
) -> anyhow::Result<fedssl_ml::model::Weights> {
    let _ = std::fs::remove_dir_all(dir);
    let names: Vec<String> = (0..cfg.sites).map(|i| format!("site-{i}")).collect();
    let certs_dir = dir.join("certs");
    certs::init(&certs_dir, &["localhost".to_string()], &names)?;
    let server_cfg = ServerConfig {
        rounds: cfg.rounds,
        min_clients: cfg.sites,
        round_deadline_secs: 7200.0,
        wait_for_clients_secs: 120.0,
        plan,
        ..ServerConfig::new(
            "127.0.0.1:0".parse()?,
            dir.join("server"),
            certs::server_tls(&certs_dir),
        )
    };
    server_cfg.validate()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(fedssl_server::run_server(
        server_cfg,
        fedssl_server::ServerOptions {
            progress: None,
            ready: Some(tx),
            final_grace: Duration::from_secs(5),
        },
    ));
    let addr = rx.await.context("the server failed to start")?;
    let mut sites = Vec::new();
    for (i, (name, data)) in names.iter().zip(shards).enumerate() {
        let files = certs::client_tls(&certs_dir, name);
        let (name, data) = (name.clone(), data.clone());
        match attack.filter(|_| i < cfg.byzantine) {
            Some(attack) => {
                let seed = cfg.seed * 1000 + i as u64;
                sites.push(tokio::spawn(async move {
                    attacker(addr, &files, &name, data, attack, seed).await
                }));
            }
            None => {
                let c = ClientConfig {
                    server_addr: addr.to_string(),
                    server_name: "localhost".into(),
                    tls: files,
                    state_dir: dir.join("clients").join(&name),
                    data: ClientData {
                        dir: None,
                        shard: None,
                        partition: "iid".into(),
                        seed: cfg.seed,
                        shape: fedssl_ml::data::SampleShape::GRAY_28,
                    },
                    device: "cpu".into(),
                    epsilon_budget: f64::INFINITY,
                    delta: 1e-5,
                    max_frame_bytes: fedssl_protocol::DEFAULT_MAX_FRAME,
                    idle_timeout_secs: 30.0,
                    max_reconnect_attempts: 5,
                    local_eval_labels: 0,
                    report: Default::default(),
                    init_ledger: false,
                };
                sites.push(tokio::spawn(async move {
                    fedssl_client::run_client(c, data, None)
                        .await
                        .map(|_| ())
                        .with_context(|| format!("{name} failed"))
                }));
            }
        }
    }
    let report = server.await.context("the server task panicked")??;
    for s in sites {
        s.await.context("a site task panicked")??;
    }
    anyhow::ensure!(
        report.rounds_completed == cfg.rounds,
        "the run committed {} of {} rounds",
        report.rounds_completed,
        cfg.rounds
    );
    Ok(report.final_model)
}
