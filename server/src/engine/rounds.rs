//! The round book, free of I/O: who is connected, which round is open, who was selected,
//! what each selected client answered, the strategy's aggregator, and the round's deadline.
//! [`super::Engine`] drives it from protocol messages and timers and turns its decisions
//! into effects; time is passed in (`now`, seconds since the Unix epoch, so a deadline
//! survives a restart).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::strategy::config::{StrategyConfig, Weighting};
use fedssl_ml::model::{Weights, WeightsSpec};
#[cfg(test)]
use fedssl_protocol::LocalCollapse;
use fedssl_protocol::{ErrorCode, ModelPayload, RoundPlan, SiteEval, SiteReport, Task, Upload};
use serde::{Deserialize, Serialize};

use crate::central_dp::{CentralDp, CentralRound, RoundCounts};
use crate::strategy::{self, Aggregator, OptState, Strategy};
use crate::validate::{check_update, norm_range, NormRange, Rejection};

/// The rules of a round's life: how long it waits, how many updates it needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundRules {
    /// Seconds a round (or an extension) waits for its sites.
    pub deadline_secs: f64,
    /// Fewest accepted updates to commit (the strategy may need more: Krum 2f + 3).
    pub min_updates: usize,
    /// Extensions of a round short of `min_updates` before it fails.
    pub max_extensions: u32,
}

impl Default for RoundRules {
    fn default() -> Self {
        Self {
            deadline_secs: 900.0,
            min_updates: 1,
            max_extensions: 1,
        }
    }
}

/// What an open round persists so that a restarted server continues it: the plan, the
/// selection with its nonces, and the deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundState {
    /// Round id.
    pub round: u64,
    /// The plan every selected site trains with.
    pub plan: RoundPlan,
    /// Selected sites and their tasks' nonces.
    pub nonces: BTreeMap<String, u64>,
    /// When the round opened (Unix seconds).
    pub started_at: f64,
    /// When it closes (Unix seconds).
    pub deadline: f64,
    /// Extensions granted so far.
    pub extensions: u32,
    /// Sites connected when it opened (central DP's accounting).
    pub eligible: usize,
}

/// What the shell must do about the open round at `now` ([`Rounds::handle_timeout`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing yet: wake at [`Rounds::poll_timeout`] or on the next event.
    Wait,
    /// Close and commit the round.
    Close,
    /// The round was short of updates at its deadline and was extended (and topped up with
    /// sites not selected before): persist the new state.
    Extended(Box<RoundState>),
    /// The round cannot reach its minimum: record it as failed with this reason. The model
    /// version does not advance.
    Failed(String),
}

/// The handshake rules: the client must speak this server's protocol version, and the name
/// it claims must be the one its verified certificate carries (`cert_name`).
pub fn check_hello(cert_name: &str, h: &fedssl_protocol::Hello) -> Result<(), Rejection> {
    if h.protocol_version != fedssl_protocol::PROTOCOL_VERSION {
        return Err(Rejection::new(
            ErrorCode::VersionMismatch,
            format!(
                "server speaks protocol {} (fedssl {}), client speaks {} (fedssl {}): install \
                 the same fedssl version on both sides",
                fedssl_protocol::PROTOCOL_VERSION,
                fedssl_protocol::SOFTWARE_VERSION,
                h.protocol_version,
                h.software_version
            ),
        ));
    }
    if h.claimed_name != cert_name {
        return Err(Rejection::new(
            ErrorCode::NameMismatch,
            format!(
                "your certificate identifies you as `{cert_name}`, not `{}`",
                h.claimed_name
            ),
        ));
    }
    Ok(())
}

/// An upload that passed validation, ready to be made durable and then applied.
#[derive(Debug)]
pub struct Checked {
    update: Weights,
    weight: f64,
    norm: f64,
    within_bound: bool,
    clip_count: Option<f64>,
}

impl Checked {
    /// The update's L2 norm.
    pub fn norm(&self) -> f64 {
        self.norm
    }
}

/// What a client asking for work gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Poll {
    /// Work for the open round.
    Task(Box<Task>),
    /// Nothing for this client now.
    Wait,
    /// Training is over.
    Finished {
        /// Last committed round.
        last_round: u64,
        /// Final model hash.
        model_hash: String,
    },
}

/// Accepted upload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accepted {
    /// The same update had already been accepted (idempotent resend).
    pub duplicate: bool,
    /// Its L2 norm.
    pub norm: f64,
}

impl Accepted {
    /// An idempotent resend of an update already accepted (not folded again).
    pub const DUPLICATE: Accepted = Accepted {
        duplicate: true,
        norm: f64::NAN,
    };
}

#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Accepted { update_hash: String },
    Declined,
}

#[derive(Debug)]
struct OpenRound {
    id: u64,
    plan: RoundPlan,
    nonces: BTreeMap<String, u64>,
    answers: HashMap<String, Answer>,
    rejected: usize,
    acc: Box<dyn Aggregator>,
    started_at: f64,
    deadline: f64,
    extensions: u32,
    losses: Vec<f64>,
    max_epsilon: Option<f64>,
    /// (std ratio, effective rank) per accepted client.
    collapse: Vec<(f64, f64)>,
    site_evals: Vec<SiteEval>,
    bound: NormRange,
    payload: Arc<ModelPayload>,
    /// Central DP: sites eligible when the round opened, and updates within the bound.
    eligible: usize,
    within_bound: usize,
    /// Client-level adaptive clipping: the sites' noised indicators.
    clip_counts: Vec<f64>,
}

/// Mean of the figures sites reported for one global model (federated evaluation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FederatedEval {
    /// Version of the global model the sites evaluated (the round's starting model).
    pub model_version: u64,
    /// Sites that reported.
    pub sites: usize,
    /// Linear-probe accuracy, weighted by each site's test samples.
    pub probe_accuracy: f64,
    /// kNN accuracy, weighted the same way.
    pub knn_accuracy: f64,
    /// Labeled test samples over all reporting sites.
    pub test_samples: u64,
}

/// What closing a round produced.
#[derive(Debug, Clone)]
pub struct RoundResult {
    /// Round id.
    pub round: u64,
    /// The new global model (unchanged if no update was accepted).
    pub model: Weights,
    /// Its content hash.
    pub model_hash: String,
    /// Clients selected.
    pub sampled: usize,
    /// Updates accepted.
    pub accepted: usize,
    /// Updates rejected.
    pub rejected: usize,
    /// Clients that declined.
    pub declined: usize,
    /// Mean local loss of accepted updates.
    pub mean_loss: Option<f64>,
    /// Largest ε reported by accepted clients.
    pub max_epsilon: Option<f64>,
    /// Mean over accepted clients of `std · √d` of their local embeddings.
    pub client_std_ratio: Option<f64>,
    /// Mean over accepted clients of the effective rank of their local embeddings.
    pub client_effective_rank: Option<f64>,
    /// Federated evaluation of the round's starting model, when sites reported one.
    pub federated_eval: Option<FederatedEval>,
    /// What central DP released this round (with `[central_dp]`).
    pub central: Option<CentralRound>,
    /// Client-level adaptive clipping: the clip bound for the next round's plan.
    pub next_client_clip: Option<f64>,
    /// The server optimizer's state after this round (FedAdam, FedYogi, FedAdagrad).
    pub opt_state: Option<OptState>,
}

/// The server's round logic.
#[derive(Debug)]
pub struct Rounds {
    spec: WeightsSpec,
    global: Weights,
    global_hash: String,
    committed: u64,
    total_rounds: u64,
    connected: BTreeMap<String, (u64, u64)>,
    round: Option<OpenRound>,
    finished: bool,
    central: Option<CentralDp>,
    /// Client-level adaptive clipping: the bound the next plan carries (None: the plan's).
    client_clip: Option<f64>,
    strategy_cfg: StrategyConfig,
    strategy: Box<dyn Strategy>,
    opt_state: Option<OptState>,
    rules: RoundRules,
    /// Sites told that training is over.
    told: BTreeSet<String>,
}

impl Rounds {
    /// An engine whose last committed round is `committed`, holding `global`.
    pub fn new(global: Weights, committed: u64, total_rounds: u64) -> Self {
        Self {
            spec: global.spec(),
            global_hash: global.hash(),
            global,
            committed,
            total_rounds,
            connected: BTreeMap::new(),
            round: None,
            finished: committed >= total_rounds,
            central: None,
            client_clip: None,
            strategy_cfg: StrategyConfig::default(),
            strategy: strategy::build(&StrategyConfig::default()),
            opt_state: None,
            rules: RoundRules::default(),
            told: BTreeSet::new(),
        }
    }

    /// Records that `name` was told training is over.
    pub fn told_finished(&mut self, name: &str) {
        self.told.insert(name.to_string());
    }

    /// True when every site in `names` was told training is over.
    pub fn all_told_finished(&self, names: &[String]) -> bool {
        names.iter().all(|n| self.told.contains(n))
    }

    /// Merges updates with `cfg`'s strategy, resuming its server-optimizer state `opt`.
    pub fn with_strategy(mut self, cfg: StrategyConfig, opt: Option<OptState>) -> Self {
        self.strategy = strategy::build(&cfg);
        self.strategy_cfg = cfg;
        self.opt_state = opt;
        self
    }

    /// Deadlines and minimum updates.
    pub fn with_rules(mut self, rules: RoundRules) -> Self {
        self.rules = rules;
        self
    }

    /// The fewest accepted updates a round needs: the configured minimum, raised to what
    /// the strategy needs (0 stays 0: central DP releases every round).
    pub fn min_updates(&self) -> usize {
        match self.rules.min_updates {
            0 => 0,
            m => m.max(self.strategy.min_updates()),
        }
    }

    /// Resumes client-level adaptive clipping at `clip` (from the store).
    pub fn with_client_clip(mut self, clip: Option<f64>) -> Self {
        self.client_clip = clip;
        self
    }

    /// Client-level adaptive clipping: the bound the next round's plan must carry, once a
    /// round has moved it (`None`: the configured one).
    pub fn client_clip(&self) -> Option<f64> {
        self.client_clip
    }

    /// The engine with central DP at the server: Poisson selection, clipping, noise on the
    /// sum, equal weights (see [`crate::central_dp`]).
    pub fn with_central_dp(mut self, central: CentralDp) -> Self {
        self.central = Some(central);
        self
    }

    /// Central DP's state, when configured.
    pub fn central_dp(&self) -> Option<&CentralDp> {
        self.central.as_ref()
    }

    /// The global model.
    pub fn global(&self) -> &Weights {
        &self.global
    }

    /// Its hash.
    pub fn global_hash(&self) -> &str {
        &self.global_hash
    }

    /// Last committed round.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Total rounds of the run.
    pub fn total_rounds(&self) -> u64 {
        self.total_rounds
    }

    /// True once every round is committed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// A client connected (or reconnected) with `num_samples` samples on connection `conn`.
    pub fn connect(&mut self, name: &str, num_samples: u64, conn: u64) {
        self.connected.insert(name.to_string(), (num_samples, conn));
    }

    /// Connection `conn` of a client closed. Ignored if the client has reconnected since.
    /// Its slot in an open round stays: it may reconnect before the deadline.
    pub fn disconnect(&mut self, name: &str, conn: u64) {
        if self.connected.get(name).is_some_and(|&(_, c)| c == conn) {
            self.connected.remove(name);
        }
    }

    /// Clients connected now.
    pub fn connected(&self) -> usize {
        self.connected.len()
    }

    /// Opens round `committed + 1`, selecting `max(min_clients, ⌈fraction·connected⌉)`
    /// connected clients at random, or under central DP each connected client with its
    /// Poisson rate (`fraction` and `min_clients` then only gate the start). Returns the
    /// selection.
    pub fn start_round(
        &mut self,
        now: f64,
        plan: RoundPlan,
        fraction: f64,
        min_clients: usize,
        rng: &mut impl Rng,
    ) -> RoundState {
        let id = self.committed + 1;
        let mut names: Vec<String> = self.connected.keys().cloned().collect();
        let eligible = names.len();
        match &self.central {
            Some(c) => names = c.select(&names, rng),
            None => {
                names.shuffle(rng);
                let want = ((fraction * names.len() as f64).ceil() as usize)
                    .max(min_clients)
                    .min(names.len())
                    .min(strategy::capacity(&self.strategy_cfg, &self.spec));
                names.truncate(want);
            }
        }
        let nonces = names
            .iter()
            .map(|n| (n.clone(), rng.gen::<u64>()))
            .collect();
        let state = RoundState {
            round: id,
            plan,
            nonces,
            started_at: now,
            deadline: now + self.rules.deadline_secs,
            extensions: 0,
            eligible,
        };
        self.open(state.clone());
        state
    }

    /// Re-opens a round a previous process persisted (before the uploads it had accepted
    /// are replayed into it with [`Rounds::submit`]). Its deadline is at least
    /// `grace_secs` after `now`, so sites have time to reconnect.
    pub fn resume_round(&mut self, mut state: RoundState, now: f64, grace_secs: f64) {
        state.deadline = state.deadline.max(now + grace_secs);
        self.open(state);
    }

    fn open(&mut self, state: RoundState) {
        let bound = norm_range(&state.plan, &self.spec);
        let RoundState {
            round: id,
            plan,
            nonces,
            started_at,
            deadline,
            extensions,
            eligible,
        } = state;
        self.round = Some(OpenRound {
            id,
            plan,
            nonces,
            answers: HashMap::new(),
            rejected: 0,
            acc: self.strategy.aggregator(&self.spec),
            started_at,
            deadline,
            extensions,
            losses: vec![],
            max_epsilon: None,
            collapse: vec![],
            site_evals: vec![],
            bound,
            payload: Arc::new(ModelPayload::from_weights(&self.global)),
            eligible,
            within_bound: 0,
            clip_counts: vec![],
        });
    }

    /// The open round's state as it must be persisted.
    pub fn round_state(&self) -> Option<RoundState> {
        self.round.as_ref().map(|r| RoundState {
            round: r.id,
            plan: r.plan.clone(),
            nonces: r.nonces.clone(),
            started_at: r.started_at,
            deadline: r.deadline,
            extensions: r.extensions,
            eligible: r.eligible,
        })
    }

    /// When [`Rounds::handle_timeout`] must next be called (the open round's deadline).
    pub fn poll_timeout(&self) -> Option<f64> {
        self.round.as_ref().map(|r| r.deadline)
    }

    /// Decides what happens to the open round at `now`: nothing yet, close it, extend it
    /// (short of its minimum at the deadline), or fail it.
    pub fn handle_timeout(&mut self, now: f64) -> Step {
        let need = self.min_updates();
        let cap = strategy::capacity(&self.strategy_cfg, &self.spec);
        let central = self.central.is_some();
        let connected: Vec<String> = self.connected.keys().cloned().collect();
        let deadline_secs = self.rules.deadline_secs;
        let max_ext = self.rules.max_extensions;
        let Some(r) = self.round.as_mut() else {
            return Step::Wait;
        };
        let complete = r.answers.len() == r.nonces.len();
        if !complete && now < r.deadline {
            return Step::Wait;
        }
        let accepted = r.acc.count();
        if accepted >= need {
            return Step::Close;
        }
        let fresh: Vec<String> = connected
            .into_iter()
            .filter(|n| !r.nonces.contains_key(n))
            .take(cap.saturating_sub(r.nonces.len()))
            .collect();
        if r.extensions < max_ext && !central && (!complete || !fresh.is_empty()) {
            let mut rng = rand::thread_rng();
            for n in fresh {
                r.nonces.insert(n, rng.gen());
            }
            r.extensions += 1;
            r.deadline = now + deadline_secs;
            return match self.round_state() {
                Some(s) => Step::Extended(Box::new(s)),
                None => Step::Wait,
            };
        }
        let declined = r
            .answers
            .values()
            .filter(|a| matches!(a, Answer::Declined))
            .count();
        let silent = r.nonces.len() - r.answers.len();
        Step::Failed(format!(
            "round {} needs {need} accepted updates but got {accepted} from {} selected sites \
             ({declined} declined, {} rejected, {silent} did not answer) after {} extension(s)",
            r.id,
            r.nonces.len(),
            r.rejected,
            r.extensions
        ))
    }

    /// Drops the open round after [`Step::Failed`]: the model stays as it was.
    pub fn fail_round(&mut self) {
        self.round = None;
    }

    /// The open round's id.
    pub fn open_round(&self) -> Option<u64> {
        self.round.as_ref().map(|r| r.id)
    }

    /// What `name` should do now, given that it finished `after_round`.
    pub fn poll(&self, name: &str, after_round: u64) -> Poll {
        if self.finished {
            return Poll::Finished {
                last_round: self.committed,
                model_hash: self.global_hash.clone(),
            };
        }
        let Some(r) = &self.round else {
            return Poll::Wait;
        };
        let Some(&nonce) = r.nonces.get(name) else {
            return Poll::Wait;
        };
        if r.answers.contains_key(name) || after_round >= r.id {
            return Poll::Wait;
        }
        Poll::Task(Box::new(Task {
            round: r.id,
            nonce,
            plan: r.plan.clone(),
            model: (*r.payload).clone(),
        }))
    }

    fn selected_round(
        &mut self,
        name: &str,
        round: u64,
        nonce: u64,
    ) -> Result<&mut OpenRound, Rejection> {
        let Some(r) = self.round.as_mut() else {
            return Err(Rejection::new(
                ErrorCode::StaleRound,
                format!("round {round} is not open"),
            ));
        };
        if r.id != round {
            return Err(Rejection::new(
                ErrorCode::StaleRound,
                format!("round {round} is not open (the open round is {})", r.id),
            ));
        }
        match r.nonces.get(name) {
            None => Err(Rejection::new(
                ErrorCode::NotSelected,
                format!("{name} was not selected for round {round}"),
            )),
            Some(&n) if n != nonce => Err(Rejection::new(
                ErrorCode::UnknownNonce,
                "the upload's nonce does not match the task (replayed or stale upload)",
            )),
            Some(_) => Ok(r),
        }
    }

    /// Validates an upload and folds it into the round's aggregate (no durability step:
    /// for replaying persisted uploads and for tests). The shell uses [`Rounds::check`],
    /// persists, then [`Rounds::apply`].
    pub fn submit(&mut self, name: &str, upload: &Upload) -> Result<Accepted, Rejection> {
        match self.check(name, upload)? {
            None => Ok(Accepted::DUPLICATE),
            Some(c) => self.apply(
                name,
                upload.round,
                upload.nonce,
                &upload.update.hash,
                upload.report,
                c,
            ),
        }
    }

    /// Validates an upload without changing the round's aggregate: `None` for an
    /// idempotent resend of an update already accepted, else the checked update, which the
    /// shell makes durable before [`Rounds::apply`] and the acknowledgement.
    pub fn check(&mut self, name: &str, upload: &Upload) -> Result<Option<Checked>, Rejection> {
        let spec = self.spec.clone();
        let global_hash = self.global_hash.clone();
        let central_bound = self.central.as_ref().map(CentralDp::clip_norm);
        let weighting = (self.strategy_cfg.weighting, self.strategy_cfg.max_weight);
        let r = self.selected_round(name, upload.round, upload.nonce)?;
        match r.answers.get(name) {
            Some(Answer::Accepted { update_hash }) if *update_hash == upload.update.hash => {
                return Ok(None)
            }
            Some(_) => {
                return Err(Rejection::new(
                    ErrorCode::StaleRound,
                    format!("{name} already answered round {}", r.id),
                ))
            }
            None => {}
        }
        let checked = check_update(upload, &spec, &global_hash, r.bound);
        let (mut w, norm) = match checked {
            Ok(x) => x,
            Err(e) => {
                r.rejected += 1;
                return Err(e);
            }
        };
        // A claimed sample count is a plain number from the network: it weighs only when
        // the plan asks for it (never under DP), and never above `max_weight`.
        let report = upload.report;
        let weight = match (weighting, report.num_samples) {
            ((Weighting::Samples, Some(cap)), Some(n))
                if !r.plan.privacy.mechanism.is_private() && central_bound.is_none() =>
            {
                n.min(cap) as f64
            }
            _ => 1.0,
        };
        // Client-level adaptive clipping: a noised indicator from the site, within any
        // plausible draw of its noise (10 σ), or the upload is refused.
        let clip_count = match (r.plan.privacy.client.adaptive, report.clip_count) {
            (Some(a), Some(c)) if r.plan.privacy.mechanism.client_level() => {
                let c = c as f64;
                if !(c.is_finite() && (c - 0.5).abs() <= 0.5 + 10.0 * a.count_noise_multiplier) {
                    r.rejected += 1;
                    return Err(Rejection::new(
                        ErrorCode::Malformed,
                        format!("the clip indicator {c} is outside any plausible noised value"),
                    ));
                }
                Some(c)
            }
            _ => None,
        };
        let within_bound = match central_bound {
            Some(bound) => crate::central_dp::clip_to(&mut w, bound),
            None => false,
        };
        Ok(Some(Checked {
            update: w,
            weight,
            norm,
            within_bound,
            clip_count,
        }))
    }

    /// Folds a checked (and, in the shell, persisted) upload into the round.
    pub fn apply(
        &mut self,
        name: &str,
        round: u64,
        nonce: u64,
        update_hash: &str,
        report: SiteReport,
        c: Checked,
    ) -> Result<Accepted, Rejection> {
        let r = self.selected_round(name, round, nonce)?;
        if r.answers.contains_key(name) {
            return Ok(Accepted {
                duplicate: true,
                norm: c.norm,
            });
        }
        if c.within_bound {
            r.within_bound += 1;
        }
        r.acc
            .fold(c.update, c.weight)
            .map_err(|e| Rejection::new(ErrorCode::Internal, e.to_string()))?;
        if let Some(l) = report.mean_loss {
            r.losses.push(l as f64);
        }
        if let Some(c) = report.collapse {
            r.collapse
                .push((c.std_ratio as f64, c.effective_rank as f64));
        }
        if let Some(s) = report.site_eval {
            r.site_evals.push(s);
        }
        if let Some(e) = report.epsilon {
            r.max_epsilon = Some(r.max_epsilon.map_or(e, |m| m.max(e)));
        }
        if let Some(k) = c.clip_count {
            r.clip_counts.push(k);
        }
        r.answers.insert(
            name.to_string(),
            Answer::Accepted {
                update_hash: update_hash.to_string(),
            },
        );
        Ok(Accepted {
            duplicate: false,
            norm: c.norm,
        })
    }

    /// Records that `name` declined the round.
    pub fn decline(&mut self, name: &str, round: u64, nonce: u64) -> Result<(), Rejection> {
        let r = self.selected_round(name, round, nonce)?;
        r.answers
            .entry(name.to_string())
            .or_insert(Answer::Declined);
        Ok(())
    }

    /// True when every selected client has answered.
    pub fn round_complete(&self) -> bool {
        self.round
            .as_ref()
            .is_some_and(|r| r.answers.len() == r.nonces.len())
    }

    /// Closes the open round: global + weighted mean update (under central DP: global +
    /// the noised release, even when no update arrived). Does not commit.
    pub fn close_round(&mut self) -> Option<RoundResult> {
        let r = self.round.take()?;
        let (update, central) = match &self.central {
            None => match r.acc.aggregate() {
                Ok(u) => (u, None),
                Err(e) => {
                    tracing::error!(round = r.id, error = %format!("{e:#}"), "the strategy could not aggregate the round; the global model is unchanged");
                    (None, None)
                }
            },
            Some(c) => {
                let counts = RoundCounts {
                    eligible: r.eligible,
                    selected: r.nonces.len(),
                    accepted: r.acc.count(),
                    within_bound: r.within_bound,
                };
                let sum = r
                    .acc
                    .sum()
                    .unwrap_or_else(|| strategy::unflat(&self.spec, std::iter::repeat(0.0)));
                match c.release(r.id, sum, counts) {
                    Ok((u, info)) => (Some(u), Some(info)),
                    // Nothing is released without its noise: the model stays as it was.
                    Err(e) => {
                        tracing::error!(round = r.id, error = %format!("{e:#}"), "central DP could not noise the round; the global model is unchanged");
                        (None, None)
                    }
                }
            }
        };
        let (model, opt_state) = match update {
            Some(u) => match self
                .strategy
                .step(&self.global, &u, self.opt_state.as_ref())
            {
                Ok((m, s)) => (m, s.or_else(|| self.opt_state.clone())),
                Err(e) => {
                    tracing::error!(round = r.id, error = %format!("{e:#}"), "the server optimizer failed; the global model is unchanged");
                    (self.global.clone(), self.opt_state.clone())
                }
            },
            None => (self.global.clone(), self.opt_state.clone()),
        };
        let declined = r
            .answers
            .values()
            .filter(|a| matches!(a, Answer::Declined))
            .count();
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        // C ← C·exp(−η(fraction within − γ)), from the sites' noised indicators.
        let next_client_clip = match (r.plan.privacy.client.adaptive, mean(&r.clip_counts)) {
            (Some(a), Some(fraction)) => Some(
                r.plan.privacy.client.clip_norm
                    * (-a.learning_rate * (fraction - a.target_quantile)).exp(),
            ),
            _ => None,
        };
        let stds: Vec<f64> = r.collapse.iter().map(|c| c.0).collect();
        let ranks: Vec<f64> = r.collapse.iter().map(|c| c.1).collect();
        let test_samples: u64 = r.site_evals.iter().map(|s| s.test_samples as u64).sum();
        let federated_eval = (test_samples > 0).then(|| {
            let w = |f: fn(&SiteEval) -> f32| {
                r.site_evals
                    .iter()
                    .map(|s| f(s) as f64 * s.test_samples as f64)
                    .sum::<f64>()
                    / test_samples as f64
            };
            FederatedEval {
                model_version: r.id - 1,
                sites: r.site_evals.len(),
                probe_accuracy: w(|s| s.probe_accuracy),
                knn_accuracy: w(|s| s.knn_accuracy),
                test_samples,
            }
        });
        Some(RoundResult {
            client_std_ratio: mean(&stds),
            client_effective_rank: mean(&ranks),
            federated_eval,
            round: r.id,
            model_hash: model.hash(),
            model,
            sampled: r.nonces.len(),
            accepted: r.acc.count(),
            rejected: r.rejected,
            declined,
            mean_loss: (!r.losses.is_empty())
                .then(|| r.losses.iter().sum::<f64>() / r.losses.len() as f64),
            max_epsilon: r.max_epsilon,
            central,
            next_client_clip,
            opt_state,
        })
    }

    /// Makes the closed round's model global (after it is durable).
    pub fn commit(&mut self, result: RoundResult) {
        if let (Some(c), Some(info)) = (self.central.as_mut(), result.central) {
            c.record(info);
        }
        if result.next_client_clip.is_some() {
            self.client_clip = result.next_client_clip;
        }
        self.opt_state = result.opt_state;
        self.global_hash = result.model_hash;
        self.global = result.model;
        let round = result.round;
        self.committed = round;
        if self.committed >= self.total_rounds {
            self.finished = true;
        }
    }

    /// Ends the run early (e.g. too few clients).
    pub fn finish(&mut self) {
        self.round = None;
        self.finished = true;
    }

    /// Clients selected for the open round.
    pub fn selected(&self) -> BTreeSet<String> {
        self.round
            .as_ref()
            .map(|r| r.nonces.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use fedssl_ml::model::weights::WeightTensor;
    use fedssl_privacy::plan::{ClientLevelParams, PrivacyMechanism, PrivacyPlan};
    use rand::SeedableRng;

    /// A three-value model named `w`.
    pub(in crate::engine) fn weights(v: [f32; 3]) -> Weights {
        Weights {
            tensors: vec![WeightTensor {
                name: "w".into(),
                shape: vec![3],
                values: v.to_vec(),
            }],
        }
    }

    fn plan() -> RoundPlan {
        RoundPlan {
            local_epochs: 1,
            batch_size: 8,
            learning_rate: 0.1,
            temperature: 0.5,
            privacy: PrivacyPlan {
                mechanism: PrivacyMechanism::ClientLevel,
                client: ClientLevelParams {
                    clip_norm: 1.0,
                    noise_multiplier: 0.1,
                    adaptive: None,
                },
                ..PrivacyPlan::default()
            },
            seed: 0,
            evaluate: false,
            model: Default::default(),
            augment: Default::default(),
            federation: Default::default(),
            proximal_mu: 0.0,
        }
    }

    fn upload(task: &Task, update: [f32; 3], n: u64) -> Upload {
        Upload {
            round: task.round,
            nonce: task.nonce,
            base_model_hash: task.model.hash.clone(),
            update: ModelPayload::from_weights(&weights(update)),
            report: SiteReport {
                num_samples: Some(n),
                mean_loss: Some(1.0),
                epsilon: Some(2.0),
                train_seconds: Some(0.0),
                collapse: Some(LocalCollapse {
                    std_ratio: 0.5,
                    effective_rank: 10.0,
                }),
                site_eval: None,
                clip_count: None,
            },
        }
    }

    fn task(p: Poll) -> Task {
        match p {
            Poll::Task(t) => *t,
            other => panic!("expected a task, got {other:?}"),
        }
    }

    #[test]
    fn central_dp_clips_weighs_equally_noises_and_divides_by_the_expected_count() {
        use crate::config::CentralDpConfig;
        let cfg = CentralDpConfig {
            // Negligible noise, so the arithmetic shows: (clip(a) + b) / (q·N).
            noise_multiplier: 1e-6,
            clip_norm: 1.0,
            sample_rate: 1.0,
            adaptive: None,
        };
        let mut e = Rounds::new(weights([0.0, 0.0, 0.0]), 0, 2)
            .with_central_dp(CentralDp::new(cfg, vec![]));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for (i, n) in ["a", "b", "c", "d"].into_iter().enumerate() {
            e.connect(n, 1000 * (i as u64 + 1), i as u64);
        }
        let none = PrivacyPlan {
            mechanism: PrivacyMechanism::None,
            ..PrivacyPlan::default()
        };
        let sel = e.start_round(
            0.0,
            RoundPlan {
                privacy: none,
                ..plan()
            },
            0.1,
            1,
            &mut rng,
        );
        assert_eq!(sel.nonces.len(), 4, "q = 1 selects every connected site");
        let ta = task(e.poll("a", 0));
        let tb = task(e.poll("b", 0));
        // a: norm 5 (clipped to 1); b: norm 0.5. Claimed sample counts must not weigh.
        e.submit("a", &upload(&ta, [3.0, 4.0, 0.0], 1_000_000))
            .unwrap();
        e.submit("b", &upload(&tb, [0.0, 0.0, 0.5], 1)).unwrap();
        let tc = task(e.poll("c", 0));
        e.decline("c", tc.round, tc.nonce).unwrap();
        let td = task(e.poll("d", 0));
        e.decline("d", td.round, td.nonce).unwrap();
        assert!(e.round_complete());
        let r = e.close_round().unwrap();
        let c = r.central.expect("a central release");
        assert_eq!((c.eligible, c.selected, c.accepted), (4, 4, 2));
        let want = [0.6 / 4.0, 0.8 / 4.0, 0.5 / 4.0];
        for (got, want) in r.model.tensors[0].values.iter().zip(want) {
            assert!((*got as f64 - want).abs() < 1e-4, "{:?}", r.model);
        }
        e.commit(r);
        let dp = e.central_dp().unwrap();
        assert_eq!(dp.history().len(), 1);
        assert!(
            dp.epsilon(1e-5).unwrap() > 1e6,
            "z = 1e-6 is no privacy, and says so"
        );

        // A round in which nobody is selected still releases noise (and is charged).
        let cfg = CentralDpConfig {
            noise_multiplier: 1.0,
            clip_norm: 1.0,
            sample_rate: 1e-9,
            adaptive: None,
        };
        let mut e = Rounds::new(weights([0.0, 0.0, 0.0]), 0, 1)
            .with_central_dp(CentralDp::new(cfg, vec![]));
        e.connect("a", 1, 1);
        let sel = e.start_round(0.0, plan(), 1.0, 1, &mut rng);
        assert!(sel.nonces.is_empty() && e.round_complete());
        let r = e.close_round().unwrap();
        assert_eq!(r.central.unwrap().accepted, 0);
        assert_ne!(r.model, weights([0.0, 0.0, 0.0]), "the noise is released");
    }

    #[test]
    fn client_level_adaptive_clipping_moves_the_next_plans_bound() {
        use crate::config::AdaptiveClipConfig;
        let mut e = Rounds::new(weights([0.0, 0.0, 0.0]), 0, 3);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        e.connect("a", 1, 1);
        e.connect("b", 1, 2);
        let mut p = plan();
        p.privacy.client.adaptive = Some(AdaptiveClipConfig {
            target_quantile: 0.5,
            learning_rate: 0.2,
            count_noise_multiplier: 0.1,
        });
        e.start_round(0.0, p, 1.0, 2, &mut rng);
        let (ta, tb) = (task(e.poll("a", 0)), task(e.poll("b", 0)));
        let with_count = |t: &Task, c: f32| {
            let mut u = upload(t, [0.1, 0.0, 0.0], 1);
            u.report.clip_count = Some(c);
            u
        };
        // An indicator no noise of σ = 0.1 could produce is refused.
        assert_eq!(
            e.submit("a", &with_count(&ta, 5.0)).unwrap_err().code,
            ErrorCode::Malformed
        );
        e.submit("a", &with_count(&ta, 1.1)).unwrap();
        e.submit("b", &with_count(&tb, 0.9)).unwrap();
        let r = e.close_round().unwrap();
        // Mean indicator 1.0 against γ = 0.5: C = 1 · exp(−0.2 · 0.5).
        let next = r.next_client_clip.unwrap();
        assert!((next - (-0.1f64).exp()).abs() < 1e-6, "{next}");
        e.commit(r);
        assert_eq!(e.client_clip(), Some(next));
        // Without adaptive clipping in the plan, indicators are ignored and C stays.
        e.start_round(0.0, plan(), 1.0, 2, &mut rng);
        let ta = task(e.poll("a", 1));
        e.submit("a", &with_count(&ta, 1.0)).unwrap();
        let r = e.close_round().unwrap();
        assert_eq!(r.next_client_clip, None);
        e.commit(r);
        assert_eq!(e.client_clip(), Some(next));
    }

    #[test]
    fn a_round_from_selection_to_commit() {
        let mut e = Rounds::new(weights([1.0, 1.0, 1.0]), 0, 2);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        e.connect("a", 10, 1);
        e.connect("b", 30, 2);
        e.connect("c", 5, 3);
        let sel = e.start_round(0.0, plan(), 0.5, 2, &mut rng);
        assert_eq!(sel.nonces.len(), 2);
        let names: Vec<String> = sel.nonces.keys().cloned().collect();
        let ta = task(e.poll(&names[0], 0));
        let tb = task(e.poll(&names[1], 0));
        let outsider = ["a", "b", "c"]
            .into_iter()
            .find(|n| !sel.nonces.contains_key(*n))
            .unwrap();
        assert_eq!(e.poll(outsider, 0), Poll::Wait);

        // Replayed nonce, wrong round, NaN and too large norms are refused.
        let mut bad = upload(&ta, [0.1, 0.0, 0.0], 10);
        bad.nonce ^= 1;
        assert_eq!(
            e.submit(&names[0], &bad).unwrap_err().code,
            ErrorCode::UnknownNonce
        );
        let mut bad = upload(&ta, [0.1, 0.0, 0.0], 10);
        bad.round = 7;
        assert_eq!(
            e.submit(&names[0], &bad).unwrap_err().code,
            ErrorCode::StaleRound
        );
        let bad = upload(&ta, [f32::NAN, 0.0, 0.0], 10);
        assert_eq!(
            e.submit(&names[0], &bad).unwrap_err().code,
            ErrorCode::NonFinite
        );
        let bad = upload(&ta, [100.0, 0.0, 0.0], 10);
        assert_eq!(
            e.submit(&names[0], &bad).unwrap_err().code,
            ErrorCode::NormTooLarge
        );
        assert_eq!(
            e.submit(outsider, &upload(&ta, [0.1, 0.0, 0.0], 10))
                .unwrap_err()
                .code,
            ErrorCode::NotSelected
        );

        let ua = upload(&ta, [0.4, 0.0, -0.4], 10);
        assert!(!e.submit(&names[0], &ua).unwrap().duplicate);
        assert!(
            e.submit(&names[0], &ua).unwrap().duplicate,
            "idempotent resend"
        );
        assert!(!e.round_complete());
        e.submit(&names[1], &upload(&tb, [0.0, 0.8, 0.0], 30))
            .unwrap();
        assert!(e.round_complete());
        let r = e.close_round().unwrap();
        // NaN and oversized norm count against the round; replays and outsiders are refused
        // before they reach it (the server's counters record those).
        assert_eq!((r.sampled, r.accepted, r.rejected), (2, 2, 2));
        // Under DP the claimed sample counts (10 and 30) do not weigh in:
        // ((0.4,0,−0.4) + (0,0.8,0)) / 2 = (0.2, 0.4, −0.2)
        let v = &r.model.tensors[0].values;
        assert!(
            (v[0] - 1.2).abs() < 1e-6 && (v[1] - 1.4).abs() < 1e-6 && (v[2] - 0.8).abs() < 1e-6,
            "{v:?}"
        );
        e.commit(r);
        assert_eq!(e.committed(), 1);
        assert!(!e.is_finished());
        // Old task's upload is now stale.
        assert_eq!(
            e.submit(&names[0], &ua).unwrap_err().code,
            ErrorCode::StaleRound
        );
    }

    #[test]
    fn reported_figures_are_checked_and_federated_eval_is_weighted() {
        use fedssl_protocol::SiteEval;
        let mut e = Rounds::new(weights([1.0, 1.0, 1.0]), 0, 1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        e.connect("a", 10, 1);
        e.connect("b", 10, 2);
        e.start_round(0.0, plan(), 1.0, 2, &mut rng);
        let ta = task(e.poll("a", 0));
        let tb = task(e.poll("b", 0));
        let site = |acc: f32, n: u32| SiteEval {
            probe_accuracy: acc,
            knn_accuracy: acc / 2.0,
            train_samples: n,
            test_samples: n,
        };
        // Out-of-range or non-finite figures are refused like a malformed update.
        for bad in [
            (f32::NAN, 10.0, None),
            (0.5, -1.0, None),
            (0.5, 10.0, Some(site(1.5, 10))),
            (0.5, 10.0, Some(site(0.5, 0))),
        ] {
            let mut u = upload(&ta, [0.1, 0.0, 0.0], 10);
            u.report.collapse = Some(LocalCollapse {
                std_ratio: bad.0,
                effective_rank: bad.1,
            });
            u.report.site_eval = bad.2;
            assert_eq!(e.submit("a", &u).unwrap_err().code, ErrorCode::Malformed);
        }
        // Site a: 0.9 on 10 test samples; site b: 0.6 on 30 → (9 + 18) / 40 = 0.675.
        let collapse = |std_ratio| {
            Some(LocalCollapse {
                std_ratio,
                effective_rank: 10.0,
            })
        };
        let mut ua = upload(&ta, [0.1, 0.0, 0.0], 10);
        ua.report.collapse = collapse(0.4);
        ua.report.site_eval = Some(site(0.9, 10));
        let mut ub = upload(&tb, [0.1, 0.0, 0.0], 10);
        ub.report.collapse = collapse(0.8);
        ub.report.site_eval = Some(site(0.6, 30));
        e.submit("a", &ua).unwrap();
        e.submit("b", &ub).unwrap();
        let r = e.close_round().unwrap();
        let f = r.federated_eval.unwrap();
        assert_eq!((f.sites, f.test_samples, f.model_version), (2, 40, 0));
        assert!((f.probe_accuracy - 0.675).abs() < 1e-6);
        assert!((f.knn_accuracy - 0.3375).abs() < 1e-6);
        assert!((r.client_std_ratio.unwrap() - 0.6).abs() < 1e-6);
        assert!((r.client_effective_rank.unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(r.rejected, 4);
    }

    /// With `weighting = "samples"` and no DP the reported sample counts weigh the mean,
    /// capped at `max_weight`; a report may be empty.
    #[test]
    fn sample_counts_weigh_only_as_asked_and_capped() {
        let cfg = StrategyConfig {
            weighting: Weighting::Samples,
            max_weight: Some(20),
            ..StrategyConfig::default()
        };
        let mut e = Rounds::new(weights([1.0, 1.0, 1.0]), 0, 1).with_strategy(cfg, None);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        e.connect("a", 10, 1);
        e.connect("b", 30, 2);
        let mut p = plan();
        p.privacy.mechanism = PrivacyMechanism::None;
        e.start_round(0.0, p, 1.0, 2, &mut rng);
        let (ta, tb) = (task(e.poll("a", 0)), task(e.poll("b", 0)));
        e.submit("a", &upload(&ta, [0.4, 0.0, -0.4], 10)).unwrap();
        let mut ub = upload(&tb, [0.0, 0.8, 0.0], 30);
        ub.report.mean_loss = None;
        e.submit("b", &ub).unwrap();
        let r = e.close_round().unwrap();
        // b claims 30 samples, capped at 20:
        // (10·(0.4,0,−0.4) + 20·(0,0.8,0)) / 30 = (0.1333, 0.5333, −0.1333)
        let v = &r.model.tensors[0].values;
        let want = [1.0 + 4.0 / 30.0, 1.0 + 16.0 / 30.0, 1.0 - 4.0 / 30.0];
        for (g, w) in v.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{v:?}");
        }
        assert_eq!(
            r.mean_loss,
            Some(1.0),
            "the loss only of the site that sent one"
        );
    }

    #[test]
    fn empty_round_keeps_the_model_and_finish_is_announced() {
        let mut e = Rounds::new(weights([1.0, 2.0, 3.0]), 0, 1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        e.connect("a", 10, 1);
        e.connect("a", 10, 2);
        e.disconnect("a", 1);
        assert_eq!(
            e.connected(),
            1,
            "a stale connection's close does not evict the new one"
        );
        e.start_round(0.0, plan(), 1.0, 1, &mut rng);
        let t = task(e.poll("a", 0));
        e.decline("a", t.round, t.nonce).unwrap();
        assert!(e.round_complete());
        let r = e.close_round().unwrap();
        assert_eq!((r.accepted, r.declined), (0, 1));
        assert_eq!(r.model, weights([1.0, 2.0, 3.0]));
        e.commit(r);
        assert!(matches!(
            e.poll("a", 1),
            Poll::Finished { last_round: 1, .. }
        ));
    }

    /// A "crash" after two accepted uploads: a new engine resumed from the persisted round
    /// state, with the two uploads replayed, ends at the same model as the engine that never
    /// stopped, and does not ask the acknowledged sites again.
    #[test]
    fn an_interrupted_round_resumes_to_the_same_model() {
        let names = ["a", "b", "c", "d"];
        let ups: Vec<[f32; 3]> = vec![
            [0.1, 0.2, -0.3],
            [0.3, -0.1, 0.05],
            [-0.2, 0.1, 0.1],
            [0.05, 0.05, 0.05],
        ];
        let mut p = plan();
        p.privacy.mechanism = PrivacyMechanism::None;
        let start = |e: &mut Rounds| {
            for (i, n) in names.iter().enumerate() {
                e.connect(n, 1, i as u64);
            }
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
            e.start_round(100.0, p.clone(), 1.0, 4, &mut rng)
        };
        // Uninterrupted.
        let mut whole = Rounds::new(weights([1.0, 1.0, 1.0]), 0, 1);
        let st = start(&mut whole);
        let mut uploads = vec![];
        for (n, u) in names.iter().zip(&ups) {
            let t = task(whole.poll(n, 0));
            let up = upload(&t, *u, 1);
            whole.submit(n, &up).unwrap();
            uploads.push(up);
        }
        let want = whole.close_round().unwrap().model_hash;

        // Interrupted after a and b: the shell had persisted `st` and their uploads.
        let mut before = Rounds::new(weights([1.0, 1.0, 1.0]), 0, 1);
        let st2 = start(&mut before);
        assert_eq!(st2, st, "same seed, same selection and nonces");
        for i in 0..2 {
            let c = before.check(names[i], &uploads[i]).unwrap().unwrap();
            let u = &uploads[i];
            before
                .apply(names[i], u.round, u.nonce, &u.update.hash, u.report, c)
                .unwrap();
        }
        let persisted = before.round_state().unwrap();
        drop(before);

        let mut after = Rounds::new(weights([1.0, 1.0, 1.0]), 0, 1);
        for (i, n) in names.iter().enumerate() {
            after.connect(n, 1, 10 + i as u64);
        }
        after.resume_round(persisted, 5000.0, 60.0);
        assert_eq!(
            after.poll_timeout(),
            Some(5060.0),
            "a fresh grace after the restart"
        );
        for i in 0..2 {
            after.submit(names[i], &uploads[i]).unwrap();
        }
        assert_eq!(
            after.poll("a", 0),
            Poll::Wait,
            "acknowledged: not asked again"
        );
        assert_eq!(after.poll("b", 0), Poll::Wait);
        let tc = task(after.poll("c", 0));
        assert_eq!(
            tc.nonce, uploads[2].nonce,
            "the same task as before the crash"
        );
        // A resend of an acknowledged upload is a duplicate, not a second fold.
        assert!(after.submit("a", &uploads[0]).unwrap().duplicate);
        after.submit("c", &uploads[2]).unwrap();
        after.submit("d", &uploads[3]).unwrap();
        assert_eq!(after.handle_timeout(5001.0), Step::Close);
        let r = after.close_round().unwrap();
        assert_eq!(r.accepted, 4);
        assert_eq!(r.model_hash, want);
    }

    /// Deadlines without sleeping: a round short of its minimum is extended once (topped
    /// up with a connected site not selected before), then fails with the reason; the model
    /// version does not advance.
    #[test]
    fn a_short_round_is_extended_then_fails_and_the_version_stays() {
        let rules = RoundRules {
            deadline_secs: 10.0,
            min_updates: 2,
            max_extensions: 1,
        };
        let mut e = Rounds::new(weights([1.0, 1.0, 1.0]), 0, 3).with_rules(rules);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for (i, n) in ["a", "b", "c"].into_iter().enumerate() {
            e.connect(n, 1, i as u64);
        }
        let st = e.start_round(0.0, plan(), 0.5, 2, &mut rng);
        assert_eq!((st.nonces.len(), st.deadline), (2, 10.0));
        let sel: Vec<String> = st.nonces.keys().cloned().collect();
        let outsider = ["a", "b", "c"]
            .into_iter()
            .find(|n| !st.nonces.contains_key(*n))
            .unwrap();
        let t = task(e.poll(&sel[0], 0));
        e.submit(&sel[0], &upload(&t, [0.1, 0.0, 0.0], 1)).unwrap();
        assert_eq!(e.handle_timeout(5.0), Step::Wait);
        let Step::Extended(ext) = e.handle_timeout(10.0) else {
            panic!("expected an extension")
        };
        assert_eq!((ext.extensions, ext.deadline), (1, 20.0));
        assert!(ext.nonces.contains_key(outsider), "topped up");
        assert!(matches!(e.poll(outsider, 0), Poll::Task(_)));
        assert_eq!(e.handle_timeout(19.0), Step::Wait);
        let Step::Failed(why) = e.handle_timeout(20.0) else {
            panic!("expected a failure")
        };
        assert!(
            why.contains("needs 2 accepted updates but got 1") && why.contains("2 did not answer"),
            "{why}"
        );
        e.fail_round();
        assert_eq!(e.committed(), 0);
        assert_eq!(e.global(), &weights([1.0, 1.0, 1.0]));

        // A round that reaches its minimum closes as soon as every site answered.
        let mut e = Rounds::new(weights([1.0, 1.0, 1.0]), 0, 3).with_rules(rules);
        e.connect("a", 1, 1);
        e.connect("b", 1, 2);
        e.start_round(0.0, plan(), 1.0, 2, &mut rng);
        assert_eq!(e.handle_timeout(1.0), Step::Wait);
        for n in ["a", "b"] {
            let t = task(e.poll(n, 0));
            e.submit(n, &upload(&t, [0.1, 0.0, 0.0], 1)).unwrap();
        }
        assert_eq!(e.handle_timeout(2.0), Step::Close);

        // Every site answered, too few accepted, nobody left to ask: fail at once.
        let mut e = Rounds::new(weights([1.0, 1.0, 1.0]), 0, 3).with_rules(rules);
        e.connect("a", 1, 1);
        e.connect("b", 1, 2);
        e.start_round(0.0, plan(), 1.0, 2, &mut rng);
        for n in ["a", "b"] {
            let t = task(e.poll(n, 0));
            e.decline(n, t.round, t.nonce).unwrap();
        }
        assert!(matches!(e.handle_timeout(1.0), Step::Failed(_)));
    }

    /// Krum raises the minimum to 2f + 3; central DP's minimum stays 0.
    #[test]
    fn the_strategy_sets_the_least_number_of_updates() {
        use crate::strategy::config::StrategyKind;
        let krum = StrategyConfig {
            name: StrategyKind::Krum,
            byzantine: 2,
            ..StrategyConfig::default()
        };
        let e = Rounds::new(weights([0.0; 3]), 0, 1).with_strategy(krum, None);
        assert_eq!(e.min_updates(), 7);
        let e = Rounds::new(weights([0.0; 3]), 0, 1).with_rules(RoundRules {
            min_updates: 0,
            ..RoundRules::default()
        });
        assert_eq!(e.min_updates(), 0);
    }

    /// Under client-level DP an update sent without its noise is refused.
    #[test]
    fn an_update_without_its_noise_is_refused() {
        let d = 10_000;
        let big = |v: f32| Weights {
            tensors: vec![WeightTensor {
                name: "w".into(),
                shape: vec![d],
                values: {
                    let mut x = vec![0.0; d];
                    x[0] = v;
                    x
                },
            }],
        };
        let mut e = Rounds::new(big(0.0), 0, 1);
        e.connect("a", 1, 1);
        let mut p = plan();
        p.privacy.client.noise_multiplier = 0.5;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        e.start_round(0.0, p, 1.0, 1, &mut rng);
        let t = task(e.poll("a", 0));
        let mut u = upload(&t, [0.0; 3], 1);
        u.update = ModelPayload::from_weights(&big(1.0));
        assert_eq!(e.submit("a", &u).unwrap_err().code, ErrorCode::NoiseMissing);
    }

    /// Handshake rules without sockets: a version mismatch and a forged name are refused
    /// with the reason; the certificate's own name passes.
    #[test]
    fn the_handshake_refuses_other_versions_and_forged_names() {
        let hello = |v: u32, name: &str| fedssl_protocol::Hello {
            protocol_version: v,
            software_version: "x".into(),
            capabilities: vec![],
            claimed_name: name.into(),
            num_samples: None,
        };
        let v = fedssl_protocol::PROTOCOL_VERSION;
        assert!(check_hello("site-a", &hello(v, "site-a")).is_ok());
        let e = check_hello("site-a", &hello(v - 1, "site-a")).unwrap_err();
        assert_eq!(e.code, ErrorCode::VersionMismatch);
        assert!(
            e.reason.contains("install the same fedssl version"),
            "{}",
            e.reason
        );
        let e = check_hello("site-a", &hello(v, "site-b")).unwrap_err();
        assert_eq!(e.code, ErrorCode::NameMismatch);
        assert!(
            e.reason.contains("identifies you as `site-a`"),
            "{}",
            e.reason
        );
    }
}
