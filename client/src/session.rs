//! The client's session with the server: handshake, long-poll for tasks, train, privatize,
//! upload; reconnect with exponential backoff when the server is gone, resuming where it was.

use fedssl_ml::prelude::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tracing::{info, warn};

use crate::config::{ClientConfig, ReportConfig};
use fedssl_core::device::{self, ComputeDevice};
use fedssl_ml::data::Dataset;
use fedssl_ml::model::{ModelSpec, WeightsSpec};
use fedssl_net::{endpoint, io, tls};
use fedssl_privacy::ledger::{GaussianEvent, LedgerEntry, MechanismKind, Unit};
use fedssl_privacy::Mechanism;
use fedssl_protocol::{
    ClientMsg, ErrorCode, Hello, ModelPayload, ServerMsg, SiteReport, Task, Upload,
};

use crate::compute::Compute;
use crate::evaluate::{local_collapse, LocalLabels};
use crate::ledger::{unix_now, LedgerStore};
use crate::privacy::RoundPrivacy;
use crate::site::{decide, Decision};
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

/// Errors after which retrying cannot help.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Fatal(String);

enum Outcome {
    Finished,
}

struct Session {
    cfg: ClientConfig,
    /// Shared with the blocking training / evaluation tasks without copying.
    data: Arc<Dataset>,
    local_labels: Option<Arc<LocalLabels>>,
    device: ComputeDevice,
    /// The last plan's model and the names and shapes of its global tensors (built once
    /// per distinct model, not per round).
    spec: Option<(ModelSpec, WeightsSpec)>,
    /// The random-init encoder's effective rank on this site's monitor samples, for the
    /// model it was measured for: the collapse monitor's reference, measured once per model.
    collapse_reference: Option<(ModelSpec, f64)>,
    state: SiteState,
    ledger: LedgerStore,
    report: ClientReport,
    last_round: u64,
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
    let settings = endpoint::TransportSettings {
        idle_timeout: Duration::from_secs_f64(cfg.idle_timeout_secs),
        ..Default::default()
    };
    let ep = endpoint::client(cfg.server_addr, crypto, settings)?;
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
        spec: None,
        state,
        ledger,
        last_round: 0,
        progress,
        compute,
    };
    let mut failures = 0u32;
    let mut backoff = Duration::from_millis(250);
    loop {
        match s.connect_and_serve(&ep).await {
            Ok(Outcome::Finished) => break,
            Err(e) if e.downcast_ref::<Fatal>().is_some() => {
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
                warn!(error = %format!("{e:#}"), retry_in = ?backoff, "connection to the server lost; reconnecting");
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
        let addr: SocketAddr = self.cfg.server_addr;
        let conn = ep
            .connect(addr, &self.cfg.server_name)
            .context("invalid server address or name")?
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
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
        let (resp, _) = io::request(&conn, &hello, self.max(), Duration::from_secs(30))
            .await
            .map_err(|e| {
                // The server refuses bad certificates after `connect` returned Ok; it shows
                // here, on the first stream.
                anyhow::Error::new(e).context(
                    "handshake with the server failed (a refused certificate shows up here)",
                )
            })?;
        match resp {
            ServerMsg::Welcome(w) => {
                info!(name = %w.client_name, server_version = %w.software_version, committed_round = w.committed_round, "connected");
                self.report.name = w.client_name;
                self.last_round = crate::site::resume_after(
                    self.last_round,
                    self.state.acknowledged().map(|a| a.round),
                );
            }
            ServerMsg::Error(e) => {
                return Err(Fatal(format!("the server refused the handshake: {e}")).into())
            }
            other => bail!("unexpected answer to Hello: {other:?}"),
        }
        loop {
            let req = ClientMsg::NextTask {
                after_round: self.last_round,
            };
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
                        let spec = match &self.spec {
                            Some((_, s)) => s.clone(),
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
        let msg = match self.prepare(task).await? {
            Ok(upload) => ClientMsg::Upload(Box::new(upload)),
            Err(decline) => decline,
        };
        let (resp, _) = io::request(conn, &msg, self.max(), Duration::from_secs(120)).await?;
        match resp {
            ServerMsg::UploadAccepted { duplicate, .. } => {
                info!(round, duplicate, "update accepted by the server");
                // The bytes stay kept until the server moves past the round: a server that
                // lost them after a crash gets the same bytes again, never fresh noise.
                self.state
                    .save_acknowledged(round, self.ledger.ledger.entries.len())?;
                if !self.report.rounds_trained.contains(&round) {
                    self.report.rounds_trained.push(round);
                }
                self.last_round = round;
            }
            ServerMsg::DeclineNoted { .. } => {
                self.report.rounds_declined.push(round);
                self.last_round = round;
            }
            ServerMsg::Error(e) => {
                warn!(round, error = %e, "the server refused the update; its privatized bytes stay kept for this round");
                match e.code {
                    // The round is over or not ours: wait for the next one.
                    ErrorCode::StaleRound | ErrorCode::NotSelected => {
                        self.last_round = self.last_round.max(round)
                    }
                    // Ask for the round again: the same bytes go out under the new nonce.
                    _ => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
            other => bail!("unexpected answer to an upload: {other:?}"),
        }
        Ok(())
    }

    /// Trains and privatizes (or reuses a pending update for the same round and base model).
    async fn prepare(&mut self, task: Task) -> anyhow::Result<Result<Upload, ClientMsg>> {
        let spec = match &self.spec {
            Some((m, s)) if *m == task.plan.model => s.clone(),
            _ => {
                let s = task
                    .plan
                    .model
                    .initial_global(0)
                    .map_err(|e| {
                        Fatal(format!(
                            "the server's plan does not describe a valid model: {e}"
                        ))
                    })?
                    .spec();
                self.spec = Some((task.plan.model, s.clone()));
                s
            }
        };
        let global = task
            .model
            .decode(&spec)
            .context("the global model from the server is invalid")?;
        anyhow::ensure!(
            global.is_finite(),
            "the global model from the server has NaN values"
        );
        let base_hash = task.model.hash.clone();
        let decline = |reason: String| {
            Ok(Err(ClientMsg::Decline {
                round: task.round,
                nonce: task.nonce,
                reason,
            }))
        };
        match decide(
            task.round,
            &base_hash,
            task.nonce,
            self.state.pending().as_ref(),
            &self.ledger.ledger,
        ) {
            Decision::Resend(u) => {
                info!(
                    round = task.round,
                    "sending the update privatized for this round again (the same bytes; no extra privacy cost)"
                );
                return Ok(Ok(*u));
            }
            Decision::Decline(reason) => {
                warn!(round = task.round, "declining: {reason}");
                return decline(reason);
            }
            Decision::Fresh { clear_pending } => {
                if clear_pending {
                    self.state.clear_pending();
                }
            }
        }
        self.report.mechanism = task.plan.privacy.mechanism.name().into();
        if let Err(e) = trainer::check_data(&self.data, &task.plan) {
            warn!(round = task.round, "declining: {e:#}");
            return decline(format!("{e:#}"));
        }
        let trainable = trainer::trainable_params(&task.plan.model)?;
        let privacy = match RoundPrivacy::new(
            &task.plan,
            self.data.len(),
            trainable,
            spec.num_params(),
            self.ledger.ledger.delta,
        ) {
            Ok(p) => p,
            Err(e) => {
                warn!(round = task.round, "declining: {e:#}");
                return decline(format!("{e:#}"));
            }
        };
        let releases = privacy.releases();
        if let Err(e) = self
            .ledger
            .ledger
            .check(privacy.unit(), &releases, self.cfg.epsilon_budget)
        {
            let reason = if privacy.mechanism.is_private() {
                e.to_string()
            } else {
                format!("the server's plan trains without DP (mechanism \"none\"), and this site's epsilon_budget is {}; only a site with epsilon_budget = inf takes part in such rounds", self.cfg.epsilon_budget)
            };
            warn!(round = task.round, "{reason}");
            return decline(reason);
        }
        let steps = match privacy.dp_sgd {
            Some(s) => s.steps as usize,
            None => trainer::steps_per_round(self.data.len(), &task.plan),
        };
        let bar = self.progress.as_ref().map(|mp| {
            let b = mp.add(ProgressBar::new(steps as u64));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>10} round {msg:<12} [{bar:30}] {pos}/{len} steps {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(self.report.name.clone());
            b
        });
        let started = Instant::now();
        let site_seed = hash_name(&self.report.name);
        // What may leave the site next to the update: everything without DP, else what the
        // site opted in to.
        let disclose = if privacy.mechanism.is_private() {
            self.cfg.report
        } else {
            ReportConfig::ALL
        };
        let site_eval = match (&self.local_labels, task.plan.evaluate && disclose.site_eval) {
            (Some(l), true) => {
                // Arc clones: no data is copied.
                let (l, g, d, seed) = (l.clone(), global.clone(), self.data.clone(), site_seed);
                let spec = task.plan.model;
                match self
                    .compute
                    .run(move || l.evaluate(&spec, &g, &d, seed))
                    .await?
                {
                    Ok(e) => {
                        info!(
                            round = task.round,
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
        let plan = task.plan.clone();
        let device = self.device;
        let bar2 = bar.clone();
        let global2 = global.clone();
        let dp_sgd = privacy.dp_sgd;
        let want_collapse = disclose.collapse;
        let reference = self
            .collapse_reference
            .filter(|(spec, _)| *spec == task.plan.model)
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
            self.collapse_reference = Some((task.plan.model, reference));
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
                round = task.round,
                divergence = outcome.merge.divergence,
                mu = ?outcome.merge.mu,
                predictor_replaced = ?outcome.merge.predictor_replaced,
                "merged the global model into this site's ({})",
                task.plan.federation.name()
            );
        }
        let mut update = outcome.global.sub(&global)?;
        let mut clip_count = None;
        if let Some(mech) = privacy.client {
            let (privatized, noised) = self
                .compute
                .run(move || mech.privatize(&mut update).map(|p| (p, update)))
                .await??;
            update = noised;
            clip_count = privacy.noised_indicator(privatized.norm)?;
            if privatized.norm > mech.clip_norm {
                info!(
                    round = task.round,
                    norm = format!("{:.3}", privatized.norm),
                    clip_norm = mech.clip_norm,
                    "update clipped to the plan's client-level clip_norm (scaled by {:.3})",
                    mech.clip_norm / privatized.norm
                );
            }
        }
        let entry = LedgerEntry {
            round: task.round,
            base_model_hash: base_hash.clone(),
            at: unix_now(),
            releases,
        };
        let unit = privacy.unit();
        let epsilon = self
            .ledger
            .ledger
            .epsilon_with(unit, &entry.releases)
            .unwrap_or(f64::INFINITY);
        let report = SiteReport {
            num_samples: disclose.sample_count.then_some(self.data.len() as u64),
            mean_loss: disclose.loss.then_some(outcome.mean_loss),
            epsilon: (disclose.epsilon && epsilon.is_finite()).then_some(epsilon),
            train_seconds: disclose
                .train_seconds
                .then(|| started.elapsed().as_secs_f64()),
            collapse,
            site_eval,
            clip_count,
        };
        if privacy.mechanism.is_private() {
            for f in report.disclosed() {
                if !self.report.disclosed_outside_epsilon.iter().any(|d| d == f) {
                    self.report.disclosed_outside_epsilon.push(f.to_string());
                }
            }
        }
        let upload = Upload {
            round: task.round,
            nonce: task.nonce,
            base_model_hash: base_hash,
            update: ModelPayload::from_weights(&update),
            report,
        };
        // Two phases: the upload is prepared, the spend made durable, then the upload put
        // in force; nothing leaves before the ledger holds the spend.
        self.state.prepare_pending(&upload)?;
        self.ledger.record(entry)?;
        self.state.promote_prepared()?;
        info!(
            round = task.round,
            loss = outcome.mean_loss,
            steps = outcome.steps,
            epsilon = format!(
                "{epsilon:.3} per {unit} (δ = {:e}, RDP, add-or-remove one {unit})",
                self.ledger.ledger.delta
            ),
            secs = format!("{:.1}", started.elapsed().as_secs_f64()),
            "local round done"
        );
        Ok(Ok(upload))
    }
}

fn hash_name(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Loads a client configuration file and its data, then runs the client.
/// `init_ledger`: start a new privacy ledger even though the state folder holds site state
/// (`--init-ledger`).
pub async fn run_from_file(
    path: &std::path::Path,
    init_ledger: bool,
) -> anyhow::Result<ClientReport> {
    let mut cfg: ClientConfig = fedssl_core::read_toml(path, "client config")?;
    cfg.init_ledger = init_ledger;
    cfg.validate()
        .with_context(|| format!("invalid client config {}", path.display()))?;
    let data = crate::data::load(&cfg.data)?;
    info!(samples = data.len(), "local data loaded");
    run_client(cfg, data, Some(MultiProgress::new())).await
}
