//! The site's protocol logic, free of I/O, in quinn-proto's shape: the session shell
//! feeds it what the server said ([`Site::on_welcome`], [`Site::on_task`],
//! [`Site::on_answer`]) and what training produced ([`Site::on_trained`]); it answers with
//! what to send and what to make durable. Connecting, polling, training on the compute
//! pool and writing the ledger and state files stay in [`crate::session`].
//!
//! One noising per round, ever: a round the ledger charged is answered with the very bytes
//! that were privatized then (while they are kept) or refused, never noised again.

use fedssl_ml::data::Dataset;
use fedssl_ml::model::{ModelSpec, Weights, WeightsSpec};
use fedssl_ml::prelude::*;
use fedssl_privacy::ledger::{LedgerEntry, PrivacyLedger, Unit};
use fedssl_protocol::{
    ClientMsg, ErrorCode, LocalCollapse, ModelPayload, RoundPlan, ServerMsg, SiteEval, SiteReport,
    Task, Upload,
};

use crate::config::ReportConfig;
use crate::privacy::RoundPrivacy;
use crate::trainer;

/// An error after which retrying cannot help (the session ends with it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

/// The site's standing rules: what it may spend and disclose.
#[derive(Debug, Clone, Copy)]
pub struct SiteRules {
    /// The most ε this site spends, in the unit of each round's mechanism.
    pub epsilon_budget: f64,
    /// What the site opted in to disclose next to a private update.
    pub report: ReportConfig,
    /// The site holds labels for federated evaluation.
    pub local_labels: bool,
}

/// What to do with a task ([`Site::on_task`]).
#[derive(Debug)]
pub enum Action {
    /// Send this message (a Decline with its reason).
    Decline(ClientMsg),
    /// Send the kept privatized update again (same bytes; the task's nonce).
    Resend(Box<Upload>),
    /// Train, privatize, then call [`Site::on_trained`].
    Train(Box<Job>),
}

/// A round to train: everything the shell needs to run it.
#[derive(Debug, Clone)]
pub struct Job {
    /// Round id.
    pub round: u64,
    /// The task's nonce.
    pub nonce: u64,
    /// Hash of the global model it starts from.
    pub base_hash: String,
    /// The round's plan.
    pub plan: RoundPlan,
    /// The decoded global model.
    pub global: Weights,
    /// The round's mechanisms: DP-SGD in training, client-level noise on the update.
    pub privacy: RoundPrivacy,
    /// Local steps.
    pub steps: usize,
    /// What may leave the site next to the update.
    pub disclose: ReportConfig,
    /// Evaluate the global model on local labels first (federated evaluation).
    pub site_eval: bool,
    /// Forget the kept update first (the server moved past its round).
    pub clear_pending: bool,
    /// The site's seed for augmentations and sampling.
    pub site_seed: u64,
}

/// What the shell's execution of a [`Job`] produced.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The update, privatized with the job's client-level mechanism when it has one.
    pub update: Weights,
    /// The update's norm before clipping (client-level mechanism only).
    pub norm_before_clip: Option<f64>,
    /// Mean local loss.
    pub mean_loss: f32,
    /// Seconds of local training.
    pub train_seconds: f64,
    /// Collapse monitors (when disclosed).
    pub collapse: Option<LocalCollapse>,
    /// Federated evaluation (when asked and disclosed).
    pub site_eval: Option<SiteEval>,
}

/// A privatized round, ready to leave: make `entry` durable in the ledger (and `upload`
/// pending) before sending `upload`.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The ledger's record of the round's spend.
    pub entry: LedgerEntry,
    /// What goes to the server.
    pub upload: Upload,
    /// ε of the whole ledger with this round, in `unit`.
    pub epsilon: f64,
    /// The unit that ε protects.
    pub unit: Unit,
}

/// What an answer to an upload or decline means ([`Site::on_answer`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Answered {
    /// The server holds the update durably: record the acknowledgement.
    Acknowledged {
        /// The server already had it (an idempotent resend).
        duplicate: bool,
    },
    /// The server noted the decline.
    Declined,
    /// Refused: the round is over or not ours; wait for the next one.
    Skip(String),
    /// Refused for now: ask for the round again shortly (the same bytes go out).
    Retry(String),
}

/// The site (see the module documentation).
#[derive(Debug)]
pub struct Site {
    rules: SiteRules,
    /// The site's name, as the server confirmed it.
    pub name: String,
    /// The last round answered (acknowledged, declined, or closed).
    last_round: u64,
    /// The last plan's model and its global tensors' layout (built once per model).
    spec: Option<(ModelSpec, WeightsSpec)>,
    /// Rounds whose update the server acknowledged.
    pub rounds_trained: Vec<u64>,
    /// Rounds declined.
    pub rounds_declined: Vec<u64>,
    /// The mechanism of the last plan trained under.
    pub mechanism: String,
    /// Figures sent in plain numbers next to private updates (outside every ε).
    pub disclosed_outside_epsilon: Vec<String>,
}

impl Site {
    /// A site with `rules`.
    pub fn new(rules: SiteRules) -> Self {
        Self {
            rules,
            name: String::new(),
            last_round: 0,
            spec: None,
            rounds_trained: vec![],
            rounds_declined: vec![],
            mechanism: String::new(),
            disclosed_outside_epsilon: vec![],
        }
    }

    /// The server welcomed the site as `name`; `acknowledged` is the last round the
    /// server acknowledged before a restart (from the state folder).
    pub fn on_welcome(&mut self, name: String, acknowledged: Option<u64>) {
        self.name = name;
        self.last_round = resume_after(self.last_round, acknowledged);
    }

    /// The long poll to send next.
    pub fn next_request(&self) -> ClientMsg {
        ClientMsg::NextTask {
            after_round: self.last_round,
        }
    }

    /// The global tensors' layout of the last plan's model, if one was seen.
    pub fn weights_spec(&self) -> Option<&WeightsSpec> {
        self.spec.as_ref().map(|(_, s)| s)
    }

    /// Decides on a task, given the site's data, its ledger and its kept update: resend,
    /// decline (with the reason the server records) or train. Errors: the server's model or
    /// plan is invalid ([`Fatal`] when retrying cannot help).
    pub fn on_task(
        &mut self,
        task: Task,
        data: &Dataset,
        ledger: &PrivacyLedger,
        pending: Option<&Upload>,
    ) -> anyhow::Result<Action> {
        // A plan no honest server sends (a zero batch, a NaN rate, a mask ratio of 1.5) is
        // declined with the field it breaks, before anything is built from it.
        if let Err(e) = task.plan.validate() {
            tracing::warn!(
                round = task.round,
                "declining: the server's plan is invalid: {e}"
            );
            return Ok(Action::Decline(ClientMsg::Decline {
                round: task.round,
                nonce: task.nonce,
                reason: format!("the server's plan is invalid: plan.{e}"),
            }));
        }
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
            .map_err(|e| anyhow::anyhow!("the global model from the server is invalid: {e}"))?;
        anyhow::ensure!(
            global.is_finite(),
            "the global model from the server has NaN values"
        );
        let base_hash = task.model.hash.clone();
        let decline = |reason: String| {
            tracing::warn!(round = task.round, "declining: {reason}");
            Ok(Action::Decline(ClientMsg::Decline {
                round: task.round,
                nonce: task.nonce,
                reason,
            }))
        };
        let clear_pending = match decide(task.round, &base_hash, task.nonce, pending, ledger) {
            Decision::Resend(u) => return Ok(Action::Resend(u)),
            Decision::Decline(reason) => return decline(reason),
            Decision::Fresh { clear_pending } => clear_pending,
        };
        self.mechanism = task.plan.privacy.mechanism.name().into();
        if let Err(e) = trainer::check_data(data, &task.plan) {
            return decline(format!("{e:#}"));
        }
        let trainable = trainer::trainable_params(&task.plan.model)?;
        let privacy = match RoundPrivacy::new(
            &task.plan,
            data.len(),
            trainable,
            spec.num_params(),
            ledger.delta,
        ) {
            Ok(p) => p,
            Err(e) => return decline(format!("{e:#}")),
        };
        if let Err(e) = ledger.check(
            privacy.unit(),
            &privacy.releases(),
            self.rules.epsilon_budget,
        ) {
            return decline(if privacy.mechanism.is_private() {
                e.to_string()
            } else {
                format!(
                    "the server's plan trains without DP (mechanism \"none\"), and this site's \
                     epsilon_budget is {}; only a site with epsilon_budget = inf takes part in \
                     such rounds",
                    self.rules.epsilon_budget
                )
            });
        }
        let steps = match privacy.dp_sgd {
            Some(s) => s.steps as usize,
            None => trainer::steps_per_round(data.len(), &task.plan),
        };
        // What may leave the site next to the update: everything without DP, else what the
        // site opted in to.
        let disclose = if privacy.mechanism.is_private() {
            self.rules.report
        } else {
            ReportConfig::ALL
        };
        Ok(Action::Train(Box::new(Job {
            round: task.round,
            nonce: task.nonce,
            base_hash,
            site_eval: self.rules.local_labels && task.plan.evaluate && disclose.site_eval,
            plan: task.plan,
            global,
            privacy,
            steps,
            disclose,
            clear_pending,
            site_seed: hash_name(&self.name),
        })))
    }

    /// The job ran: the ledger entry that charges the round and the upload that may leave
    /// once the entry is durable. `records` is the site's number of training records.
    pub fn on_trained(
        &mut self,
        job: &Job,
        t: Trained,
        ledger: &PrivacyLedger,
        records: usize,
        now: u64,
    ) -> anyhow::Result<Prepared> {
        let clip_count = match t.norm_before_clip {
            Some(norm) => job.privacy.noised_indicator(norm)?,
            None => None,
        };
        let entry = LedgerEntry {
            round: job.round,
            base_model_hash: job.base_hash.clone(),
            at: now,
            releases: job.privacy.releases(),
        };
        let unit = job.privacy.unit();
        let epsilon = ledger
            .epsilon_with(unit, &entry.releases)
            .unwrap_or(f64::INFINITY);
        let d = job.disclose;
        let report = SiteReport {
            num_samples: d.sample_count.then_some(records as u64),
            mean_loss: d.loss.then_some(t.mean_loss),
            epsilon: (d.epsilon && epsilon.is_finite()).then_some(epsilon),
            train_seconds: d.train_seconds.then_some(t.train_seconds),
            collapse: t.collapse.filter(|_| d.collapse),
            site_eval: t.site_eval.filter(|_| job.site_eval),
            clip_count,
        };
        if job.privacy.mechanism.is_private() {
            for f in report.disclosed() {
                if !self.disclosed_outside_epsilon.iter().any(|x| x == f) {
                    self.disclosed_outside_epsilon.push(f.to_string());
                }
            }
        }
        Ok(Prepared {
            entry,
            upload: Upload {
                round: job.round,
                nonce: job.nonce,
                base_model_hash: job.base_hash.clone(),
                update: ModelPayload::from_weights(&t.update),
                report,
            },
            epsilon,
            unit,
        })
    }

    /// The server answered the upload or decline for `round`.
    pub fn on_answer(&mut self, round: u64, resp: ServerMsg) -> anyhow::Result<Answered> {
        Ok(match resp {
            ServerMsg::UploadAccepted { duplicate, .. } => {
                if !self.rounds_trained.contains(&round) {
                    self.rounds_trained.push(round);
                }
                self.last_round = round;
                Answered::Acknowledged { duplicate }
            }
            ServerMsg::DeclineNoted { .. } => {
                self.rounds_declined.push(round);
                self.last_round = round;
                Answered::Declined
            }
            ServerMsg::Error(e) => match e.code {
                ErrorCode::StaleRound | ErrorCode::NotSelected => {
                    self.last_round = self.last_round.max(round);
                    Answered::Skip(e.to_string())
                }
                _ => Answered::Retry(e.to_string()),
            },
            other => anyhow::bail!("unexpected answer to an upload: {other:?}"),
        })
    }
}

/// A stable per-site seed from its name (FNV-1a).
pub fn hash_name(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// What to do with a task for `round` from base model `base`.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send the kept privatized update again (same bytes; the task's nonce).
    Resend(Box<Upload>),
    /// Refuse, with the reason (recorded by the server).
    Decline(String),
    /// Train and privatize afresh; `clear_pending` when the kept update belongs to a round
    /// the server has moved past.
    Fresh {
        /// Forget the kept update first.
        clear_pending: bool,
    },
}

/// Decides on a task from the kept update and the ledger.
pub fn decide(
    round: u64,
    base: &str,
    nonce: u64,
    pending: Option<&Upload>,
    ledger: &PrivacyLedger,
) -> Decision {
    if let Some(p) = pending {
        if p.round == round && p.base_model_hash == base {
            let mut u = p.clone();
            u.nonce = nonce;
            return Decision::Resend(Box::new(u));
        }
    }
    if let Some(e) = ledger.entry(round) {
        let why = if e.base_model_hash == base {
            "its privatized update is no longer kept"
        } else {
            "the server now names another base model for it"
        };
        return Decision::Decline(format!(
            "round {round} was already privatized and released by this site (from model {}); {why}, and noising the same round again would spend privacy twice. Refusing",
            short(&e.base_model_hash)
        ));
    }
    let last = ledger.last_round();
    if round < last {
        return Decision::Decline(format!(
            "the server asks for round {round}, older than round {last} this site already spent; refusing"
        ));
    }
    Decision::Fresh {
        clear_pending: pending.is_some_and(|p| p.round < round),
    }
}

/// The round a (re)connecting site tells the server it is done with (`NextTask {
/// after_round }`): the last round it saw answered in this process (`seen`: acknowledged,
/// declined or closed), or the last one the server acknowledged before a restart. Never a
/// round whose privatized update was charged but not acknowledged: the server, which may
/// have lost it in a crash, offers that round again, and the kept bytes are resent (see
/// [`decide`]). A site that reports its ledger's last round instead waits forever for a
/// round the server will only finish with its update.
pub fn resume_after(seen: u64, acknowledged: Option<u64>) -> u64 {
    seen.max(acknowledged.unwrap_or(0))
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedssl_privacy::ledger::{LedgerEntry, Release};
    use fedssl_protocol::{ModelPayload, SiteReport};

    fn upload(round: u64, base: &str) -> Upload {
        Upload {
            round,
            nonce: 1,
            base_model_hash: base.into(),
            update: ModelPayload::from_weights(&Default::default()),
            report: SiteReport::default(),
        }
    }

    fn ledger(rounds: &[(u64, &str)]) -> PrivacyLedger {
        let mut l = PrivacyLedger::new(1e-5, 0);
        for &(round, base) in rounds {
            l.entries.push(LedgerEntry {
                round,
                base_model_hash: base.into(),
                at: 0,
                releases: vec![Release {
                    what: "update".into(),
                    bounds: vec![],
                }],
            });
        }
        l
    }

    #[test]
    fn the_same_round_under_a_new_nonce_gets_the_same_bytes() {
        let l = ledger(&[(3, "m2")]);
        let p = upload(3, "m2");
        match decide(3, "m2", 99, Some(&p), &l) {
            Decision::Resend(u) => {
                assert_eq!(u.nonce, 99);
                assert_eq!(u.update, p.update);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_same_round_from_another_base_or_without_its_bytes_is_refused() {
        let l = ledger(&[(3, "m2")]);
        let p = upload(3, "m2");
        assert!(
            matches!(decide(3, "other", 5, Some(&p), &l), Decision::Decline(r) if r.contains("another base model"))
        );
        assert!(
            matches!(decide(3, "m2", 5, None, &l), Decision::Decline(r) if r.contains("no longer kept"))
        );
        assert!(matches!(decide(2, "m1", 5, None, &l), Decision::Decline(_)));
    }

    /// Charged for round 3, acknowledged only up to round 2 (the process or the server
    /// died in between): the site asks after round 2, so round 3 comes again and the same
    /// bytes are resent.
    #[test]
    fn a_charged_but_unacknowledged_round_is_asked_for_again() {
        assert_eq!(resume_after(0, Some(2)), 2);
        assert_eq!(resume_after(3, Some(2)), 3, "seen answered in this process");
        assert_eq!(resume_after(0, None), 0);
        let l = ledger(&[(2, "m1"), (3, "m2")]);
        let after = resume_after(0, Some(2));
        let next_task_round = after + 1;
        assert!(matches!(
            decide(next_task_round, "m2", 7, Some(&upload(3, "m2")), &l),
            Decision::Resend(_)
        ));
    }

    #[test]
    fn a_later_round_trains_and_drops_the_old_bytes() {
        let l = ledger(&[(3, "m2")]);
        assert_eq!(
            decide(4, "m3", 5, Some(&upload(3, "m2")), &l),
            Decision::Fresh {
                clear_pending: true
            }
        );
        assert_eq!(
            decide(1, "m0", 5, None, &ledger(&[])),
            Decision::Fresh {
                clear_pending: false
            }
        );
    }

    mod site {
        use super::super::*;
        use fedssl_privacy::plan::{ClientLevelParams, PrivacyMechanism, PrivacyPlan};
        use fedssl_protocol::ProtocolError;
        use fedssl_server::config::PlanConfig;

        fn plan(mechanism: PrivacyMechanism) -> RoundPlan {
            let cfg = PlanConfig {
                privacy: PrivacyPlan {
                    mechanism,
                    client: ClientLevelParams {
                        clip_norm: 1.0,
                        noise_multiplier: 1.0,
                        adaptive: None,
                    },
                    rounds: 10,
                    ..PrivacyPlan::default()
                },
                ..PlanConfig::default()
            };
            cfg.validate().unwrap();
            cfg.plan(1)
        }

        fn task(round: u64, plan: &RoundPlan) -> Task {
            let w = plan.model.initial_global(3).unwrap();
            Task {
                round,
                nonce: 40 + round,
                plan: plan.clone(),
                model: ModelPayload::from_weights(&w),
            }
        }

        fn site(budget: f64) -> Site {
            let mut s = Site::new(SiteRules {
                epsilon_budget: budget,
                report: ReportConfig {
                    loss: true,
                    ..ReportConfig::default()
                },
                local_labels: false,
            });
            s.on_welcome("site-a".into(), None);
            s
        }

        fn trained(job: &Job) -> Trained {
            Trained {
                update: job.global.sub(&job.global).unwrap(),
                norm_before_clip: Some(0.5),
                mean_loss: 1.5,
                train_seconds: 2.0,
                collapse: None,
                site_eval: None,
            }
        }

        fn data() -> Dataset {
            fedssl_ml::data::synthetic::generate(64, 1)
        }

        #[test]
        fn a_round_trains_is_charged_then_acknowledged_and_a_resend_costs_nothing() {
            let mut s = site(100.0);
            let mut ledger = PrivacyLedger::new(1e-5, 0);
            let p = plan(PrivacyMechanism::ClientLevel);
            assert!(matches!(
                s.next_request(),
                ClientMsg::NextTask { after_round: 0 }
            ));
            let job = match s.on_task(task(1, &p), &data(), &ledger, None).unwrap() {
                Action::Train(j) => j,
                other => panic!("{other:?}"),
            };
            assert_eq!((job.round, job.nonce, job.clear_pending), (1, 41, false));
            assert!(job.privacy.client.is_some());
            let prep = s.on_trained(&job, trained(&job), &ledger, 64, 123).unwrap();
            assert_eq!(prep.entry.round, 1);
            assert_eq!(prep.unit, Unit::Site);
            assert!(prep.epsilon.is_finite() && prep.epsilon > 0.0);
            // Only what the site opted in to leaves next to a private update.
            let r = prep.upload.report;
            assert_eq!(r.mean_loss, Some(1.5));
            assert_eq!(
                (r.num_samples, r.epsilon, r.train_seconds),
                (None, None, None)
            );
            assert_eq!(s.disclosed_outside_epsilon, vec!["loss".to_string()]);
            ledger.entries.push(prep.entry.clone());

            // The server lost it (crash) and asks again under a new nonce: the same bytes.
            let mut again = task(1, &p);
            again.nonce = 99;
            match s
                .on_task(again.clone(), &data(), &ledger, Some(&prep.upload))
                .unwrap()
            {
                Action::Resend(u) => {
                    assert_eq!(u.nonce, 99);
                    assert_eq!(u.update, prep.upload.update);
                }
                other => panic!("{other:?}"),
            }
            // Without its kept bytes the charged round is refused, never noised again.
            assert!(matches!(
                s.on_task(again, &data(), &ledger, None).unwrap(),
                Action::Decline(ClientMsg::Decline { round: 1, .. })
            ));

            let a = s
                .on_answer(
                    1,
                    ServerMsg::UploadAccepted {
                        round: 1,
                        duplicate: false,
                    },
                )
                .unwrap();
            assert_eq!(a, Answered::Acknowledged { duplicate: false });
            assert_eq!(s.rounds_trained, vec![1]);
            assert!(matches!(
                s.next_request(),
                ClientMsg::NextTask { after_round: 1 }
            ));
        }

        #[test]
        fn budget_and_plans_without_dp_are_declined_with_the_reason() {
            let ledger = PrivacyLedger::new(1e-5, 0);
            let mut s = site(1e-3);
            match s
                .on_task(
                    task(1, &plan(PrivacyMechanism::ClientLevel)),
                    &data(),
                    &ledger,
                    None,
                )
                .unwrap()
            {
                Action::Decline(ClientMsg::Decline { reason, nonce, .. }) => {
                    assert_eq!(nonce, 41);
                    assert!(reason.contains("budget"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
            let mut s = site(100.0);
            match s
                .on_task(
                    task(1, &plan(PrivacyMechanism::None)),
                    &data(),
                    &ledger,
                    None,
                )
                .unwrap()
            {
                Action::Decline(ClientMsg::Decline { reason, .. }) => {
                    assert!(reason.contains("without DP"), "{reason}")
                }
                other => panic!("{other:?}"),
            }
            assert!(s
                .on_answer(1, ServerMsg::DeclineNoted { round: 1 })
                .is_ok_and(|a| a == Answered::Declined));
            assert_eq!(s.rounds_declined, vec![1]);
        }

        #[test]
        fn a_plan_no_honest_server_sends_is_declined_naming_the_field() {
            use fedssl_core::spec::{Masked, Objective};
            let ledger = PrivacyLedger::new(1e-5, 0);
            let good = plan(PrivacyMechanism::ClientLevel);
            type Break = fn(&mut RoundPlan);
            let cases: Vec<(&str, Break)> = vec![
                ("batch_size", |p| p.batch_size = 0),
                ("local_epochs", |p| p.local_epochs = u32::MAX),
                ("learning_rate", |p| p.learning_rate = f64::NAN),
                ("temperature", |p| p.temperature = -1.0),
                ("strategy.mu", |p| p.proximal_mu = f64::INFINITY),
                ("masked.ratio", |p| {
                    p.model.objective = Objective::Masked(Masked {
                        ratio: 1.5,
                        ..Masked::default()
                    })
                }),
                ("noise_multiplier", |p| {
                    p.privacy.client.noise_multiplier = f64::NAN
                }),
            ];
            for (field, break_it) in cases {
                let mut p = good.clone();
                break_it(&mut p);
                let mut s = site(100.0);
                match s.on_task(task(1, &p), &data(), &ledger, None).unwrap() {
                    Action::Decline(ClientMsg::Decline { reason, nonce, .. }) => {
                        assert_eq!(nonce, 41);
                        assert!(
                            reason.contains("plan is invalid") && reason.contains(field),
                            "{field}: {reason}"
                        );
                    }
                    other => panic!("{field}: {other:?}"),
                }
            }
        }

        #[test]
        fn a_hostile_model_or_answer_is_an_error_not_a_panic() {
            let ledger = PrivacyLedger::new(1e-5, 0);
            let mut s = site(100.0);
            let p = plan(PrivacyMechanism::ClientLevel);
            let mut t = task(1, &p);
            let mut w = p.model.initial_global(3).unwrap();
            w.tensors[0].values[0] = f32::NAN;
            t.model = ModelPayload::from_weights(&w);
            let e = s.on_task(t, &data(), &ledger, None).unwrap_err();
            assert!(e.to_string().contains("NaN"), "{e}");
            let mut t = task(1, &p);
            t.model = ModelPayload::from_weights(&Default::default());
            let e = s.on_task(t, &data(), &ledger, None).unwrap_err();
            assert!(e.to_string().contains("invalid"), "{e}");
            assert!(e.downcast_ref::<Fatal>().is_none(), "a retry may help");

            let err = |code| {
                ServerMsg::Error(ProtocolError {
                    code,
                    message: "x".into(),
                })
            };
            assert!(matches!(
                s.on_answer(5, err(ErrorCode::StaleRound)).unwrap(),
                Answered::Skip(_)
            ));
            assert!(matches!(
                s.next_request(),
                ClientMsg::NextTask { after_round: 5 }
            ));
            assert!(matches!(
                s.on_answer(6, err(ErrorCode::Internal)).unwrap(),
                Answered::Retry(_)
            ));
            assert!(s
                .on_answer(6, ServerMsg::Wait { retry_after_ms: 0 })
                .is_err());
        }
    }
}
