//! The async shell around [`Engine`]: accepts QUIC + mTLS connections, answers requests on
//! streams, runs the rounds, and persists what the engine decides.

use fedssl_ml::prelude::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::ServerConfig;
use fedssl_ml::model::Weights;
use fedssl_net::io::{read_msg, write_msg, NetError};
use fedssl_net::{endpoint, tls};
use fedssl_protocol::{ClientMsg, ErrorCode, FrameError, ModelPayload, ServerMsg, Welcome};

use crate::engine::{Engine, Poll, RoundRules, Step};
use crate::metrics::{append_jsonl, CounterSnapshot, Counters, RoundMetrics};
use crate::round_eval::EvalSet;
use crate::store::{Store, UpdateStatus};

/// How the server process is run.
pub struct ServerOptions {
    /// Show a progress bar over rounds.
    pub progress: bool,
    /// Receives the bound address once the server listens.
    pub ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    /// After the last round, how long to wait for clients to fetch the final model.
    pub final_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            progress: false,
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
}

struct Shared {
    cfg: ServerConfig,
    engine: Mutex<Engine>,
    store: Mutex<Store>,
    changed: watch::Sender<u64>,
    counters: Counters,
}

impl Shared {
    fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
    async fn wait_until(&self, pred: impl Fn(&Engine) -> bool, timeout: Duration) -> bool {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if pred(&self.engine()) {
                return true;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return false },
                _ = tokio::time::sleep_until(deadline) => return pred(&self.engine()),
            }
        }
    }
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

/// Seconds since the Unix epoch: the engine's clock (deadlines survive a restart).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Re-opens the round a previous process left open and re-folds the uploads it had
/// accepted (and acknowledged), in their original order.
fn resume_open_round(engine: &mut Engine, store: &Store, cfg: &ServerConfig) -> anyhow::Result<()> {
    let round = engine.committed() + 1;
    if engine.is_finished() {
        return Ok(());
    }
    let Some(rec) = store.open_round_record(round)? else {
        return Ok(());
    };
    let nonces = rec.state.nonces.clone();
    // Sites need time to reconnect and finish: at least a minute (or the whole deadline,
    // if shorter) from now.
    let grace = cfg.round_deadline_secs.min(60.0);
    engine.resume_round(rec.state, unix_now(), grace);
    let mut refolded = 0;
    for (name, upload) in &rec.accepted {
        match engine.submit(name, upload) {
            Ok(_) => refolded += 1,
            Err(r) => {
                warn!(%name, round, code = ?r.code, reason = %r.reason, "a stored update of the open round no longer validates; it is left out")
            }
        }
    }
    for name in &rec.declined {
        if let Some(&nonce) = nonces.get(name) {
            let _ = engine.decline(name, round, nonce);
        }
    }
    info!(
        round,
        accepted = refolded,
        declined = rec.declined.len(),
        selected = nonces.len(),
        "resuming the open round with the updates it had accepted; acknowledged sites are not asked again"
    );
    Ok(())
}

/// Runs the server until every round is committed.
pub async fn run_server(cfg: ServerConfig, opts: ServerOptions) -> anyhow::Result<ServerReport> {
    cfg.validate().context("invalid server configuration")?;
    let mut store = Store::open(&cfg.run_dir)?;
    let (committed, global) = initial_state(&mut store, &cfg.plan.model_spec(), cfg.plan.seed)?;
    let mut engine = Engine::new(global, committed, cfg.rounds)
        .with_client_clip(store.latest_client_clip()?)
        .with_strategy(cfg.plan.strategy, store.latest_opt_state()?)
        .with_rules(RoundRules {
            deadline_secs: cfg.round_deadline_secs,
            min_updates: cfg.effective_min_updates(),
            max_extensions: cfg.max_round_extensions,
        });
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
    resume_open_round(&mut engine, &store, &cfg)?;
    let crypto = tls::server_crypto(&cfg.tls)?;
    let settings = endpoint::TransportSettings {
        idle_timeout: Duration::from_secs_f64(cfg.idle_timeout_secs),
        max_bidi_streams: 8,
    };
    let ep = endpoint::server(cfg.listen, crypto, settings)?;
    let addr = ep.local_addr()?;
    info!(%addr, rounds = cfg.rounds, min_clients = cfg.min_clients, strategy = cfg.plan.strategy.name.name(), min_updates = cfg.effective_min_updates(), "server listening (QUIC, mutual TLS 1.3)");
    if let Some(tx) = opts.ready {
        let _ = tx.send(addr);
    }
    let (changed, _) = watch::channel(0u64);
    let sh = Arc::new(Shared {
        cfg,
        engine: Mutex::new(engine),
        store: Mutex::new(store),
        changed,
        counters: Counters::default(),
    });
    let accept = tokio::spawn(accept_loop(sh.clone(), ep.clone()));
    let result = run_rounds(&sh, opts.progress).await;
    // Let clients fetch the final model, then close.
    sh.notify();
    // Every site this run has seen (in any process) gets the chance to learn that training
    // is over and fetch the final model, including one that reconnects only now because
    // its connection died with a previous server process.
    let known = sh.store().client_names().unwrap_or_default();
    sh.wait_until(
        |e| e.connected() == 0 && e.all_told_finished(&known),
        opts.final_grace,
    )
    .await;
    ep.close(0u32.into(), b"server done");
    accept.abort();
    let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
    let rounds = result?;
    let e = sh.engine();
    Ok(ServerReport {
        rounds_completed: e.committed(),
        final_model: e.global().clone(),
        final_hash: e.global_hash().to_string(),
        counters: sh.counters.snapshot(),
        rounds,
    })
}

async fn run_rounds(sh: &Arc<Shared>, progress: bool) -> anyhow::Result<Vec<RoundMetrics>> {
    let cfg = &sh.cfg;
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
    // Under central DP the selection must be secret (amplification by sampling assumes
    // it), so it comes from the OS, not from the plan's public seed.
    let mut rng = if cfg.central_dp.is_some() {
        rand_chacha::ChaCha8Rng::from_entropy()
    } else {
        rand_chacha::ChaCha8Rng::seed_from_u64(cfg.plan.seed ^ 0x5E1E_C7ED)
    };
    let bar = progress.then(|| {
        let b = ProgressBar::new(cfg.rounds);
        b.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} rounds {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("#> "),
        );
        b.set_prefix("server");
        b.set_position(sh.engine().committed());
        b
    });
    let mut out = Vec::new();
    let metrics_path = cfg.run_dir.join("metrics.jsonl");
    loop {
        if sh.engine().is_finished() {
            break;
        }
        let min = cfg.min_clients;
        // Snapshot before the round opens: tasks may be sent as soon as it is open.
        let before = sh.counters.snapshot();
        let resumed = sh.engine().round_state();
        let state = match resumed {
            Some(s) => s,
            None => {
                if !sh
                    .wait_until(
                        |e| e.connected() >= min,
                        Duration::from_secs_f64(cfg.wait_for_clients_secs),
                    )
                    .await
                {
                    let n = sh.engine().connected();
                    sh.engine().finish();
                    anyhow::bail!(
                        "only {n} of the required {min} clients connected within {} s; check \
                         that the clients run and can reach the server",
                        cfg.wait_for_clients_secs
                    );
                }
                let state = {
                    let mut e = sh.engine();
                    let round = e.committed() + 1;
                    let mut plan = cfg.plan.plan(round);
                    plan.privacy.rounds = cfg.rounds;
                    if let Some(c) = e.client_clip() {
                        plan.privacy.client.clip_norm = c;
                    }
                    plan.evaluate = cfg.federated_eval_every > 0
                        && (round - 1).is_multiple_of(cfg.federated_eval_every);
                    e.start_round(unix_now(), plan, cfg.sample_fraction, min, &mut rng)
                };
                // Durable before any site can be given its task.
                if let Err(err) = sh.store().open_round(&state) {
                    sh.engine().finish();
                    return Err(err.context("cannot record the new round"));
                }
                state
            }
        };
        let round = state.round;
        info!(round, selected = ?state.nonces.keys().collect::<Vec<_>>(), "round started");
        if let Some(b) = &bar {
            b.set_message(format!(
                "round {round}: training on {} clients",
                state.nonces.len()
            ));
        }
        sh.notify();
        // The engine decides; the shell sleeps until its deadline or the next event.
        loop {
            let step = sh.engine().handle_timeout(unix_now());
            match step {
                Step::Wait => {
                    let left = sh
                        .engine()
                        .poll_timeout()
                        .map_or(0.0, |d| (d - unix_now()).max(0.0));
                    sh.wait_until(|e| e.round_complete(), Duration::from_secs_f64(left))
                        .await;
                }
                Step::Close => break,
                Step::Extended(st) => {
                    sh.store().update_round_state(&st)?;
                    warn!(
                        round,
                        selected = st.nonces.len(),
                        extension = st.extensions,
                        "the round is short of its minimum of accepted updates; extended by \
                         another deadline (with any connected sites not selected before)"
                    );
                    sh.notify();
                }
                Step::Failed(reason) => {
                    sh.store().fail_round(round, &reason)?;
                    {
                        let mut e = sh.engine();
                        e.fail_round();
                        e.finish();
                    }
                    sh.notify();
                    anyhow::bail!(
                        "{reason}. The round is recorded as failed and the model stays at \
                         version {}; restart the server to try the round again",
                        round - 1
                    );
                }
            }
        }
        let result = sh
            .engine()
            .close_round()
            .context("internal: the round vanished")?;
        if result.accepted < result.sampled {
            warn!(
                round,
                accepted = result.accepted,
                sampled = result.sampled,
                "closing the round with the updates that arrived"
            );
        }
        let after = sh.counters.snapshot();
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
            seconds: unix_now() - state.started_at,
            model_hash: result.model_hash.clone(),
            client_std_ratio: result.client_std_ratio,
            client_effective_rank: result.client_effective_rank,
            federated_eval: result.federated_eval,
            server_eval: None,
            central_dp: result.central,
            central_epsilon: None,
            client_clip_norm: result.next_client_clip,
        };
        let model = result.model.clone();
        sh.store()
            .commit_round(&m, &result.model, result.opt_state.as_ref())?;
        {
            let mut e = sh.engine();
            e.commit(result);
            m.central_epsilon = e.central_dp().and_then(|c| c.epsilon(cfg.delta));
        }
        if let Some(c) = &m.central_dp {
            info!(
                round,
                epsilon_site = ?m.central_epsilon,
                clip_norm = c.clip_norm,
                next_clip_norm = c.next_clip_norm,
                noised_count = ?c.noised_count,
                selected = c.selected,
                "central DP release"
            );
        }
        // Clients may start the next round while the server evaluates this one.
        sh.notify();
        if let Some(set) = &eval_set {
            let (set, last) = (set.clone(), round >= cfg.rounds);
            match tokio::task::spawn_blocking(move || set.evaluate(&model, round, last)).await {
                Ok(Ok(ev)) => m.server_eval = Some(ev),
                Ok(Err(e)) => warn!(round, error = %format!("{e:#}"), "server evaluation failed"),
                Err(e) => warn!(round, error = %e, "server evaluation panicked"),
            }
        }
        append_jsonl(&metrics_path, &m)?;
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
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(out)
}

async fn accept_loop(sh: Arc<Shared>, ep: quinn::Endpoint) {
    while let Some(incoming) = ep.accept().await {
        if ep.open_connections() > sh.cfg.max_connections {
            Counters::inc(&sh.counters.connections_refused);
            warn!(remote = %incoming.remote_address(), "connection refused: too many open connections");
            incoming.refuse();
            continue;
        }
        tokio::spawn(handle_connection(sh.clone(), incoming));
    }
}

async fn handle_connection(sh: Arc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            Counters::inc(&sh.counters.handshake_failures);
            warn!(%remote, error = %e, "TLS handshake failed (certificate not from the deployment CA, or none)");
            return;
        }
    };
    let name = match tls::peer_name(&conn) {
        Ok(n) => n,
        Err(e) => {
            Counters::inc(&sh.counters.handshake_failures);
            warn!(%remote, error = %e, "cannot read the client's identity");
            conn.close(1u32.into(), b"bad client certificate");
            return;
        }
    };
    Counters::inc(&sh.counters.connections);
    debug!(%remote, %name, "connection authenticated");
    let hello = Arc::new(AtomicBool::new(false));
    let id = conn.stable_id() as u64;
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(handle_stream(
            sh.clone(),
            conn.clone(),
            name.clone(),
            hello.clone(),
            send,
            recv,
        ));
    }
    if hello.load(Ordering::SeqCst) {
        sh.engine().disconnect(&name, id);
        sh.notify();
        debug!(%name, reason = ?conn.close_reason(), "client disconnected");
    }
}

async fn handle_stream(
    sh: Arc<Shared>,
    conn: quinn::Connection,
    name: String,
    hello: Arc<AtomicBool>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let max = sh.cfg.max_frame_bytes;
    let req = tokio::time::timeout(
        Duration::from_secs(60),
        read_msg::<ClientMsg>(&mut recv, max),
    )
    .await;
    let resp = match req {
        Err(_) => {
            debug!(%name, "request not received in time");
            let _ = recv.stop(0u32.into());
            return;
        }
        Ok(Err(e)) => {
            let (counter, code) = match &e {
                NetError::Frame(FrameError::Oversized { .. }) => {
                    (&sh.counters.frames_oversized, ErrorCode::Oversized)
                }
                NetError::Frame(FrameError::Truncated { .. }) => {
                    (&sh.counters.frames_truncated, ErrorCode::Malformed)
                }
                _ => (&sh.counters.frames_malformed, ErrorCode::Malformed),
            };
            Counters::inc(counter);
            warn!(%name, error = %e, "bad frame refused");
            let _ = recv.stop(0u32.into());
            ServerMsg::error(code, format!("request refused: {e}"))
        }
        Ok(Ok((msg, n))) => {
            sh.counters.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
            dispatch(&sh, &conn, &name, &hello, msg).await
        }
    };
    match write_msg(&mut send, &resp, max).await {
        Ok(n) => {
            sh.counters
                .bytes_down
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        Err(e) => debug!(%name, error = %e, "could not answer"),
    }
}

async fn dispatch(
    sh: &Arc<Shared>,
    conn: &quinn::Connection,
    name: &str,
    hello: &AtomicBool,
    msg: ClientMsg,
) -> ServerMsg {
    let c = &sh.counters;
    if !matches!(msg, ClientMsg::Hello(_)) && !hello.load(Ordering::SeqCst) {
        Counters::inc(&c.requests_without_hello);
        return ServerMsg::error(ErrorCode::HelloRequired, "send Hello first");
    }
    match msg {
        ClientMsg::Hello(h) => {
            if let Err(r) = crate::engine::check_hello(name, &h) {
                let counter = match r.code {
                    ErrorCode::VersionMismatch => &c.version_mismatches,
                    _ => &c.name_mismatches,
                };
                Counters::inc(counter);
                warn!(certificate = %name, claimed = %h.claimed_name, client_protocol = h.protocol_version, reason = %r.reason, "handshake refused");
                return ServerMsg::error(r.code, r.reason);
            }
            if let Err(e) = sh.store().touch_client(name, h.num_samples.unwrap_or(0)) {
                return ServerMsg::error(ErrorCode::Internal, format!("database error: {e}"));
            }
            let (committed, total) = {
                let mut e = sh.engine();
                e.connect(name, h.num_samples.unwrap_or(0), conn.stable_id() as u64);
                (e.committed(), e.total_rounds())
            };
            hello.store(true, Ordering::SeqCst);
            sh.notify();
            info!(%name, samples = ?h.num_samples, "client joined");
            ServerMsg::Welcome(Welcome {
                protocol_version: fedssl_protocol::PROTOCOL_VERSION,
                software_version: fedssl_protocol::SOFTWARE_VERSION.into(),
                client_name: name.to_string(),
                committed_round: committed,
                total_rounds: total,
            })
        }
        ClientMsg::NextTask { after_round } => {
            let mut rx = sh.changed.subscribe();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            loop {
                rx.borrow_and_update();
                let polled = sh.engine().poll(name, after_round);
                match polled {
                    Poll::Task(t) => return ServerMsg::Task(t),
                    Poll::Finished {
                        last_round,
                        model_hash,
                    } => {
                        sh.engine().told_finished(name);
                        return ServerMsg::Finished {
                            last_round,
                            model_hash,
                        };
                    }
                    Poll::Wait => {}
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return ServerMsg::Wait { retry_after_ms: 500 } },
                    _ = tokio::time::sleep_until(deadline) => return ServerMsg::Wait { retry_after_ms: 0 },
                    _ = conn.closed() => return ServerMsg::Wait { retry_after_ms: 0 },
                }
            }
        }
        ClientMsg::Upload(u) => {
            // Check, make durable, fold, then acknowledge; the engine stays locked
            // throughout, so a concurrent resend sees the update either wholly or not.
            let res = {
                let mut e = sh.engine();
                match e.check(name, &u) {
                    Ok(None) => Ok(crate::engine::Accepted::DUPLICATE),
                    Ok(Some(checked)) => match sh.store().accept_update(name, &u, checked.norm()) {
                        Ok(()) => e.apply(name, &u, checked),
                        Err(err) => {
                            Counters::inc(&c.persist_failures);
                            tracing::error!(%name, round = u.round, error = %format!("{err:#}"), "cannot store an accepted update durably; it is refused and the site will send it again");
                            return ServerMsg::error(
                                ErrorCode::Internal,
                                format!(
                                    "the server could not store your update durably ({err}); it \
                                     was not accepted. Your site keeps it and sends the same \
                                     bytes again; the operator should check the server's disk"
                                ),
                            );
                        }
                    },
                    Err(r) => Err(r),
                }
            };
            let resp = match res {
                Ok(a) if a.duplicate => ServerMsg::UploadAccepted {
                    round: u.round,
                    duplicate: true,
                },
                Ok(a) => {
                    Counters::inc(&c.updates_accepted);
                    info!(%name, round = u.round, norm = format!("{:.3}", a.norm), loss = ?u.report.mean_loss, epsilon = ?u.report.epsilon, "update accepted");
                    ServerMsg::UploadAccepted {
                        round: u.round,
                        duplicate: false,
                    }
                }
                Err(r) => {
                    Counters::inc(&c.updates_rejected);
                    if matches!(r.code, ErrorCode::StaleRound | ErrorCode::UnknownNonce) {
                        Counters::inc(&c.updates_replayed);
                    }
                    warn!(%name, round = u.round, code = ?r.code, reason = %r.reason, "update rejected");
                    let _ = sh.store().record_update(
                        u.round,
                        name,
                        UpdateStatus::Rejected,
                        Some(&format!("{:?}: {}", r.code, r.reason)),
                        None,
                        u.report.num_samples,
                        None,
                        None,
                    );
                    ServerMsg::error(r.code, r.reason)
                }
            };
            sh.notify();
            resp
        }
        ClientMsg::Decline {
            round,
            nonce,
            reason,
        } => {
            let res = sh.engine().decline(name, round, nonce);
            sh.notify();
            match res {
                Ok(()) => {
                    info!(%name, round, %reason, "client declined the round");
                    let _ = sh.store().record_update(
                        round,
                        name,
                        UpdateStatus::Declined,
                        Some(&reason),
                        None,
                        None,
                        None,
                        None,
                    );
                    ServerMsg::DeclineNoted { round }
                }
                Err(r) => ServerMsg::error(r.code, r.reason),
            }
        }
        ClientMsg::FetchModel => {
            let e = sh.engine();
            ServerMsg::Model {
                version: e.committed(),
                model: ModelPayload::from_weights(e.global()),
            }
        }
    }
}
