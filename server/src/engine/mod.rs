//! The server's protocol engine, in quinn-proto's shape: no sockets, no clocks, no disk.
//!
//! The shell feeds it what happened — a request from an authenticated peer
//! ([`Engine::handle`]), a closed connection ([`Engine::handle_disconnect`]), the passing of
//! time ([`Engine::handle_timeout`] at [`Engine::poll_timeout`]), the outcome of a write it
//! asked for ([`Engine::persisted`]) — and executes what it asks for ([`Engine::poll_effect`]):
//! make something durable, answer a request, stop the run.
//!
//! The engine owns every rule of a run: the handshake (protocol version, the name the
//! certificate carries, Hello before anything else), waiting for `min_clients`, sampling,
//! the plan of each round, long polls, deadlines and extensions, validation and the
//! strategy's aggregate, and the order of durability: a reply that acknowledges something
//! (a Welcome, an accepted upload) is released only after the shell reports the write done,
//! a task is handed out only once its round is durable, and a round's model becomes global
//! only once its commit is durable. The round book itself is [`rounds::Rounds`].

pub mod rounds;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use fedssl_ml::model::Weights;
use fedssl_protocol::{ClientMsg, ErrorCode, ModelPayload, ServerMsg, SiteReport, Upload, Welcome};
use rand_chacha::ChaCha8Rng;

use crate::central_dp::CentralDp;
use crate::config::{PlanConfig, ServerConfig};
use crate::metrics::Counters;
use crate::strategy::config::StrategyConfig;
use crate::strategy::OptState;

pub use rounds::{
    check_hello, Accepted, FederatedEval, Poll, RoundResult, RoundRules, RoundState, Rounds, Step,
};

/// How long a `NextTask` long poll is held before the client is told to ask again.
pub const LONG_POLL_SECS: f64 = 15.0;

/// Identifies one request, so that its answer reaches the stream that asked.
pub type RequestId = u64;

/// An authenticated connection: the shell's id for it and the name its verified
/// certificate carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The connection's id (unique while it lives).
    pub conn: u64,
    /// The site's name, from its certificate (never from what it claims).
    pub name: String,
}

/// Something to make durable before the engine goes on.
#[derive(Debug, Clone)]
pub enum Durable {
    /// A site said Hello: remember it (it is offered the final model even after a restart).
    Client {
        /// The site.
        name: String,
        /// The sample count it claimed (a plain number from the network).
        num_samples: u64,
    },
    /// A round opened: its plan, selection and nonces, before any task is handed out.
    RoundOpened(Box<RoundState>),
    /// An open round was extended (new deadline, sites added).
    RoundExtended(Box<RoundState>),
    /// An accepted update, before its acknowledgement.
    Update {
        /// The site.
        name: String,
        /// What it sent.
        upload: Box<Upload>,
        /// The update's L2 norm.
        norm: f64,
    },
    /// A closed round's new model, before it becomes global.
    Commit(Box<RoundResult>),
    /// A round that cannot reach its minimum, recorded as failed.
    Failed {
        /// Round id.
        round: u64,
        /// Why.
        reason: String,
    },
    /// An upload that was refused (a record for the operator; best effort).
    Rejected {
        /// Round the upload named.
        round: u64,
        /// The site.
        name: String,
        /// Error code and reason.
        reason: String,
        /// The sample count it claimed.
        num_samples: Option<u64>,
    },
    /// A site declined a round (best effort: a lost record only means it is asked again).
    Declined {
        /// Round id.
        round: u64,
        /// The site.
        name: String,
        /// Its reason.
        reason: String,
    },
}

/// What the engine asks the shell to do.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Write `what` durably, then call [`Engine::persisted`] with `token` and the outcome.
    /// Writes marked best effort (rejections, declines) may fail without consequence but
    /// still report back.
    Persist {
        /// Pass back to [`Engine::persisted`].
        token: u64,
        /// What to write.
        what: Durable,
    },
    /// Send `msg` as the answer to request `req`.
    Reply {
        /// The request.
        req: RequestId,
        /// The answer.
        msg: ServerMsg,
    },
    /// The run cannot go on: end it with this message (sites are told training is over).
    Stop(String),
}

/// When and how rounds are run: everything the engine needs from the server's config.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The plan rounds are built from.
    pub plan: PlanConfig,
    /// Rounds in the run.
    pub rounds: u64,
    /// Sites that must be connected before a round opens.
    pub min_clients: usize,
    /// Fraction of connected sites sampled per round.
    pub sample_fraction: f64,
    /// Seconds to wait for `min_clients` before the run stops.
    pub wait_for_clients_secs: f64,
    /// Ask sites to evaluate every this many rounds (0: never).
    pub federated_eval_every: u64,
    /// Deadlines, minimum updates, extensions.
    pub rules: RoundRules,
}

impl Schedule {
    /// The schedule `cfg` describes.
    pub fn from_config(cfg: &ServerConfig) -> Self {
        Self {
            plan: cfg.plan.clone(),
            rounds: cfg.rounds,
            min_clients: cfg.min_clients,
            sample_fraction: cfg.sample_fraction,
            wait_for_clients_secs: cfg.wait_for_clients_secs,
            federated_eval_every: cfg.federated_eval_every,
            rules: RoundRules {
                deadline_secs: cfg.round_deadline_secs,
                min_updates: cfg.effective_min_updates(),
                max_extensions: cfg.max_round_extensions,
            },
        }
    }
}

/// What a write in flight was for.
#[derive(Debug)]
enum Pending {
    Client {
        req: RequestId,
        peer: Peer,
        num_samples: u64,
    },
    Round,
    Update {
        req: RequestId,
        name: String,
        round: u64,
        nonce: u64,
        hash: String,
        report: SiteReport,
        checked: rounds::Checked,
    },
    Commit(Box<RoundResult>),
    Failed(String),
    BestEffort,
}

#[derive(Debug)]
struct LongPoll {
    req: RequestId,
    peer: Peer,
    after_round: u64,
    expires: f64,
}

/// The server's engine (see the module documentation).
#[derive(Debug)]
pub struct Engine {
    book: Rounds,
    schedule: Schedule,
    rng: ChaCha8Rng,
    counters: Arc<Counters>,
    /// Connections that completed the handshake.
    hello: HashSet<u64>,
    polls: Vec<LongPoll>,
    effects: VecDeque<Effect>,
    pending: HashMap<u64, Pending>,
    next_token: u64,
    /// The open round is durable (tasks may be handed out).
    durable: bool,
    /// A round is being opened, extended, committed or failed: wait for the write.
    busy: bool,
    /// Sites whose accepted upload is being written.
    storing: HashSet<String>,
    /// Since when the engine waits for `min_clients` (no round open).
    waiting_since: f64,
    /// The operator paused the run: the open round finishes, no new one opens.
    paused: bool,
}

impl Engine {
    /// An engine at `now` whose last committed round is `committed`, holding `global`.
    /// `rng` draws the selection and nonces (from the OS under central DP, whose
    /// amplification by sampling assumes a secret selection).
    pub fn new(
        schedule: Schedule,
        global: Weights,
        committed: u64,
        rng: ChaCha8Rng,
        now: f64,
    ) -> Self {
        let book = Rounds::new(global, committed, schedule.rounds)
            .with_strategy(schedule.plan.strategy, None)
            .with_rules(schedule.rules);
        Self {
            book,
            schedule,
            rng,
            counters: Arc::new(Counters::default()),
            hello: HashSet::new(),
            polls: vec![],
            effects: VecDeque::new(),
            pending: HashMap::new(),
            next_token: 0,
            durable: false,
            busy: false,
            storing: HashSet::new(),
            waiting_since: now,
            paused: false,
        }
    }

    /// Pauses or resumes the run at `now`. Paused, the open round (if any) runs to its end
    /// as usual, and no round opens after it; sites asking for work are told to wait.
    /// Resuming restarts the wait for `min_clients` from `now`.
    pub fn set_paused(&mut self, now: f64, paused: bool) {
        if self.paused && !paused {
            self.waiting_since = now;
        }
        self.paused = paused;
        self.advance(now);
    }

    /// Whether the run is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Counts into `counters` (shared with the shell, which counts bytes and frames).
    pub fn with_counters(mut self, counters: Arc<Counters>) -> Self {
        self.counters = counters;
        self
    }

    /// Resumes the server optimizer's state `opt` (from the store).
    pub fn with_opt_state(mut self, opt: Option<OptState>) -> Self {
        let cfg: StrategyConfig = self.schedule.plan.strategy;
        self.book = self.book.with_strategy(cfg, opt);
        self
    }

    /// Resumes client-level adaptive clipping at `clip` (from the store).
    pub fn with_client_clip(mut self, clip: Option<f64>) -> Self {
        self.book = self.book.with_client_clip(clip);
        self
    }

    /// Central DP at the server (see [`crate::central_dp`]).
    pub fn with_central_dp(mut self, central: CentralDp) -> Self {
        self.book = self.book.with_central_dp(central);
        self
    }

    /// Re-opens the round a previous process persisted as `state` and re-folds the uploads
    /// it had accepted (and acknowledged) and the declines it had noted, in their order.
    /// The deadline is at least `grace_secs` after `now`, so sites have time to reconnect.
    /// Returns the uploads that no longer validate (left out), with the reason.
    pub fn resume(
        &mut self,
        now: f64,
        state: RoundState,
        accepted: &[(String, Upload)],
        declined: &[String],
        grace_secs: f64,
    ) -> Vec<(String, String)> {
        let round = state.round;
        let nonces = state.nonces.clone();
        self.book.resume_round(state, now, grace_secs);
        let mut left_out = vec![];
        for (name, upload) in accepted {
            if let Err(r) = self.book.submit(name, upload) {
                left_out.push((name.clone(), format!("{:?}: {}", r.code, r.reason)));
            }
        }
        for name in declined {
            if let Some(&nonce) = nonces.get(name) {
                let _ = self.book.decline(name, round, nonce);
            }
        }
        self.durable = true;
        left_out
    }

    /// The round book (read only).
    pub fn book(&self) -> &Rounds {
        &self.book
    }

    /// The global model.
    pub fn global(&self) -> &Weights {
        self.book.global()
    }

    /// Its hash.
    pub fn global_hash(&self) -> &str {
        self.book.global_hash()
    }

    /// Last committed round.
    pub fn committed(&self) -> u64 {
        self.book.committed()
    }

    /// True once the run is over (every round committed, or stopped).
    pub fn is_finished(&self) -> bool {
        self.book.is_finished()
    }

    /// Sites connected now (after their Hello).
    pub fn connected(&self) -> usize {
        self.book.connected()
    }

    /// True when every site in `names` was told that training is over.
    pub fn all_told_finished(&self, names: &[String]) -> bool {
        self.book.all_told_finished(names)
    }

    /// The next effect for the shell to execute, if any.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When [`Engine::handle_timeout`] must next be called (Unix seconds): the open round's
    /// deadline, the end of the wait for `min_clients`, or a long poll's expiry.
    pub fn poll_timeout(&self) -> Option<f64> {
        let mut t: Option<f64> = None;
        let mut take = |x: f64| t = Some(t.map_or(x, |t| t.min(x)));
        if !self.book.is_finished() && !self.busy {
            match self.book.poll_timeout() {
                Some(d) => take(d),
                None if self.paused => {}
                None => take(self.waiting_since + self.schedule.wait_for_clients_secs),
            }
        }
        for p in &self.polls {
            take(p.expires);
        }
        t
    }

    /// Time passed: expire long polls, close, extend or fail the open round, or stop when
    /// too few sites came.
    pub fn handle_timeout(&mut self, now: f64) {
        let (expired, kept): (Vec<LongPoll>, Vec<LongPoll>) = std::mem::take(&mut self.polls)
            .into_iter()
            .partition(|p| p.expires <= now);
        self.polls = kept;
        for p in expired {
            self.reply(p.req, ServerMsg::Wait { retry_after_ms: 0 });
        }
        self.advance(now);
    }

    /// A connection closed. Its long polls are dropped; a site keeps its slot in an open
    /// round (it may reconnect before the deadline).
    pub fn handle_disconnect(&mut self, now: f64, peer: &Peer) {
        self.hello.remove(&peer.conn);
        self.polls.retain(|p| p.peer.conn != peer.conn);
        self.book.disconnect(&peer.name, peer.conn);
        self.advance(now);
    }

    /// A request `req` from `peer`. Its answer comes as an [`Effect::Reply`], at once or
    /// later (a long poll, or after a write).
    pub fn handle(&mut self, now: f64, req: RequestId, peer: Peer, msg: ClientMsg) {
        let c = self.counters.clone();
        if !matches!(msg, ClientMsg::Hello(_)) && !self.hello.contains(&peer.conn) {
            Counters::inc(&c.requests_without_hello);
            return self.reply(
                req,
                ServerMsg::error(ErrorCode::HelloRequired, "send Hello first"),
            );
        }
        match msg {
            ClientMsg::Hello(h) => {
                if let Err(r) = check_hello(&peer.name, &h) {
                    Counters::inc(match r.code {
                        ErrorCode::VersionMismatch => &c.version_mismatches,
                        _ => &c.name_mismatches,
                    });
                    tracing::warn!(certificate = %peer.name, claimed = %h.claimed_name, client_protocol = h.protocol_version, reason = %r.reason, "handshake refused");
                    return self.reply(req, ServerMsg::error(r.code, r.reason));
                }
                let num_samples = h.num_samples.unwrap_or(0);
                self.persist(
                    Durable::Client {
                        name: peer.name.clone(),
                        num_samples,
                    },
                    Pending::Client {
                        req,
                        peer,
                        num_samples,
                    },
                );
            }
            ClientMsg::NextTask { after_round } => {
                self.polls.push(LongPoll {
                    req,
                    peer,
                    after_round,
                    expires: now + LONG_POLL_SECS,
                });
                self.answer_polls();
            }
            ClientMsg::Upload(u) => self.upload(req, peer.name, *u),
            ClientMsg::Decline {
                round,
                nonce,
                reason,
            } => match self.book.decline(&peer.name, round, nonce) {
                Ok(()) => {
                    tracing::info!(name = %peer.name, round, %reason, "client declined the round");
                    self.persist(
                        Durable::Declined {
                            round,
                            name: peer.name,
                            reason,
                        },
                        Pending::BestEffort,
                    );
                    self.reply(req, ServerMsg::DeclineNoted { round });
                }
                Err(r) => self.reply(req, ServerMsg::error(r.code, r.reason)),
            },
            ClientMsg::FetchModel => {
                let msg = ServerMsg::Model {
                    version: self.book.committed(),
                    model: ModelPayload::from_weights(self.book.global()),
                };
                self.reply(req, msg);
            }
        }
        self.advance(now);
    }

    /// The shell wrote what [`Effect::Persist`] `token` asked for (`Ok`), or could not
    /// (`Err` with the reason). The engine releases what waited on it.
    pub fn persisted(&mut self, now: f64, token: u64, outcome: Result<(), String>) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        match (p, outcome) {
            (Pending::BestEffort, Err(e)) => {
                tracing::warn!(error = %e, "could not record a refusal or decline")
            }
            (Pending::BestEffort, Ok(())) => {}
            (
                Pending::Client {
                    req,
                    peer,
                    num_samples,
                },
                Ok(()),
            ) => {
                self.book.connect(&peer.name, num_samples, peer.conn);
                self.hello.insert(peer.conn);
                tracing::info!(name = %peer.name, samples = num_samples, "client joined");
                let msg = ServerMsg::Welcome(Welcome {
                    protocol_version: fedssl_protocol::PROTOCOL_VERSION,
                    software_version: fedssl_protocol::SOFTWARE_VERSION.into(),
                    client_name: peer.name,
                    committed_round: self.book.committed(),
                    total_rounds: self.book.total_rounds(),
                });
                self.reply(req, msg);
            }
            (Pending::Client { req, .. }, Err(e)) => self.reply(
                req,
                ServerMsg::error(ErrorCode::Internal, format!("database error: {e}")),
            ),
            (Pending::Round, Ok(())) => {
                self.busy = false;
                self.durable = true;
            }
            (Pending::Round, Err(e)) => self.stop(format!("cannot record the round: {e}")),
            (
                Pending::Update {
                    req,
                    name,
                    round,
                    nonce,
                    hash,
                    report,
                    checked,
                },
                outcome,
            ) => {
                self.storing.remove(&name);
                let msg = match outcome {
                    Ok(()) => match self.book.apply(&name, round, nonce, &hash, report, checked) {
                        Ok(a) => self.accepted(&name, round, a, &report),
                        Err(r) => self.rejected(&name, round, r, report.num_samples),
                    },
                    Err(e) => {
                        Counters::inc(&self.counters.persist_failures);
                        tracing::error!(%name, round, error = %e, "cannot store an accepted update durably; it is refused and the site will send it again");
                        ServerMsg::error(
                            ErrorCode::Internal,
                            format!(
                                "the server could not store your update durably ({e}); it was \
                                 not accepted. Your site keeps it and sends the same bytes \
                                 again; the operator should check the server's disk"
                            ),
                        )
                    }
                };
                self.reply(req, msg);
            }
            (Pending::Commit(result), Ok(())) => {
                self.busy = false;
                self.durable = false;
                self.book.commit(*result);
                self.waiting_since = now;
            }
            (Pending::Commit(result), Err(e)) => self.stop(format!(
                "cannot commit round {}: {e}; the model stays at version {}",
                result.round,
                self.book.committed()
            )),
            (Pending::Failed(reason), outcome) => {
                if let Err(e) = outcome {
                    tracing::error!(error = %e, "could not record the failed round");
                }
                self.book.fail_round();
                let round = self.book.committed() + 1;
                self.stop(format!(
                    "{reason}. The round is recorded as failed and the model stays at version \
                     {}; restart the server to try the round again",
                    round - 1
                ));
            }
        }
        self.advance(now);
    }

    fn upload(&mut self, req: RequestId, name: String, u: Upload) {
        if self.storing.contains(&name) {
            return self.reply(
                req,
                ServerMsg::error(
                    ErrorCode::Internal,
                    "your previous upload is still being stored; send it again in a moment",
                ),
            );
        }
        match self.book.check(&name, &u) {
            Ok(None) => self.reply(
                req,
                ServerMsg::UploadAccepted {
                    round: u.round,
                    duplicate: true,
                },
            ),
            Ok(Some(checked)) => {
                self.storing.insert(name.clone());
                let pending = Pending::Update {
                    req,
                    name: name.clone(),
                    round: u.round,
                    nonce: u.nonce,
                    hash: u.update.hash.clone(),
                    report: u.report,
                    checked,
                };
                let norm = match &pending {
                    Pending::Update { checked, .. } => checked.norm(),
                    _ => f64::NAN,
                };
                self.persist(
                    Durable::Update {
                        name,
                        upload: Box::new(u),
                        norm,
                    },
                    pending,
                );
            }
            Err(r) => {
                let msg = self.rejected(&name, u.round, r, u.report.num_samples);
                self.reply(req, msg);
            }
        }
    }

    fn accepted(&mut self, name: &str, round: u64, a: Accepted, report: &SiteReport) -> ServerMsg {
        if !a.duplicate {
            Counters::inc(&self.counters.updates_accepted);
            tracing::info!(%name, round, norm = format!("{:.3}", a.norm), loss = report.mean_loss.map(|l| format!("{l:.4}")).unwrap_or("-".into()), epsilon = report.epsilon.map(|e| format!("{e:.3}")).unwrap_or("-".into()), "update accepted");
        }
        ServerMsg::UploadAccepted {
            round,
            duplicate: a.duplicate,
        }
    }

    fn rejected(
        &mut self,
        name: &str,
        round: u64,
        r: crate::validate::Rejection,
        num_samples: Option<u64>,
    ) -> ServerMsg {
        Counters::inc(&self.counters.updates_rejected);
        if matches!(r.code, ErrorCode::StaleRound | ErrorCode::UnknownNonce) {
            Counters::inc(&self.counters.updates_replayed);
        }
        tracing::warn!(%name, round, code = ?r.code, reason = %r.reason, "update rejected");
        self.persist(
            Durable::Rejected {
                round,
                name: name.to_string(),
                reason: format!("{:?}: {}", r.code, r.reason),
                num_samples,
            },
            Pending::BestEffort,
        );
        ServerMsg::error(r.code, r.reason)
    }

    fn persist(&mut self, what: Durable, pending: Pending) {
        let token = self.next_token;
        self.next_token += 1;
        self.pending.insert(token, pending);
        self.effects.push_back(Effect::Persist { token, what });
    }

    fn reply(&mut self, req: RequestId, msg: ServerMsg) {
        self.effects.push_back(Effect::Reply { req, msg });
    }

    fn stop(&mut self, reason: String) {
        self.busy = false;
        self.durable = false;
        self.book.finish();
        self.effects.push_back(Effect::Stop(reason));
    }

    /// Moves the run forward after any event: open a round, close, extend or fail it, and
    /// answer the long polls that can now be answered.
    fn advance(&mut self, now: f64) {
        if !self.book.is_finished() && !self.busy {
            if self.book.open_round().is_none() {
                if !self.paused {
                    self.maybe_open(now);
                }
            } else if self.durable {
                match self.book.handle_timeout(now) {
                    Step::Wait => {}
                    Step::Close => match self.book.close_round() {
                        Some(result) => {
                            self.busy = true;
                            self.persist(
                                Durable::Commit(Box::new(result.clone())),
                                Pending::Commit(Box::new(result)),
                            );
                        }
                        None => self.stop("internal: the round vanished".into()),
                    },
                    Step::Extended(st) => {
                        tracing::warn!(
                            round = st.round,
                            selected = st.nonces.len(),
                            extension = st.extensions,
                            "the round is short of its minimum of accepted updates; extended \
                             by another deadline (with any connected sites not selected before)"
                        );
                        self.busy = true;
                        self.durable = false;
                        self.persist(Durable::RoundExtended(st), Pending::Round);
                    }
                    Step::Failed(reason) => {
                        self.busy = true;
                        let round = self.book.open_round().unwrap_or(0);
                        self.persist(
                            Durable::Failed {
                                round,
                                reason: reason.clone(),
                            },
                            Pending::Failed(reason),
                        );
                    }
                }
            }
        }
        self.answer_polls();
    }

    fn maybe_open(&mut self, now: f64) {
        let s = &self.schedule;
        let min = s.min_clients;
        if self.book.connected() >= min {
            let round = self.book.committed() + 1;
            let mut plan = s.plan.plan(round);
            plan.privacy.rounds = s.rounds;
            if let Some(c) = self.book.client_clip() {
                plan.privacy.client.clip_norm = c;
            }
            plan.evaluate =
                s.federated_eval_every > 0 && (round - 1).is_multiple_of(s.federated_eval_every);
            let fraction = s.sample_fraction;
            let state = self
                .book
                .start_round(now, plan, fraction, min, &mut self.rng);
            self.busy = true;
            self.durable = false;
            self.persist(Durable::RoundOpened(Box::new(state)), Pending::Round);
        } else if now >= self.waiting_since + s.wait_for_clients_secs {
            let n = self.book.connected();
            let wait = s.wait_for_clients_secs;
            self.stop(format!(
                "only {n} of the required {min} clients connected within {wait} s; check that \
                 the clients run and can reach the server"
            ));
        }
    }

    fn answer_polls(&mut self) {
        if self.polls.is_empty() {
            return;
        }
        // No task before its round is durable (a restart must know the nonces it carries).
        let gate = !self.book.is_finished() && (!self.durable || self.busy);
        let mut kept = vec![];
        for p in std::mem::take(&mut self.polls) {
            let polled = if gate {
                Poll::Wait
            } else {
                self.book.poll(&p.peer.name, p.after_round)
            };
            match polled {
                Poll::Wait => kept.push(p),
                Poll::Task(t) => self.reply(p.req, ServerMsg::Task(t)),
                Poll::Finished {
                    last_round,
                    model_hash,
                } => {
                    self.book.told_finished(&p.peer.name);
                    self.reply(
                        p.req,
                        ServerMsg::Finished {
                            last_round,
                            model_hash,
                        },
                    );
                }
            }
        }
        self.polls = kept;
    }
}

#[cfg(test)]
mod tests;
