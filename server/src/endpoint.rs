//! The async shell around [`Engine`]: accepts QUIC + mTLS connections, reads requests on
//! streams and hands them to one driver task that owns the engine, executes the engine's
//! effects (SQLite writes, replies), sleeps until the engine's next timeout, and evaluates
//! committed models beside the rounds.

use fedssl_ml::prelude::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::config::ServerConfig;
use fedssl_ml::model::Weights;
use fedssl_net::io::{read_msg, write_msg, NetError};
use fedssl_net::{endpoint, tls};
use fedssl_protocol::{ClientMsg, ErrorCode, FrameError, ServerMsg};

use crate::engine::{Durable, Effect, Engine, Peer, RequestId, Schedule};
use crate::metrics::{append_jsonl, CounterSnapshot, Counters, RoundMetrics};
use crate::round_eval::EvalSet;
use crate::store::{Store, UpdateStatus};
use crate::telemetry::Telemetry;

/// How the server process is run.
pub struct ServerOptions {
    /// Where to draw a progress bar over rounds (`None`: no bar). Log lines must be printed
    /// through the same `MultiProgress` so they do not land inside the bar.
    pub progress: Option<MultiProgress>,
    /// Receives the bound address once the server listens.
    pub ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    /// After the last round, how long to wait for clients to fetch the final model.
    pub final_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            progress: None,
            ready: None,
            final_grace: Duration::from_secs(10),
        }
    }
}

/// What the run achieved.
#[derive(Debug, Clone)]
pub struct ServerReport {
    /// Rounds committed (in total, across restarts).
    pub rounds_completed: u64,
    /// Final global encoder.
    pub final_model: Weights,
    /// Its hash.
    pub final_hash: String,
    /// Counters of this process.
    pub counters: CounterSnapshot,
    /// Metrics of the rounds run by this process.
    pub rounds: Vec<RoundMetrics>,
    /// The operator stopped the server (`fedssl stop`) before the last round.
    pub stopped_by_operator: bool,
}

/// Loads the last committed model, or creates and persists a seeded initial one.
fn initial_state(
    store: &mut Store,
    spec: &fedssl_ml::model::ModelSpec,
    seed: u64,
) -> anyhow::Result<(u64, Weights)> {
    let w = spec.initial_global(seed).map_err(anyhow::Error::msg)?;
    if let Some((v, stored)) = store.latest_model()? {
        anyhow::ensure!(
            stored.spec() == w.spec(),
            "the run directory holds a model of another architecture than plan {:?} describes (encoder {}, objective {}); use a new run_dir",
            spec.shape,
            spec.encoder.name(),
            spec.objective
        );
        info!(round = v, hash = %stored.hash(), "resuming from the last committed round");
        return Ok((v, stored));
    }
    store.save_initial(&w)?;
    info!(hash = %w.hash(), params = w.num_params(), "initial global encoder created");
    Ok((0, w))
}

/// What every checkpoint of this server says about itself (safetensors metadata): the
/// model spec (`fedssl.spec`, JSON: what `probe` and `export` build), the plan
/// (`fedssl.plan`, TOML), the software and protocol versions.
pub fn checkpoint_metadata(
    cfg: &ServerConfig,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut m = std::collections::BTreeMap::new();
    m.insert("fedssl.format".into(), "fedssl-checkpoint-1".into());
    m.insert(
        "fedssl.spec".into(),
        serde_json::to_string(&cfg.plan.model_spec())?,
    );
    m.insert("fedssl.plan".into(), toml::to_string(&cfg.plan)?);
    m.insert(
        "fedssl.version".into(),
        fedssl_protocol::SOFTWARE_VERSION.to_string(),
    );
    m.insert(
        "fedssl.protocol".into(),
        fedssl_protocol::PROTOCOL_VERSION.to_string(),
    );
    Ok(m)
}

/// Seconds since the Unix epoch: the engine's clock (deadlines survive a restart).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Aborts its task when dropped, also when the server's future is dropped midway (an
/// embedding program aborts it): the admin socket must stop answering with the server, or a
/// restart on the same run directory would take it for a live server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the connection tasks tell the driver.
enum Input {
    /// A request, and where its answer goes.
    Request {
        req: RequestId,
        peer: Peer,
        msg: ClientMsg,
        reply: oneshot::Sender<ServerMsg>,
    },
    /// A connection closed.
    Disconnected(Peer),
}

/// What the connection tasks share.
struct Conns {
    cfg: ServerConfig,
    counters: Arc<Counters>,
    inputs: mpsc::Sender<Input>,
    next_req: AtomicU64,
    /// Authenticated connections, for closing those of a site revoked meanwhile.
    live: Arc<crate::revocation::Live>,
}

/// The engine built from the store: the last committed model, the server optimizer's and
/// adaptive clipping's state, central DP's history, and the open round with what it had
/// accepted.
fn build_engine(cfg: &ServerConfig, store: &mut Store) -> anyhow::Result<Engine> {
    let (committed, global) = initial_state(store, &cfg.plan.model_spec(), cfg.plan.seed)?;
    // Under central DP the selection must be secret (amplification by sampling assumes
    // it), so it comes from the OS, not from the plan's public seed.
    let rng = if cfg.central_dp.is_some() {
        rand_chacha::ChaCha8Rng::from_entropy()
    } else {
        rand_chacha::ChaCha8Rng::seed_from_u64(cfg.plan.seed ^ 0x5E1E_C7ED)
    };
    let now = unix_now();
    let mut engine = Engine::new(Schedule::from_config(cfg), global, committed, rng, now)
        .with_client_clip(store.latest_client_clip()?)
        .with_opt_state(store.latest_opt_state()?);
    if let Some(c) = cfg.central_dp {
        let history = store.central_history()?;
        let dp = crate::central_dp::CentralDp::new(c, history);
        info!(
            clip_norm = dp.clip_norm(),
            noise_multiplier = c.noise_multiplier,
            sample_rate = c.sample_rate,
            adaptive = c.adaptive.is_some(),
            epsilon_so_far = ?dp.epsilon(cfg.delta),
            "central DP at the server (DP-FedAvg): Poisson-sampled sites, clipped updates, noise on the sum"
        );
        engine = engine.with_central_dp(dp);
    }
    let round = committed + 1;
    if !engine.is_finished() {
        if let Some(rec) = store.open_round_record(round)? {
            let selected = rec.state.nonces.len();
            // Sites need time to reconnect and finish: at least a minute (or the whole
            // deadline, if shorter) from now.
            let grace = cfg.round_deadline_secs.min(60.0);
            let left_out = engine.resume(now, rec.state, &rec.accepted, &rec.declined, grace);
            for (name, reason) in &left_out {
                warn!(%name, round, %reason, "a stored update of the open round no longer validates; it is left out");
            }
            info!(
                round,
                accepted = rec.accepted.len() - left_out.len(),
                declined = rec.declined.len(),
                selected,
                "resuming the open round with the updates it had accepted; acknowledged sites are not asked again"
            );
        }
    }
    Ok(engine)
}

/// Runs the server until every round is committed.
pub async fn run_server(cfg: ServerConfig, opts: ServerOptions) -> anyhow::Result<ServerReport> {
    cfg.validate().context("invalid server configuration")?;
    std::fs::create_dir_all(&cfg.run_dir)
        .with_context(|| format!("cannot create run directory {}", cfg.run_dir.display()))?;
    let admin = crate::admin::bind(&cfg.run_dir).await?;
    let mut store = Store::open(&cfg.run_dir)?;
    store.describe_models(checkpoint_metadata(&cfg)?);
    let counters = Arc::new(Counters::default());
    let mut engine = build_engine(&cfg, &mut store)?.with_counters(counters.clone());
    if store.is_paused()? {
        engine.set_paused(unix_now(), true);
        warn!("the run is paused (fedssl pause): no round opens until `fedssl resume`");
    }
    let eval_set = match &cfg.eval {
        Some(e) => {
            let (e, seed, spec) = (e.clone(), cfg.plan.seed, cfg.plan.model_spec());
            Some(Arc::new(
                tokio::task::spawn_blocking(move || EvalSet::load(&e, spec, seed))
                    .await
                    .context("the evaluation-set task panicked")?
                    .context("cannot load the server's evaluation set")?,
            ))
        }
        None => None,
    };
    let crypto = tls::server_crypto(&cfg.tls)?;
    let settings = endpoint::TransportSettings {
        idle_timeout: Duration::from_secs_f64(cfg.idle_timeout_secs),
        max_bidi_streams: 8,
    };
    let ep = endpoint::server(cfg.listen, crypto, settings)?;
    let addr = ep.local_addr()?;
    fedssl_net::certs::warn_expiring(&[&cfg.tls.cert, &cfg.tls.ca]);
    let live = Arc::new(crate::revocation::Live::default());
    let crl_watch = AbortOnDrop(tokio::spawn(crate::revocation::watch_crl(
        cfg.tls.clone(),
        settings,
        ep.clone(),
        live.clone(),
    )));
    info!(%addr, rounds = cfg.rounds, min_clients = cfg.min_clients, strategy = cfg.plan.strategy.name.name(), min_updates = cfg.effective_min_updates(), "server listening (QUIC, mutual TLS 1.3)");
    let telemetry = match cfg.metrics {
        Some(m) => {
            let unit = cfg.plan.privacy.mechanism.unit();
            let t = Arc::new(
                Telemetry::new(
                    counters.clone(),
                    ep.clone(),
                    engine.committed(),
                    cfg.rounds,
                    [
                        ("unit", unit.name().to_string()),
                        ("neighbour", unit.neighbour().to_string()),
                        // Each site reports ε at the δ its own ledger pinned.
                        ("delta", "site ledger".to_string()),
                        ("accountant", "rdp".to_string()),
                    ],
                )?
                .with_dashboard(cfg.run_dir.clone()),
            );
            let (_, task) = crate::telemetry::serve(m.listen, t.clone()).await?;
            Some((t, task))
        }
        None => None,
    };
    if let Some(tx) = opts.ready {
        let _ = tx.send(addr);
    }
    let (inputs, rx) = mpsc::channel(4096);
    let conns = Arc::new(Conns {
        cfg: cfg.clone(),
        counters: counters.clone(),
        inputs,
        next_req: AtomicU64::new(0),
        live,
    });
    let accept = tokio::spawn(accept_loop(conns, ep.clone()));
    let (control, control_rx) = mpsc::channel(16);
    let admin_task = admin.map(|l| AbortOnDrop(tokio::spawn(crate::admin::serve(l, control))));
    let bar = opts.progress.as_ref().map(|mp| {
        let b = mp.add(ProgressBar::new(cfg.rounds));
        b.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} rounds {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("#> "),
        );
        b.set_prefix("server");
        b.set_position(engine.committed());
        b
    });
    let (evals, eval_rx) = mpsc::unbounded_channel();
    let evaluator = tokio::spawn(eval_worker(
        eval_rx,
        eval_set,
        cfg.rounds,
        cfg.run_dir.join("metrics.jsonl"),
        bar.clone(),
        telemetry.as_ref().map(|(t, _)| t.clone()),
    ));
    let mut driver = Driver {
        cfg: &cfg,
        engine,
        store,
        counters: counters.clone(),
        replies: HashMap::new(),
        open: None,
        stop: None,
        stopped_by_operator: false,
        evals,
        bar: bar.clone(),
    };
    let driven = driver.run(rx, control_rx, opts.final_grace).await;
    if driver.stopped_by_operator {
        ep.close(0u32.into(), b"server stopped by the operator");
    } else {
        ep.close(0u32.into(), b"server done");
    }
    accept.abort();
    if admin_task.is_some() {
        drop(admin_task);
        let _ = std::fs::remove_file(cfg.run_dir.join(crate::admin::SOCKET));
    }
    drop(crl_watch);
    let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
    let Driver {
        engine,
        evals,
        stop,
        stopped_by_operator,
        ..
    } = driver;
    drop(evals);
    let rounds = evaluator.await.context("the evaluation task panicked")??;
    if let Some((_, task)) = telemetry {
        task.abort();
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // The dashboard's page and plots as files beside the run.
    let run_dir = cfg.run_dir.clone();
    match tokio::task::spawn_blocking(move || crate::dashboard::write_files(&run_dir)).await {
        Ok(Ok(())) => info!(
            page = %cfg.run_dir.join("dashboard.html").display(),
            "dashboard and plots (plots/*.svg) written"
        ),
        Ok(Err(e)) => warn!(error = %format!("{e:#}"), "cannot write the dashboard files"),
        Err(e) => warn!(error = %e, "the dashboard task panicked"),
    }
    driven?;
    if let Some(reason) = stop {
        anyhow::bail!(reason);
    }
    Ok(ServerReport {
        rounds_completed: engine.committed(),
        final_model: engine.global().clone(),
        final_hash: engine.global_hash().to_string(),
        counters: counters.snapshot(),
        rounds,
        stopped_by_operator,
    })
}

/// The task that owns the engine: feeds it inputs and time, executes its effects.
struct Driver<'a> {
    cfg: &'a ServerConfig,
    engine: Engine,
    store: Store,
    counters: Arc<Counters>,
    replies: HashMap<RequestId, oneshot::Sender<ServerMsg>>,
    /// The open round: id, start (Unix seconds), counters when it opened.
    open: Option<(u64, f64, CounterSnapshot)>,
    /// Why the engine stopped the run, if it did.
    stop: Option<String>,
    /// The operator stopped the server (`fedssl stop`).
    stopped_by_operator: bool,
    evals: mpsc::UnboundedSender<(RoundMetrics, Weights)>,
    bar: Option<ProgressBar>,
}

impl Driver<'_> {
    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Input>,
        mut control: mpsc::Receiver<crate::admin::Request>,
        final_grace: Duration,
    ) -> anyhow::Result<()> {
        if let Some(st) = self.engine.book().round_state() {
            self.open = Some((st.round, st.started_at, CounterSnapshot::default()));
        }
        let mut grace: Option<(tokio::time::Instant, Vec<String>)> = None;
        loop {
            self.engine.handle_timeout(unix_now());
            self.execute()?;
            if self.engine.is_finished() {
                // Every site this run has seen (in any process) gets the chance to learn
                // that training is over and fetch the final model, including one that
                // reconnects only now because its connection died with a previous process.
                let (end, known) = grace.get_or_insert_with(|| {
                    let known = self.store.client_names().unwrap_or_default();
                    (tokio::time::Instant::now() + final_grace, known)
                });
                if (self.engine.connected() == 0 && self.engine.all_told_finished(known))
                    || tokio::time::Instant::now() >= *end
                {
                    return Ok(());
                }
            }
            let now = unix_now();
            let mut wake = self.engine.poll_timeout().map(|t| {
                tokio::time::Instant::now() + Duration::from_secs_f64((t - now).clamp(0.0, 3600.0))
            });
            if let Some((end, _)) = &grace {
                wake = Some(wake.map_or(*end, |w| w.min(*end)));
            }
            let sleep = async {
                match wake {
                    Some(w) => tokio::time::sleep_until(w).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                input = rx.recv() => match input {
                    Some(Input::Request { req, peer, msg, reply }) => {
                        self.replies.insert(req, reply);
                        self.engine.handle(unix_now(), req, peer, msg);
                    }
                    Some(Input::Disconnected(peer)) => {
                        debug!(name = %peer.name, "client disconnected");
                        self.engine.handle_disconnect(unix_now(), &peer);
                    }
                    None => return Ok(()),
                },
                Some((cmd, reply)) = control.recv() => {
                    let answer = self.control(cmd);
                    let _ = reply.send(answer);
                    if self.stopped_by_operator {
                        return Ok(());
                    }
                }
                _ = sleep => {}
            }
        }
    }

    /// Carries out an operator's command (see [`crate::admin`]).
    fn control(&mut self, cmd: crate::admin::Command) -> crate::admin::Answer {
        use crate::admin::Command;
        let now = unix_now();
        let outcome = match cmd {
            Command::Pause | Command::Resume => {
                let pause = cmd == Command::Pause;
                match self.store.set_paused(pause) {
                    Ok(()) => {
                        self.engine.set_paused(now, pause);
                        Ok(if pause {
                            "paused: the open round (if any) runs to its end; no new round opens until `fedssl resume` (a restart stays paused)"
                        } else {
                            "resumed: the next round opens once enough sites are connected"
                        })
                    }
                    Err(e) => Err(format!("cannot record it: {e:#}")),
                }
            }
            Command::Stop => {
                self.stopped_by_operator = true;
                Ok("stopping: every acknowledged update is durable; start the server again to resume the open round")
            }
        };
        let open_round = self.engine.book().open_round();
        let (ok, message) = match outcome {
            Ok(m) => (true, m.to_string()),
            Err(m) => (false, m),
        };
        if ok {
            warn!(command = ?cmd, committed = self.engine.committed(), open_round = ?open_round, "operator command");
        } else {
            tracing::error!(command = ?cmd, error = %message, "operator command failed");
        }
        if let Err(e) = self.execute() {
            tracing::error!(error = %format!("{e:#}"), "after the operator command");
        }
        crate::admin::Answer {
            ok,
            message,
            rounds_committed: self.engine.committed(),
            open_round,
            paused: self.engine.is_paused(),
        }
    }

    /// Executes the engine's effects until it has none.
    fn execute(&mut self) -> anyhow::Result<()> {
        while let Some(effect) = self.engine.poll_effect() {
            match effect {
                Effect::Reply { req, msg } => {
                    if let Some(tx) = self.replies.remove(&req) {
                        let _ = tx.send(msg);
                    }
                }
                Effect::Stop(reason) => {
                    tracing::error!(%reason, "the run stops");
                    self.stop.get_or_insert(reason);
                }
                Effect::Persist { token, what } => {
                    let outcome = self.write(what);
                    self.engine
                        .persisted(unix_now(), token, outcome.map_err(|e| format!("{e:#}")));
                }
            }
        }
        Ok(())
    }

    /// Makes `what` durable (and does what follows a commit).
    fn write(&mut self, what: Durable) -> anyhow::Result<()> {
        let delta = self.cfg.delta;
        match what {
            Durable::Client { name, num_samples } => self.store.touch_client(&name, num_samples),
            Durable::RoundOpened(state) => {
                self.store.open_round(&state)?;
                info!(round = state.round, selected = ?state.nonces.keys().collect::<Vec<_>>(), "round started");
                if let Some(b) = &self.bar {
                    b.set_message(format!(
                        "round {}: training on {} clients",
                        state.round,
                        state.nonces.len()
                    ));
                }
                self.open = Some((state.round, state.started_at, self.counters.snapshot()));
                Ok(())
            }
            Durable::RoundExtended(state) => self.store.update_round_state(&state),
            Durable::Update { name, upload, norm } => {
                self.store.accept_update(&name, &upload, norm)
            }
            Durable::Rejected {
                round,
                name,
                reason,
                num_samples,
            } => self.store.record_update(
                round,
                &name,
                UpdateStatus::Rejected,
                Some(&reason),
                None,
                num_samples,
                None,
                None,
            ),
            Durable::Declined {
                round,
                name,
                reason,
            } => self.store.record_update(
                round,
                &name,
                UpdateStatus::Declined,
                Some(&reason),
                None,
                None,
                None,
                None,
            ),
            Durable::Failed { round, reason } => self.store.fail_round(round, &reason),
            Durable::Commit(result) => {
                let round = result.round;
                if result.accepted < result.sampled {
                    warn!(
                        round,
                        accepted = result.accepted,
                        sampled = result.sampled,
                        "closing the round with the updates that arrived"
                    );
                }
                let (started_at, before) = match self.open.take() {
                    Some((r, t, c)) if r == round => (t, c),
                    _ => (unix_now(), self.counters.snapshot()),
                };
                let after = self.counters.snapshot();
                let mut m = RoundMetrics {
                    round,
                    clients_sampled: result.sampled,
                    clients_accepted: result.accepted,
                    clients_rejected: result.rejected,
                    clients_declined: result.declined,
                    mean_local_loss: result.mean_loss,
                    max_epsilon: result.max_epsilon,
                    bytes_up: after.bytes_up - before.bytes_up,
                    bytes_down: after.bytes_down - before.bytes_down,
                    seconds: unix_now() - started_at,
                    model_hash: result.model_hash.clone(),
                    client_std_ratio: result.client_std_ratio,
                    client_effective_rank: result.client_effective_rank,
                    federated_eval: result.federated_eval,
                    server_eval: None,
                    central_dp: result.central,
                    central_epsilon: None,
                    client_clip_norm: result.next_client_clip,
                };
                self.store
                    .commit_round(&m, &result.model, result.opt_state.as_ref())?;
                // The engine commits when told; central DP's ε then counts this round.
                let central = self.engine.book().central_dp().cloned();
                if let (Some(mut c), Some(info)) = (central, m.central_dp) {
                    c.record(info);
                    m.central_epsilon = c.epsilon(delta);
                    info!(
                        round,
                        epsilon_site = ?m.central_epsilon,
                        clip_norm = info.clip_norm,
                        next_clip_norm = info.next_clip_norm,
                        noised_count = ?info.noised_count,
                        selected = info.selected,
                        "central DP release"
                    );
                }
                let _ = self.evals.send((m, result.model));
                Ok(())
            }
        }
    }
}

/// Evaluates committed models in order, beside the rounds, and appends each round's line
/// to `metrics.jsonl`.
async fn eval_worker(
    mut rx: mpsc::UnboundedReceiver<(RoundMetrics, Weights)>,
    eval_set: Option<Arc<EvalSet>>,
    rounds: u64,
    metrics_path: std::path::PathBuf,
    bar: Option<ProgressBar>,
    telemetry: Option<Arc<Telemetry>>,
) -> anyhow::Result<Vec<RoundMetrics>> {
    let mut out = vec![];
    while let Some((mut m, model)) = rx.recv().await {
        let round = m.round;
        if let Some(set) = &eval_set {
            let (set, last) = (set.clone(), round >= rounds);
            match tokio::task::spawn_blocking(move || set.evaluate(&model, round, last)).await {
                Ok(Ok(ev)) => m.server_eval = Some(ev),
                Ok(Err(e)) => warn!(round, error = %format!("{e:#}"), "server evaluation failed"),
                Err(e) => warn!(round, error = %e, "server evaluation panicked"),
            }
        }
        append_jsonl(&metrics_path, &m)?;
        if let Some(t) = &telemetry {
            t.round_committed(&m);
        }
        info!(
            round,
            accepted = m.clients_accepted,
            rejected = m.clients_rejected,
            declined = m.clients_declined,
            loss = m
                .mean_local_loss
                .map(|l| format!("{l:.4}"))
                .unwrap_or("-".into()),
            max_epsilon = m
                .max_epsilon
                .map(|e| format!("{e:.2}"))
                .unwrap_or("-".into()),
            seconds = format!("{:.1}", m.seconds),
            probe = m
                .server_eval
                .and_then(|e| e.linear_probe_accuracy)
                .map(|a| format!("{:.2}%", 100.0 * a))
                .unwrap_or("-".into()),
            client_std_ratio = m
                .client_std_ratio
                .map(|s| format!("{s:.3}"))
                .unwrap_or("-".into()),
            "round committed"
        );
        if let Some(b) = &bar {
            b.inc(1);
        }
        out.push(m);
    }
    Ok(out)
}

async fn accept_loop(conns: Arc<Conns>, ep: quinn::Endpoint) {
    while let Some(incoming) = ep.accept().await {
        if ep.open_connections() > conns.cfg.max_connections {
            Counters::inc(&conns.counters.connections_refused);
            warn!(remote = %incoming.remote_address(), "connection refused: too many open connections");
            incoming.refuse();
            continue;
        }
        tokio::spawn(handle_connection(conns.clone(), incoming));
    }
}

async fn handle_connection(conns: Arc<Conns>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            Counters::inc(&conns.counters.handshake_failures);
            warn!(%remote, error = %e, "TLS handshake failed (certificate not from the deployment CA, or none)");
            return;
        }
    };
    let name = match tls::peer_name(&conn) {
        Ok(n) => n,
        Err(e) => {
            Counters::inc(&conns.counters.handshake_failures);
            warn!(%remote, error = %e, "cannot read the client's identity");
            conn.close(1u32.into(), b"bad client certificate");
            return;
        }
    };
    Counters::inc(&conns.counters.connections);
    debug!(%remote, %name, "connection authenticated");
    conns.live.add(&conn, &name);
    let peer = Peer {
        conn: conn.stable_id() as u64,
        name,
    };
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(handle_stream(
            conns.clone(),
            conn.clone(),
            peer.clone(),
            send,
            recv,
        ));
    }
    conns.live.remove(&conn);
    debug!(name = %peer.name, reason = ?conn.close_reason(), "connection closed");
    let _ = conns.inputs.send(Input::Disconnected(peer)).await;
}

async fn handle_stream(
    conns: Arc<Conns>,
    conn: quinn::Connection,
    peer: Peer,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let max = conns.cfg.max_frame_bytes;
    let counters = &conns.counters;
    let req = tokio::time::timeout(
        Duration::from_secs(60),
        read_msg::<ClientMsg>(&mut recv, max),
    )
    .await;
    let resp = match req {
        Err(_) => {
            debug!(name = %peer.name, "request not received in time");
            let _ = recv.stop(0u32.into());
            return;
        }
        Ok(Err(e)) => {
            let (counter, code) = match &e {
                NetError::Frame(FrameError::Oversized { .. }) => {
                    (&counters.frames_oversized, ErrorCode::Oversized)
                }
                NetError::Frame(FrameError::Truncated { .. }) => {
                    (&counters.frames_truncated, ErrorCode::Malformed)
                }
                _ => (&counters.frames_malformed, ErrorCode::Malformed),
            };
            Counters::inc(counter);
            warn!(name = %peer.name, error = %e, "bad frame refused");
            let _ = recv.stop(0u32.into());
            ServerMsg::error(code, format!("request refused: {e}"))
        }
        Ok(Ok((msg, n))) => {
            counters.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
            let (reply, answer) = oneshot::channel();
            let req = conns.next_req.fetch_add(1, Ordering::Relaxed);
            let input = Input::Request {
                req,
                peer: peer.clone(),
                msg,
                reply,
            };
            if conns.inputs.send(input).await.is_err() {
                return;
            }
            tokio::select! {
                a = answer => match a {
                    Ok(m) => m,
                    // The engine dropped the request (its connection closed, or the run ended).
                    Err(_) => return,
                },
                _ = conn.closed() => return,
            }
        }
    };
    match write_msg(&mut send, &resp, max).await {
        Ok(n) => {
            counters.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
        }
        Err(e) => debug!(name = %peer.name, error = %e, "could not answer"),
    }
}
