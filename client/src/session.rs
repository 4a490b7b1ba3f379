//! The client's session with the server: handshake, long-poll for tasks, train, privatize,
//! upload; reconnect with exponential backoff when the server is gone, resuming where it was.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tracing::{info, warn};

use crate::config::ClientConfig;
use fedssl_core::device::{self, ComputeDevice};
use fedssl_ml::data::Dataset;
use fedssl_ml::model::ModelSpec;
use fedssl_net::{endpoint, io, tls};
use fedssl_privacy::ledger::{GaussianEvent, MechanismKind, Unit};
use fedssl_privacy::Mechanism;
use fedssl_protocol::{ClientMsg, ErrorCode, Hello, ServerMsg, Task};

use crate::compute::Compute;
use crate::evaluate::{local_collapse, LocalLabels};
use crate::failure::connection_failure;
use crate::ledger::{unix_now, LedgerStore};
use crate::site::{Action, Answered, Fatal, Job, Site, SiteRules, Trained};
use crate::state::SiteState;
use crate::trainer::{self, TrainJob};

/// What a client did over its whole session.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientReport {
    /// Name from the certificate, as the server confirmed it.
    pub name: String,
    /// Rounds this client uploaded an update for.
    pub rounds_trained: Vec<u64>,
    /// Rounds declined (e.g. budget).
    pub rounds_declined: Vec<u64>,
    /// ε per record spent in total (add-or-remove one record, at `delta`, RDP accountant);
    /// `None` when some release did not protect records.
    pub epsilon_record: Option<f64>,
    /// ε per site spent in total (add-or-remove one site); `None` when some release did not
    /// protect the site as a whole (DP-SGD alone does not).
    pub epsilon_site: Option<f64>,
    /// δ of both, pinned in the ledger.
    pub delta: f64,
    /// The accountant that computed them.
    pub accountant: String,
    /// The mechanism of the last round's plan.
    pub mechanism: String,
    /// Figures this site sent in plain numbers next to its updates, outside every ε.
    pub disclosed_outside_epsilon: Vec<String>,
    /// The main bound of the last round spent: DP-SGD's, else the client-level one per site.
    pub last_event: Option<GaussianEvent>,
    /// Steps of that mechanism over every round spent.
    pub steps_total: u64,
    /// Hash of the final global model received.
    pub final_model_hash: Option<String>,
    /// Connections made (1 + reconnects).
    pub connections: u32,
}

enum Outcome {
    Finished,
}

struct Session {
    cfg: ClientConfig,
    /// Shared with the blocking training / evaluation tasks without copying.
    data: Arc<Dataset>,
    local_labels: Option<Arc<LocalLabels>>,
    device: ComputeDevice,
    /// The protocol logic: what to send, decline, resend or train.
    site: Site,
    /// The random-init encoder's effective rank on this site's monitor samples, for the
    /// model it was measured for: the collapse monitor's reference, measured once per model.
    collapse_reference: Option<(ModelSpec, f64)>,
    state: SiteState,
    ledger: LedgerStore,
    report: ClientReport,
    progress: Option<MultiProgress>,
    compute: Compute,
}

/// Runs a client until the server says training is finished, computing on rayon's global
/// pool.
pub async fn run_client(
    cfg: ClientConfig,
    data: Dataset,
    progress: Option<MultiProgress>,
) -> anyhow::Result<ClientReport> {
    run_client_on(cfg, data, progress, Compute::global()).await
}

/// [`run_client`] with its heavy work on `compute` (see [`crate::compute`]).
pub async fn run_client_on(
    cfg: ClientConfig,
    data: Dataset,
    progress: Option<MultiProgress>,
    compute: Compute,
) -> anyhow::Result<ClientReport> {
    cfg.validate()?;
    let requested: ComputeDevice = cfg.device.parse()?;
    let device = device::resolve(requested);
    let state = SiteState::open(&cfg.state_dir)?;
    let ledger = LedgerStore::open(&state, cfg.delta, cfg.init_ledger)
        .map_err(|e| anyhow::Error::new(Fatal(e.to_string())))?;
    let crypto = tls::client_crypto(&cfg.tls)?;
    fedssl_net::certs::warn_expiring(&[&cfg.tls.cert]);
    let settings = endpoint::TransportSettings {
        idle_timeout: Duration::from_secs_f64(cfg.idle_timeout_secs),
        ..Default::default()
    };
    // The endpoint's address family follows what the name resolves to now, IPv4 first
    // (and IPv4 when it does not resolve yet: every attempt resolves again).
    let first = resolve(&cfg.server_addr, Some(false)).await.ok();
    let family = first.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let ep = endpoint::client(family, crypto, settings)?;
    let local_labels = if cfg.local_eval_labels > 0 {
        let l = LocalLabels::from_data(&data, cfg.local_eval_labels);
        if l.is_none() {
            warn!("local_eval_labels is set but this site's data has no labels (or fewer than 4 samples); it will not take part in federated evaluation");
        }
        l
    } else {
        None
    };
    let local_labels = local_labels.map(Arc::new);
    let data = Arc::new(data.unlabeled());
    let rules = SiteRules {
        epsilon_budget: cfg.epsilon_budget,
        report: cfg.report,
        local_labels: local_labels.is_some(),
    };
    let mut s = Session {
        report: ClientReport {
            name: String::new(),
            rounds_trained: vec![],
            rounds_declined: vec![],
            epsilon_record: ledger.ledger.epsilon(Unit::Record),
            epsilon_site: ledger.ledger.epsilon(Unit::Site),
            delta: cfg.delta,
            accountant: fedssl_privacy::ledger::AccountantKind::Rdp.name().into(),
            mechanism: String::new(),
            disclosed_outside_epsilon: vec![],
            last_event: None,
            steps_total: 0,
            final_model_hash: None,
            connections: 0,
        },
        cfg,
        data,
        local_labels,
        collapse_reference: None,
        device,
        site: Site::new(rules),
        state,
        ledger,
        progress,
        compute,
    };
    let mut failures = 0u32;
    let mut backoff = Duration::from_millis(250);
    loop {
        match s.connect_and_serve(&ep).await {
            Ok(Outcome::Finished) => break,
            Err(e) if crate::failure::is_final(&e) => {
                ep.close(0u32.into(), b"fatal");
                return Err(e);
            }
            Err(e) => {
                failures += 1;
                if s.cfg.max_reconnect_attempts > 0 && failures > s.cfg.max_reconnect_attempts {
                    ep.close(0u32.into(), b"giving up");
                    return Err(e.context(format!(
                        "giving up after {} failed attempts to reach the server at {}",
                        failures - 1,
                        s.cfg.server_addr
                    )));
                }
                if s.report.connections == 0 {
                    warn!(error = %format!("{e:#}"), retry_in = ?backoff, "cannot reach the server yet; retrying");
                } else {
                    warn!(error = %format!("{e:#}"), retry_in = ?backoff, "connection to the server lost; reconnecting");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        if s.report.connections > 0 && failures == 0 {
            backoff = Duration::from_millis(250);
        }
    }
    ep.close(0u32.into(), b"done");
    ep.wait_idle().await;
    s.report.name = s.site.name.clone();
    s.report.rounds_trained = s.site.rounds_trained.clone();
    s.report.rounds_declined = s.site.rounds_declined.clone();
    s.report.mechanism = s.site.mechanism.clone();
    s.report.disclosed_outside_epsilon = s.site.disclosed_outside_epsilon.clone();
    let l = &s.ledger.ledger;
    s.report.epsilon_record = l.epsilon(Unit::Record);
    s.report.epsilon_site = l.epsilon(Unit::Site);
    let main = |e: &GaussianEvent| {
        e.mechanism == MechanismKind::DpSgd
            || (e.mechanism == MechanismKind::ClientLevel && e.unit == Unit::Site)
    };
    let bounds = || {
        l.entries
            .iter()
            .flat_map(|e| &e.releases)
            .flat_map(|r| &r.bounds)
    };
    s.report.last_event = bounds()
        .filter(|e| main(e))
        .max_by_key(|e| e.mechanism == MechanismKind::DpSgd)
        .copied();
    if let Some(last) = s.report.last_event {
        s.report.steps_total = bounds()
            .filter(|e| e.mechanism == last.mechanism && e.unit == last.unit)
            .map(|e| e.steps)
            .sum();
    }
    Ok(s.report)
}

impl Session {
    fn max(&self) -> usize {
        self.cfg.max_frame_bytes
    }

    async fn connect_and_serve(&mut self, ep: &quinn::Endpoint) -> anyhow::Result<Outcome> {
        let family = ep.local_addr().map(|a| a.is_ipv6()).ok();
        let addr = resolve(&self.cfg.server_addr, family).await?;
        let conn = match ep
            .connect(addr, &self.cfg.server_name)
            .context("invalid server address or name")?
            .await
        {
            Ok(c) => c,
            Err(e) => return Err(connection_failure(&self.cfg, e, false)),
        };
        self.report.connections += 1;
        let hello = ClientMsg::Hello(Hello {
            protocol_version: fedssl_protocol::PROTOCOL_VERSION,
            software_version: fedssl_protocol::SOFTWARE_VERSION.into(),
            capabilities: vec![
                "simclr".into(),
                "dp-gaussian".into(),
                self.device.to_string(),
            ],
            claimed_name: self.claimed_name(),
            num_samples: self
                .cfg
                .report
                .sample_count
                .then_some(self.data.len() as u64),
        });
        // The server checks this site's certificate after `connect` returned: a refusal
        // shows on the first stream.
        let resp = match io::request(&conn, &hello, self.max(), Duration::from_secs(30)).await {
            Ok((resp, _)) => resp,
            Err(io::NetError::Connection(e)) => return Err(connection_failure(&self.cfg, e, true)),
            Err(e) => {
                return Err(anyhow::Error::new(e).context("the handshake with the server failed"))
            }
        };
        match resp {
            ServerMsg::Welcome(w) => {
                info!(name = %w.client_name, server_version = %w.software_version, committed_round = w.committed_round, "connected");
                self.site
                    .on_welcome(w.client_name, self.state.acknowledged().map(|a| a.round));
            }
            ServerMsg::Error(e) => {
                return Err(Fatal(format!("the server refused the handshake: {e}")).into())
            }
            other => bail!("unexpected answer to Hello: {other:?}"),
        }
        loop {
            let req = self.site.next_request();
            let (resp, _) = io::request(&conn, &req, self.max(), Duration::from_secs(120)).await?;
            match resp {
                ServerMsg::Task(task) => self.handle_task(&conn, *task).await?,
                ServerMsg::Wait { retry_after_ms } => {
                    tokio::time::sleep(Duration::from_millis(retry_after_ms.min(10_000))).await
                }
                ServerMsg::Finished {
                    last_round,
                    model_hash,
                } => {
                    let (resp, _) = io::request(
                        &conn,
                        &ClientMsg::FetchModel,
                        self.max(),
                        Duration::from_secs(60),
                    )
                    .await?;
                    // The server is done: no round of ours can be asked for again.
                    self.state.clear_pending();
                    if let ServerMsg::Model { model, .. } = resp {
                        let spec = match self.site.weights_spec() {
                            Some(s) => s.clone(),
                            None => model.declared_spec(),
                        };
                        let w = model
                            .decode(&spec)
                            .context("the final model from the server is invalid")?;
                        if w.hash() != model_hash {
                            warn!("final model hash differs from the announced one (a newer version?)");
                        }
                        let path = self.state.save_global(&w)?;
                        info!(round = last_round, path = %path.display(), "training finished; final global encoder saved");
                        self.report.final_model_hash = Some(w.hash());
                    }
                    conn.close(0u32.into(), b"bye");
                    return Ok(Outcome::Finished);
                }
                ServerMsg::Error(e) if e.code == ErrorCode::VersionMismatch => {
                    return Err(Fatal(e.to_string()).into())
                }
                ServerMsg::Error(e) => bail!("server refused the request: {e}"),
                other => bail!("unexpected answer to NextTask: {other:?}"),
            }
        }
    }

    fn claimed_name(&self) -> String {
        tls::cert_common_name(&self.cfg.tls.cert).unwrap_or_default()
    }

    async fn handle_task(&mut self, conn: &quinn::Connection, task: Task) -> anyhow::Result<()> {
        let round = task.round;
        let pending = self.state.pending();
        let action = self
            .site
            .on_task(task, &self.data, &self.ledger.ledger, pending.as_ref())?;
        let msg = match action {
            Action::Decline(msg) => msg,
            Action::Resend(u) => {
                info!(
                    round,
                    "sending the update privatized for this round again (the same bytes; no extra privacy cost)"
                );
                ClientMsg::Upload(u)
            }
            Action::Train(job) => {
                if job.clear_pending {
                    self.state.clear_pending();
                }
                let started = Instant::now();
                let trained = self.train(&job).await?;
                let prepared = self.site.on_trained(
                    &job,
                    trained,
                    &self.ledger.ledger,
                    self.data.len(),
                    unix_now(),
                )?;
                // Two phases: the upload is prepared, the spend made durable, then the
                // upload put in force; nothing leaves before the ledger holds the spend.
                self.state.prepare_pending(&prepared.upload)?;
                self.ledger.record(prepared.entry)?;
                self.state.promote_prepared()?;
                info!(
                    round,
                    epsilon = format!(
                        "{:.3} per {} (δ = {:e}, RDP, {})",
                        prepared.epsilon,
                        prepared.unit,
                        self.ledger.ledger.delta,
                        prepared.unit.neighbour()
                    ),
                    secs = format!("{:.1}", started.elapsed().as_secs_f64()),
                    "local round done"
                );
                ClientMsg::Upload(Box::new(prepared.upload))
            }
        };
        let (resp, _) = io::request(conn, &msg, self.max(), Duration::from_secs(120)).await?;
        match self.site.on_answer(round, resp)? {
            Answered::Acknowledged { duplicate } => {
                info!(round, duplicate, "update accepted by the server");
                // The bytes stay kept until the server moves past the round: a server that
                // lost them after a crash gets the same bytes again, never fresh noise.
                self.state
                    .save_acknowledged(round, self.ledger.ledger.entries.len())?;
            }
            Answered::Declined => {}
            Answered::Skip(e) => {
                warn!(round, error = %e, "the server refused the update; the round is over for this site")
            }
            Answered::Retry(e) => {
                warn!(round, error = %e, "the server refused the update; its privatized bytes stay kept for this round");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Ok(())
    }

    /// Runs a job on the compute pool: federated evaluation when asked, local training,
    /// collapse monitors, the site's own state, and the client-level mechanism.
    async fn train(&mut self, job: &Job) -> anyhow::Result<Trained> {
        let bar = self.progress.as_ref().map(|mp| {
            let b = mp.add(ProgressBar::new(job.steps as u64));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>10} round {msg:<12} [{bar:30}] {pos}/{len} steps {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(self.site.name.clone());
            b
        });
        let started = Instant::now();
        let site_seed = job.site_seed;
        let site_eval = match (&self.local_labels, job.site_eval) {
            (Some(l), true) => {
                // Arc clones: no data is copied.
                let (l, g, d) = (l.clone(), job.global.clone(), self.data.clone());
                let spec = job.plan.model;
                match self
                    .compute
                    .run(move || l.evaluate(&spec, &g, &d, site_seed))
                    .await?
                {
                    Ok(e) => {
                        info!(
                            round = job.round,
                            probe = e.probe_accuracy,
                            knn = e.knn_accuracy,
                            "evaluated the global model on local labels"
                        );
                        Some(e)
                    }
                    Err(e) => {
                        warn!(error = %format!("{e:#}"), "local evaluation failed; reporting none");
                        None
                    }
                }
            }
            _ => None,
        };
        let data = self.data.clone();
        let local = self.state.local_model();
        let target = self.state.target();
        let lambda = self.state.fedema_lambda();
        let plan = job.plan.clone();
        let device = self.device;
        let bar2 = bar.clone();
        let global2 = job.global.clone();
        let dp_sgd = job.privacy.dp_sgd;
        let want_collapse = job.disclose.collapse;
        let reference = self
            .collapse_reference
            .filter(|(spec, _)| *spec == job.plan.model)
            .map(|(_, r)| r);
        let (outcome, collapse) = self
            .compute
            .run(move || {
                let outcome = trainer::train(
                    device,
                    TrainJob {
                        global: &global2,
                        local: local.as_ref(),
                        target: target.as_ref(),
                        lambda,
                        data: &data,
                        plan: &plan,
                        site_seed,
                        dp_sgd,
                        progress: bar2,
                    },
                )?;
                let collapse = if want_collapse {
                    Some(local_collapse(
                        &plan.model,
                        &outcome.global,
                        &data,
                        site_seed,
                        reference,
                    )?)
                } else {
                    None
                };
                anyhow::Ok((outcome, collapse))
            })
            .await??;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let collapse = collapse.map(|(c, reference)| {
            self.collapse_reference = Some((job.plan.model, reference));
            c
        });
        self.state.save_local_model(&outcome.local)?;
        if let Some(t) = &outcome.target {
            self.state.save_target(t)?;
        }
        if let (None, Some(l)) = (lambda, outcome.merge.lambda) {
            self.state.save_fedema_lambda(l)?;
        }
        if !outcome.merge.divergence.is_nan() {
            info!(
                round = job.round,
                divergence = outcome.merge.divergence,
                mu = ?outcome.merge.mu,
                predictor_replaced = ?outcome.merge.predictor_replaced,
                "merged the global model into this site's ({})",
                job.plan.federation.name()
            );
        }
        let train_seconds = started.elapsed().as_secs_f64();
        info!(
            round = job.round,
            loss = outcome.mean_loss,
            steps = outcome.steps,
            "local training done"
        );
        let mut update = outcome.global.sub(&job.global)?;
        let mut norm_before_clip = None;
        if let Some(mech) = job.privacy.client {
            let (privatized, noised) = self
                .compute
                .run(move || mech.privatize(&mut update).map(|p| (p, update)))
                .await??;
            update = noised;
            norm_before_clip = Some(privatized.norm);
            if privatized.norm > mech.clip_norm {
                info!(
                    round = job.round,
                    norm = format!("{:.3}", privatized.norm),
                    clip_norm = mech.clip_norm,
                    "update clipped to the plan's client-level clip_norm (scaled by {:.3})",
                    mech.clip_norm / privatized.norm
                );
            }
        }
        Ok(Trained {
            update,
            norm_before_clip,
            mean_loss: outcome.mean_loss,
            train_seconds,
            collapse,
            site_eval,
        })
    }
}

/// Resolves `host:port` to one address: of the family `ipv6` (true: IPv6) when it resolves
/// to one, else the first.
async fn resolve(server_addr: &str, ipv6: Option<bool>) -> anyhow::Result<SocketAddr> {
    let all: Vec<SocketAddr> = tokio::net::lookup_host(server_addr)
        .await
        .with_context(|| format!("cannot resolve server_addr {server_addr:?}"))?
        .collect();
    all.iter()
        .find(|a| ipv6.is_none_or(|v6| a.is_ipv6() == v6))
        .or(all.first())
        .copied()
        .with_context(|| format!("server_addr {server_addr:?} resolves to no address"))
}

/// Loads a client configuration file and its data, then runs the client. Relative
/// paths in the file are relative to its folder.
/// `init_ledger`: start a new privacy ledger even though the state folder holds site state
/// (`--init-ledger`).
pub async fn run_from_file(
    path: &std::path::Path,
    init_ledger: bool,
    progress: Option<MultiProgress>,
) -> anyhow::Result<ClientReport> {
    let mut cfg: ClientConfig = fedssl_core::read_toml(path, "client config")?;
    cfg.resolve_paths(&fedssl_core::config_dir(path));
    cfg.init_ledger = init_ledger;
    cfg.validate()
        .with_context(|| format!("invalid client config {}", path.display()))?;
    let data = crate::data::load(&cfg.data)?;
    info!(samples = data.len(), "local data loaded");
    run_client(cfg, data, progress).await
}
