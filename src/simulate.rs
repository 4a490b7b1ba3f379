//! `fedssl simulate`: certificates, one server and N clients talking over real QUIC + mTLS on
//! 127.0.0.1, R rounds, then a linear-probe evaluation of the final global encoder.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tracing::info;

use fedssl_client::config::{ClientConfig, ClientData, ReportConfig};
use fedssl_client::{ClientReport, Compute, Schedule};
use fedssl_ml::data::partition::partition;
use fedssl_ml::data::{load_splits, Dataset, Partition};
use fedssl_net::certs;
use fedssl_net::tls::TlsFiles;
use fedssl_server::config::ServerEvalConfig;
use fedssl_server::config::{PlanConfig, ServerConfig};
use fedssl_server::evaluate::{evaluate, render_eval, EvalOptions, EvalReport};
use fedssl_server::metrics::{CounterSnapshot, RoundMetrics};
use fedssl_server::{run_server, ServerOptions};

/// Parameters of a simulation.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SimulateArgs {
    /// Simulated clients.
    pub clients: usize,
    /// Rounds.
    pub rounds: u64,
    /// IDX folder or CSV source; `None` = the generated data of the plan's modality.
    pub data: Option<PathBuf>,
    /// Partition of the training pool across clients.
    pub partition: Partition,
    /// Run directory.
    pub run_dir: PathBuf,
    /// `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    /// Each client's ε budget (per the unit of the plan's mechanism; inf accepts no DP).
    pub epsilon_budget: f64,
    /// δ.
    pub delta: f64,
    /// Figures each site sends in plain numbers next to its update (outside ε).
    #[serde(default)]
    pub site_report: ReportConfig,
    /// Round hyper-parameters (including DP).
    pub plan: PlanConfig,
    /// Training samples used for pretraining in total (0 = all).
    pub train_samples: usize,
    /// Labeled samples for the probe's training split.
    pub probe_train: usize,
    /// Test samples for the probe.
    pub probe_test: usize,
    /// Seconds before a round closes with what arrived.
    pub round_deadline_secs: f64,
    /// Server-side probe of the global model every this many rounds (0 = only the final
    /// evaluation; collapse monitors still run every round).
    pub eval_every: u64,
    /// Labeled samples each site keeps for federated evaluation (0 = none).
    pub site_labels: usize,
    /// Federated evaluation every this many rounds (0 = never).
    pub federated_eval_every: u64,
    /// The final evaluation (`None`: skip it).
    pub eval: Option<EvalOptions>,
    /// Show progress bars.
    pub progress: bool,
    /// How the sites share this machine's cores.
    pub schedule: Schedule,
    /// Central DP at the server (DP-FedAvg), if any.
    pub central_dp: Option<fedssl_server::config::CentralDpConfig>,
    /// Serve the server's Prometheus `/metrics` and `/healthz` here during the run.
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `summary.json`'s `privacy`: the mechanism, whose privacy it protects and how, and the
/// ε of the site that spent the most, with the parameters of its last DP-SGD round.
#[derive(Debug, Clone, Serialize)]
pub struct PrivacySummary {
    /// `dp-sgd`, `client-level`, `dp-sgd+client-level` or `none`.
    pub mechanism: String,
    /// `record` or `site`: whose privacy `epsilon` is about.
    pub unit: String,
    /// The neighbour relation of `epsilon`.
    pub neighbour: String,
    /// The largest ε any site spent for `unit` (`null`: not protected).
    pub epsilon: Option<f64>,
    /// δ.
    pub delta: f64,
    /// The accountant.
    pub accountant: String,
    /// DP-SGD's noise multiplier (per step), or the client-level one, of that site.
    pub sigma: Option<f64>,
    /// DP-SGD's Poisson sampling rate of that site (1 for client-level DP).
    pub q: Option<f64>,
    /// DP-SGD steps that site took over the run (rounds for client-level DP).
    pub steps: Option<u64>,
    /// The clip norm (per record for DP-SGD, per update for client-level DP).
    pub clip_norm: Option<f64>,
    /// ε per site where client-level noise protects sites (largest over sites).
    pub epsilon_site: Option<f64>,
    /// Figures some site sent in plain numbers outside ε.
    pub disclosed_outside_epsilon: Vec<String>,
    /// ε for `unit` after each round, per site, read from each site's own ledger (the
    /// simulation runs every site, so it may read them; nothing here crossed the network).
    pub by_round: Vec<RoundEpsilon>,
    /// Central DP at the server, when it ran.
    pub central_dp: Option<CentralDpSummary>,
}

/// What central DP at the server guaranteed over the run.
#[derive(Debug, Clone, Serialize)]
pub struct CentralDpSummary {
    /// ε per site (add-or-remove one site) at `delta`, RDP accountant.
    pub epsilon: Option<f64>,
    /// Always `site`.
    pub unit: String,
    /// The neighbour relation.
    pub neighbour: String,
    /// Whom the guarantee relies on.
    pub trust: String,
    /// Poisson rate of site selection.
    pub sample_rate: f64,
    /// The joint noise multiplier charged per round (update and, with adaptive clipping,
    /// the count), after grid rounding.
    pub effective_noise_multiplier: f64,
    /// Rounds released.
    pub rounds: usize,
    /// The clip bound of the first and of the last round.
    pub clip_norm_first: f64,
    /// See `clip_norm_first`.
    pub clip_norm_last: f64,
}

impl CentralDpSummary {
    /// The summary of the rounds' releases recorded in their metrics.
    pub fn of(rounds: &[RoundMetrics]) -> Option<Self> {
        let releases: Vec<_> = rounds.iter().filter_map(|r| r.central_dp).collect();
        let (first, last) = (releases.first()?, releases.last()?);
        Some(Self {
            epsilon: rounds.iter().rev().find_map(|r| r.central_epsilon),
            unit: "site".into(),
            neighbour: "add-or-remove one site".into(),
            trust: "the server: it sees each selected site's clipped update before noising".into(),
            sample_rate: last.sample_rate,
            effective_noise_multiplier: releases
                .iter()
                .map(|r| r.effective_noise_multiplier)
                .fold(f64::INFINITY, f64::min),
            rounds: releases.len(),
            clip_norm_first: first.clip_norm,
            clip_norm_last: last.clip_norm,
        })
    }
}

/// The sites' ε for the mechanism's unit after one round.
#[derive(Debug, Clone, Serialize)]
pub struct RoundEpsilon {
    /// Round.
    pub round: u64,
    /// `(site, ε)`; `null` where the site's releases did not protect the unit.
    pub sites: Vec<(String, Option<f64>)>,
}

impl RoundEpsilon {
    /// The largest ε over the sites (`None` if some site is unprotected).
    pub fn max(&self) -> Option<f64> {
        self.sites
            .iter()
            .try_fold(0.0f64, |m, (_, e)| e.map(|e| m.max(e)))
    }
}

/// ε for `unit` after each of `rounds` rounds, per site, from the ledgers in
/// `clients/<site>/privacy-ledger.json` (a site without a ledger spent nothing).
pub fn epsilon_by_round(
    clients_dir: &Path,
    sites: &[String],
    unit: fedssl_privacy::ledger::Unit,
    rounds: u64,
) -> anyhow::Result<Vec<RoundEpsilon>> {
    use fedssl_privacy::ledger::PrivacyLedger;
    let mut ledgers = Vec::new();
    for name in sites {
        let path = clients_dir.join(name).join("privacy-ledger.json");
        let ledger = match std::fs::read_to_string(&path) {
            Ok(text) => Some(
                PrivacyLedger::parse(&text)
                    .with_context(|| format!("cannot read the ledger {}", path.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        ledgers.push((name.clone(), ledger));
    }
    Ok((1..=rounds)
        .map(|round| RoundEpsilon {
            round,
            sites: ledgers
                .iter()
                .map(|(name, l)| {
                    let e = match l {
                        None => Some(0.0),
                        Some(l) => {
                            let mut upto = l.clone();
                            upto.entries.retain(|e| e.round <= round);
                            upto.epsilon(unit)
                        }
                    };
                    (name.clone(), e)
                })
                .collect(),
        })
        .collect())
}

impl PrivacySummary {
    /// The summary of a run of `plan` from its sites' reports.
    pub fn of(plan: &PlanConfig, delta: f64, sites: &[ClientReport]) -> Self {
        use fedssl_privacy::ledger::Unit;
        let mech = plan.privacy.mechanism;
        let unit = mech.unit();
        let eps_of = |r: &ClientReport, u: Unit| match u {
            Unit::Record => r.epsilon_record,
            Unit::Site => r.epsilon_site,
        };
        // The site that spent the most (an unprotected one counts as the most).
        let worst = sites.iter().max_by(|a, b| {
            let e = |r| eps_of(r, unit).unwrap_or(f64::INFINITY);
            e(a).total_cmp(&e(b))
        });
        let max_eps = |u: Unit| -> Option<f64> {
            sites
                .iter()
                .map(|r| eps_of(r, u))
                .try_fold(0.0f64, |m, e| e.map(|e| m.max(e)))
        };
        let event = worst.and_then(|w| w.last_event);
        let mut disclosed: Vec<String> = sites
            .iter()
            .flat_map(|r| r.disclosed_outside_epsilon.iter().cloned())
            .collect();
        disclosed.sort();
        disclosed.dedup();
        Self {
            mechanism: mech.name().into(),
            unit: unit.name().into(),
            neighbour: unit.neighbour().into(),
            epsilon: if mech.is_private() {
                max_eps(unit)
            } else {
                None
            },
            delta,
            accountant: fedssl_privacy::ledger::AccountantKind::Rdp.name().into(),
            sigma: event.map(|e| e.noise_multiplier),
            q: event.map(|e| e.sampling_rate),
            steps: worst.map(|w| w.steps_total).filter(|_| event.is_some()),
            clip_norm: event.map(|e| e.clip_norm),
            epsilon_site: if mech.client_level() {
                max_eps(Unit::Site)
            } else {
                None
            },
            disclosed_outside_epsilon: disclosed,
            by_round: Vec::new(),
            central_dp: None,
        }
    }

    /// The report's privacy lines: every ε with its unit, neighbour relation, δ and
    /// accountant, per site and for the run.
    pub fn render(&self, sites: &[ClientReport]) -> String {
        let mut out = String::from("\nprivacy: ");
        let eps = |e: Option<f64>| {
            e.map(|e| format!("{e:.3}"))
                .unwrap_or("∞ (not protected)".into())
        };
        if let Some(c) = &self.central_dp {
            out.push_str(&format!(
                "central DP at the server: ε = {} per site ({}, δ = {:e}, rdp accountant), Poisson q = {}, z_eff ≥ {:.3}, {} rounds, C {:.4} → {:.4}; holds only if the server is honest\n  sites: ",
                eps(c.epsilon),
                c.neighbour,
                self.delta,
                c.sample_rate,
                c.effective_noise_multiplier,
                c.rounds,
                c.clip_norm_first,
                c.clip_norm_last
            ));
        }
        if self.mechanism == "none" {
            out.push_str("none: the sites trained without differential privacy (their budgets were inf); no ε holds on the sites\n");
            return out;
        }
        out.push_str(&format!(
            "{}: ε = {} per {} ({}, δ = {:e}, {} accountant)",
            self.mechanism,
            eps(self.epsilon),
            self.unit,
            self.neighbour,
            self.delta,
            self.accountant
        ));
        if let (Some(s), Some(q), Some(t), Some(c)) =
            (self.sigma, self.q, self.steps, self.clip_norm)
        {
            out.push_str(&format!(", σ = {s:.3}, q = {q:.4}, {t} steps, C = {c}"));
        }
        out.push('\n');
        if self.epsilon_site.is_some() {
            out.push_str(&format!(
                "  and ε = {} per site (add-or-remove one site, δ = {:e}, {} accountant)\n",
                eps(self.epsilon_site),
                self.delta,
                self.accountant
            ));
        }
        for r in sites {
            out.push_str(&format!(
                "  {:<12} ε per record {}, per site {}\n",
                r.name,
                eps(r.epsilon_record),
                eps(r.epsilon_site)
            ));
        }
        if let Some(first) = self.by_round.first() {
            out.push_str(&format!(
                "  ε per {} after each round (each site's own ledger):\n",
                self.unit
            ));
            for (i, (name, _)) in first.sites.iter().enumerate() {
                let row: Vec<String> = self
                    .by_round
                    .iter()
                    .map(|r| {
                        r.sites
                            .get(i)
                            .and_then(|(_, e)| *e)
                            .map(|e| format!("{e:.2}"))
                            .unwrap_or("∞".into())
                    })
                    .collect();
                out.push_str(&format!("  {name:<12} {}\n", row.join("  ")));
            }
        }
        if !self.disclosed_outside_epsilon.is_empty() {
            out.push_str(&format!(
                "  sent in plain numbers outside ε (sites opted in): {}\n",
                self.disclosed_outside_epsilon.join(", ")
            ));
        }
        out
    }
}

/// `runs/<prefix>-<unix seconds>`: a new run directory for each invocation.
pub fn fresh_run_dir(prefix: &str) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from(format!("runs/{prefix}-{t}"))
}

impl SimulateArgs {
    /// A run of `plan` in `run_dir` with the defaults of `fedssl simulate`: 4 clients, 8
    /// rounds on the generated data of the plan's modality (IID), CPU, a linear probe on
    /// 2000 / 2000 labeled samples at the end. Change the fields for other settings.
    pub fn new(plan: PlanConfig, run_dir: PathBuf) -> Self {
        Self {
            clients: 4,
            rounds: 8,
            data: None,
            partition: Partition::Iid,
            run_dir,
            device: "cpu".into(),
            epsilon_budget: if plan.privacy.mechanism.is_private() {
                10.0
            } else {
                f64::INFINITY
            },
            delta: 1e-5,
            site_report: ReportConfig::default(),
            train_samples: 0,
            probe_train: 2000,
            probe_test: 2000,
            round_deadline_secs: 600.0,
            eval_every: 2,
            site_labels: 0,
            federated_eval_every: 0,
            eval: Some(EvalOptions {
                label_fractions: vec![0.01, 0.1, 1.0],
                seed: plan.seed,
                ..EvalOptions::default()
            }),
            progress: true,
            schedule: Schedule::Serial,
            central_dp: None,
            metrics_listen: None,
            plan,
        }
    }
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The self-supervised objective trained.
    pub objective: fedssl_ml::ssl::ObjectiveKind,
    /// Rounds committed.
    pub rounds_completed: u64,
    /// Clients.
    pub clients: usize,
    /// Linear-probe accuracy of the final global encoder.
    pub linear_probe_accuracy: Option<f64>,
    /// Weighted-kNN accuracy of the final global encoder.
    pub knn_accuracy: Option<f64>,
    /// Same probe on a random-init encoder.
    pub random_init_linear_probe_accuracy: Option<f64>,
    /// Same probe on raw pixels.
    pub raw_pixel_linear_probe_accuracy: Option<f64>,
    /// Bytes on the wire over all rounds (both directions, frames).
    pub bytes_on_wire: u64,
    /// What protected the sites' data, and how much privacy the most-spent site spent.
    pub privacy: PrivacySummary,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Final global model hash.
    pub final_model_hash: String,
    /// The final global encoder (in `server/checkpoints/` on disk too).
    #[serde(skip)]
    pub final_model: fedssl_ml::model::Weights,
    /// Evaluation details.
    pub eval: Option<EvalReport>,
    /// Per-client reports.
    pub client_reports: Vec<ClientReport>,
    /// Server counters.
    pub server_counters: CounterSnapshot,
    /// Per-round metrics.
    pub rounds: Vec<RoundMetrics>,
}

/// Runs the simulation and writes the run directory.
pub async fn simulate(args: SimulateArgs) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let run = &args.run_dir;
    // A finished run's server would resume with nothing left to do and exit before the
    // new clients could reach it.
    anyhow::ensure!(
        !run.join("summary.json").exists(),
        "{} already holds a finished run; choose another --run-dir (or remove it)",
        run.display()
    );
    std::fs::create_dir_all(run).with_context(|| format!("cannot create {}", run.display()))?;
    args.plan.validate()?;
    anyhow::ensure!(args.clients >= 1, "--clients must be at least 1");

    // Data: one pool partitioned across the simulated sites; a labeled probe set.
    let mut splits = load_splits(args.data.as_deref(), args.plan.data, args.plan.seed)?;
    // Generated images: as many as asked for (the default set has 6000).
    if args.data.is_none()
        && args.train_samples > splits.train.len()
        && matches!(args.plan.data, fedssl_ml::data::SampleShape::Image { .. })
    {
        splits.train = fedssl_ml::data::synthetic::generate_shaped(
            args.train_samples,
            args.plan.data,
            args.plan.seed,
        );
    }
    let pool = if args.train_samples > 0 {
        splits.train.take(args.train_samples)
    } else {
        splits.train.clone()
    };
    let parts = partition(
        pool.len(),
        pool.labels.as_deref(),
        args.clients,
        args.partition,
        args.plan.seed,
        2,
    )?;
    let probe_train = splits.train.take(args.probe_train);
    let probe_test = splits.test.take(args.probe_test);
    info!(
        data = %args.data.as_ref().map(|d| d.display().to_string()).unwrap_or(format!("generated {}", args.plan.data)),
        pool = pool.len(),
        clients = args.clients,
        partition = %args.partition,
        "data ready"
    );

    // Certificates.
    let cert_dir = run.join("certs");
    let names: Vec<String> = (1..=args.clients).map(|i| format!("site-{i}")).collect();
    if !cert_dir.join(certs::CA_KEY).exists() {
        certs::init(&cert_dir, &["localhost".to_string()], &names)?;
    }

    let server_cfg = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        run_dir: run.join("server"),
        // The CA folder's revocation list: `fedssl certs revoke --dir RUN/certs --name
        // site-N` shuts a site out of a running simulation.
        tls: TlsFiles {
            crl: Some(cert_dir.join(certs::CRL)).filter(|p| p.exists()),
            ..certs::server_tls(&cert_dir)
        },
        rounds: args.rounds,
        min_clients: args.clients,
        sample_fraction: 1.0,
        round_deadline_secs: args.round_deadline_secs,
        wait_for_clients_secs: 120.0,
        idle_timeout_secs: 30.0,
        max_frame_bytes: fedssl_protocol::DEFAULT_MAX_FRAME,
        max_connections: 1024,
        plan: args.plan.clone(),
        delta: args.delta,
        eval: Some(ServerEvalConfig {
            data: args.data.clone(),
            train_samples: args.probe_train.clamp(10, 2000),
            test_samples: args.probe_test.clamp(10, 1000),
            every: args.eval_every,
        }),
        federated_eval_every: if args.site_labels > 0 {
            args.federated_eval_every
        } else {
            0
        },
        central_dp: args.central_dp,
        min_updates: None,
        max_round_extensions: 1,
        metrics: args
            .metrics_listen
            .map(|listen| fedssl_server::config::MetricsConfig { listen }),
    };
    write_effective_config(run, &args, &server_cfg)?;

    // Every site's configuration is checked before the server starts: a flag no site can
    // run with ends the run now, naming the flag, instead of after the wait for clients.
    let mut site_cfgs = Vec::new();
    for name in &names {
        let cfg = ClientConfig {
            server_addr: server_cfg.listen.to_string(),
            server_name: "localhost".into(),
            tls: certs::client_tls(&cert_dir, name),
            state_dir: run.join("clients").join(name),
            data: ClientData {
                dir: args.data.clone(),
                shard: None,
                partition: args.partition.to_string(),
                seed: args.plan.seed,
                shape: args.plan.data,
            },
            device: args.device.clone(),
            epsilon_budget: args.epsilon_budget,
            delta: args.delta,
            max_frame_bytes: fedssl_protocol::DEFAULT_MAX_FRAME,
            idle_timeout_secs: 30.0,
            max_reconnect_attempts: 20,
            local_eval_labels: args.site_labels,
            report: args.site_report,
            init_ledger: false,
        };
        cfg.validate().with_context(|| {
            format!(
                "{name}'s configuration is invalid (simulate sets it from --epsilon-budget, \
                 --delta, --device, --partition and --site-labels)"
            )
        })?;
        site_cfgs.push(cfg);
    }

    let mp = args.progress.then(crate::progress);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut server = tokio::spawn(run_server(
        server_cfg,
        ServerOptions {
            progress: mp.clone(),
            ready: Some(tx),
            final_grace: Duration::from_secs(15),
        },
    ));
    let addr = rx.await.context("the server failed to start")?;

    let computes = Compute::shared(names.len(), rayon::current_num_threads(), args.schedule)?;
    info!(
        schedule = ?args.schedule,
        threads_per_site = computes.first().map(Compute::threads).unwrap_or(0),
        "sites share the cores"
    );
    // A site that fails ends the run with its message at once, instead of leaving the
    // server to wait out its deadlines.
    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut clients = Vec::new();
    for (((i, name), compute), mut cfg) in names.iter().enumerate().zip(computes).zip(site_cfgs) {
        cfg.server_addr = addr.to_string();
        // Labels stay with the site: the client uses them only for federated evaluation.
        let data: Dataset = pool.subset(&parts[i]);
        let (mp, failed, name) = (mp.clone(), failed_tx.clone(), name.clone());
        clients.push(tokio::spawn(async move {
            let r = fedssl_client::run_client_on(cfg, data, mp, compute).await;
            if let Err(e) = &r {
                let _ = failed.send(format!("{name} failed: {e:#}"));
            }
            r
        }));
    }
    drop(failed_tx);
    let report = tokio::select! {
        r = &mut server => {
            let report = r.context("the server task panicked")??;
            if report.stopped_by_operator {
                for c in &clients {
                    c.abort();
                }
                anyhow::bail!(
                    "stopped by the operator (fedssl stop) after {} of {} rounds; {} keeps every committed model",
                    report.rounds_completed,
                    args.rounds,
                    run.display()
                );
            }
            report
        }
        Some(failure) = failed_rx.recv() => {
            server.abort();
            for c in &clients {
                c.abort();
            }
            anyhow::bail!("{failure}; the simulation stops (the other sites and the server were shut down)");
        }
    };
    let mut client_reports = Vec::new();
    for c in clients {
        client_reports.push(c.await.context("a client task panicked")??);
    }

    let eval = match &args.eval {
        Some(opts) => {
            info!("evaluating the final global encoder (linear probe, kNN, baselines)");
            let opts = EvalOptions {
                seed: args.plan.seed,
                ..opts.clone()
            };
            Some(evaluate(
                &args.plan.model_spec(),
                &report.final_model,
                &probe_train,
                &probe_test,
                &opts,
            )?)
        }
        None => None,
    };
    let mut privacy = PrivacySummary::of(&args.plan, args.delta, &client_reports);
    privacy.central_dp = CentralDpSummary::of(&report.rounds);
    if args.plan.privacy.mechanism.is_private() {
        privacy.by_round = epsilon_by_round(
            &run.join("clients"),
            &names,
            args.plan.privacy.mechanism.unit(),
            report.rounds_completed,
        )?;
    }
    let summary = Summary {
        objective: args.plan.objective,
        rounds_completed: report.rounds_completed,
        clients: args.clients,
        linear_probe_accuracy: eval.as_ref().map(|e| e.linear_probe_accuracy),
        knn_accuracy: eval.as_ref().map(|e| e.knn_accuracy),
        random_init_linear_probe_accuracy: eval
            .as_ref()
            .and_then(|e| e.random_init_linear_probe_accuracy),
        raw_pixel_linear_probe_accuracy: eval
            .as_ref()
            .and_then(|e| e.raw_pixel_linear_probe_accuracy),
        bytes_on_wire: report.counters.bytes_up + report.counters.bytes_down,
        privacy,
        seconds: started.elapsed().as_secs_f64(),
        final_model_hash: report.final_hash.clone(),
        final_model: report.final_model,
        eval,
        client_reports,
        server_counters: report.counters,
        rounds: report.rounds,
    };
    fedssl_core::atomic_write(
        &run.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
}

fn write_effective_config(
    run: &Path,
    args: &SimulateArgs,
    server: &ServerConfig,
) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Effective<'a> {
        simulate: &'a SimulateArgs,
        server: &'a ServerConfig,
    }
    let text = toml::to_string_pretty(&Effective {
        simulate: args,
        server,
    })?;
    fedssl_core::atomic_write(&run.join("config.toml"), text.as_bytes())?;
    Ok(())
}

/// Lines naming the rounds in which sites declined to train or had updates rejected, so a
/// run whose later rounds left the encoder unchanged (a spent privacy budget, most often)
/// says so under the table; empty when every sampled site's update was accepted.
fn render_refusals(rounds: &[RoundMetrics]) -> String {
    let list = |pick: fn(&RoundMetrics) -> usize| -> (usize, Vec<String>) {
        let hit: Vec<&RoundMetrics> = rounds.iter().filter(|r| pick(r) > 0).collect();
        let total = hit.iter().map(|r| pick(r)).sum();
        (total, hit.iter().map(|r| r.round.to_string()).collect())
    };
    let mut out = String::new();
    let (declined, in_rounds) = list(|r| r.clients_declined);
    if declined > 0 {
        out.push_str(&format!(
            "\nsites declined to train {declined} time(s), in round(s) {}: a site declines when \
             its privacy budget would be exceeded or it has too little data (the server log \
             names the reason); a round with no accepted update leaves the encoder unchanged\n",
            in_rounds.join(", ")
        ));
    }
    let (rejected, in_rounds) = list(|r| r.clients_rejected);
    if rejected > 0 {
        out.push_str(&format!(
            "\nthe server rejected {rejected} update(s), in round(s) {} (the server log names \
             the reason)\n",
            in_rounds.join(", ")
        ));
    }
    out
}

/// The final printout.
pub fn render_report(s: &Summary, run_dir: &Path) -> String {
    let mut out = String::new();
    out.push_str("\n== fedssl simulate: report ==\n");
    out.push_str(&format!(
        "{} objective, {} clients, {} rounds, {:.0} s, final model {}\n\n",
        s.objective,
        s.clients,
        s.rounds_completed,
        s.seconds,
        &s.final_model_hash[..12.min(s.final_model_hash.len())]
    ));
    out.push_str(&format!(
        "round  accepted  mean loss  {:>7}   up MB  down MB  seconds   probe     kNN  std·√d   rank  site probe\n",
        match s.privacy.unit.as_str() {
            _ if s.privacy.by_round.is_empty() => "max ε",
            "record" => "ε/rec",
            _ => "ε/site",
        }
    ));
    let pct = |v: Option<f64>| {
        v.map(|a| format!("{:>6.2}%", 100.0 * a))
            .unwrap_or_else(|| "      -".into())
    };
    for r in &s.rounds {
        let ev = r.server_eval;
        out.push_str(&format!(
            "{:>5}  {:>3}/{:<4}  {:>9}  {:>7}  {:>6.2}  {:>7.2}  {:>7.1}  {} {}  {:>6}  {:>5}  {}\n",
            r.round,
            r.clients_accepted,
            r.clients_sampled,
            r.mean_local_loss
                .map(|l| format!("{l:.4}"))
                .unwrap_or("-".into()),
            // The sites' own ledgers where the simulation has them (the largest ε over
            // the sites); otherwise what sites reported to the server, if they opted in.
            s.privacy
                .by_round
                .iter()
                .find(|e| e.round == r.round)
                .map(|e| e.max())
                .unwrap_or(r.max_epsilon)
                .map(|e| format!("{e:.2}"))
                .unwrap_or("-".into()),
            r.bytes_up as f64 / 1e6,
            r.bytes_down as f64 / 1e6,
            r.seconds,
            pct(ev.and_then(|e| e.linear_probe_accuracy)),
            pct(ev.and_then(|e| e.knn_accuracy)),
            ev.map(|e| format!("{:.3}", e.collapse.std_ratio))
                .unwrap_or("-".into()),
            ev.map(|e| format!("{:.1}", e.collapse.effective_rank))
                .unwrap_or("-".into()),
            r.federated_eval
                .map(|f| format!(
                    "{:.2}% (model v{}, {} sites)",
                    100.0 * f.probe_accuracy,
                    f.model_version,
                    f.sites
                ))
                .unwrap_or("-".into()),
        ));
    }
    out.push_str(&render_refusals(&s.rounds));
    if let Some(e) = &s.eval {
        out.push_str("\nfinal global encoder, ");
        out.push_str(&render_eval(e));
    }
    out.push_str(&s.privacy.render(&s.client_reports));
    out.push_str(&format!("run directory: {}\n", run_dir.display()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsilon_by_round_reads_each_sites_ledger_up_to_each_round() {
        use fedssl_privacy::ledger::{
            GaussianEvent, LedgerEntry, MechanismKind, Neighbour, PrivacyLedger, Release, Unit,
        };
        let dir = tempfile::tempdir().unwrap();
        let event = GaussianEvent {
            mechanism: MechanismKind::DpSgd,
            unit: Unit::Record,
            neighbour: Neighbour::AddOrRemoveOne,
            noise_multiplier: 1.0,
            sampling_rate: 0.1,
            steps: 50,
            clip_norm: 1.0,
        };
        let entry = |round| LedgerEntry {
            round,
            base_model_hash: format!("h{round}"),
            at: 0,
            releases: vec![Release {
                what: "update".into(),
                bounds: vec![event],
            }],
        };
        let mut ledger = PrivacyLedger::new(1e-5, 0);
        ledger.entries = vec![entry(1), entry(2)];
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(
            dir.path().join("a/privacy-ledger.json"),
            serde_json::to_string(&ledger).unwrap(),
        )
        .unwrap();
        let names = vec!["a".to_string(), "b".to_string()];
        let by = epsilon_by_round(dir.path(), &names, Unit::Record, 3).unwrap();
        assert_eq!(by.len(), 3);
        let a: Vec<f64> = by.iter().map(|r| r.sites[0].1.unwrap()).collect();
        // The same events through the accountant directly: 50 and 100 steps.
        let one = fedssl_privacy::rdp::epsilon(0.1, 1.0, 50, 1e-5);
        let two = fedssl_privacy::rdp::epsilon(0.1, 1.0, 100, 1e-5);
        assert!(
            (a[0] / one - 1.0).abs() < 1e-6 && (a[1] / two - 1.0).abs() < 1e-6,
            "{a:?} vs {one} {two}"
        );
        assert_eq!(a[2], a[1], "round 3 spent nothing");
        assert_eq!(
            by[0].sites[1],
            ("b".to_string(), Some(0.0)),
            "no ledger: nothing spent"
        );
        assert_eq!(by[1].max(), Some(a[1]));
        // The site-level ε of record-level releases is unprotected.
        let site = epsilon_by_round(dir.path(), &names, Unit::Site, 1).unwrap();
        assert_eq!(site[0].max(), None);
    }

    fn round(round: u64, accepted: usize, rejected: usize, declined: usize) -> RoundMetrics {
        RoundMetrics {
            round,
            clients_sampled: accepted + rejected + declined,
            clients_accepted: accepted,
            clients_rejected: rejected,
            clients_declined: declined,
            mean_local_loss: None,
            max_epsilon: None,
            bytes_up: 0,
            bytes_down: 0,
            seconds: 0.0,
            model_hash: String::new(),
            client_std_ratio: None,
            client_effective_rank: None,
            federated_eval: None,
            server_eval: None,
            central_dp: None,
            central_epsilon: None,
            client_clip_norm: None,
        }
    }

    #[test]
    fn the_report_names_rounds_where_sites_declined_or_were_rejected() {
        assert_eq!(render_refusals(&[round(1, 2, 0, 0), round(2, 2, 0, 0)]), "");
        let text = render_refusals(&[round(1, 2, 0, 0), round(2, 0, 0, 2), round(3, 1, 1, 1)]);
        assert!(
            text.contains("declined to train 3 time(s), in round(s) 2, 3"),
            "{text}"
        );
        assert!(
            text.contains("rejected 1 update(s), in round(s) 3"),
            "{text}"
        );
    }
}
