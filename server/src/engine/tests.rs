//! The engine driven by messages, time and write outcomes: no sockets, no sleeping, no disk.

use super::rounds::tests::weights;
use super::*;
use fedssl_privacy::plan::{PrivacyMechanism, PrivacyPlan};
use fedssl_protocol::{Hello, Task};
use rand::SeedableRng;

fn schedule(rounds: u64, min_clients: usize) -> Schedule {
    Schedule {
        plan: PlanConfig {
            privacy: PrivacyPlan {
                mechanism: PrivacyMechanism::None,
                ..PrivacyPlan::default()
            },
            ..PlanConfig::default()
        },
        rounds,
        min_clients,
        sample_fraction: 1.0,
        wait_for_clients_secs: 30.0,
        federated_eval_every: 0,
        rules: RoundRules {
            deadline_secs: 100.0,
            min_updates: 1,
            max_extensions: 0,
        },
    }
}

fn peer(name: &str, conn: u64) -> Peer {
    Peer {
        conn,
        name: name.into(),
    }
}

fn hello(name: &str) -> ClientMsg {
    ClientMsg::Hello(Hello {
        protocol_version: fedssl_protocol::PROTOCOL_VERSION,
        software_version: fedssl_protocol::SOFTWARE_VERSION.into(),
        capabilities: vec![],
        claimed_name: name.into(),
        num_samples: Some(10),
    })
}

fn upload(t: &Task, v: [f32; 3]) -> ClientMsg {
    ClientMsg::Upload(Box::new(Upload {
        round: t.round,
        nonce: t.nonce,
        base_model_hash: t.model.hash.clone(),
        update: ModelPayload::from_weights(&weights(v)),
        report: SiteReport::default(),
    }))
}

/// The shell, played by the test: every write succeeds at once unless `hold` is set, in
/// which case writes wait in `held` until the test releases them.
struct Shell {
    e: Engine,
    next: RequestId,
    replies: HashMap<RequestId, ServerMsg>,
    writes: Vec<Durable>,
    held: Vec<(u64, Durable)>,
    hold: bool,
    stops: Vec<String>,
}

impl Shell {
    fn new(e: Engine) -> Self {
        Self {
            e,
            next: 0,
            replies: HashMap::new(),
            writes: vec![],
            held: vec![],
            hold: false,
            stops: vec![],
        }
    }

    fn pump(&mut self, now: f64) {
        while let Some(effect) = self.e.poll_effect() {
            match effect {
                Effect::Reply { req, msg } => {
                    assert!(
                        self.replies.insert(req, msg).is_none(),
                        "request {req} answered twice"
                    );
                }
                Effect::Stop(s) => self.stops.push(s),
                Effect::Persist { token, what } if self.hold => self.held.push((token, what)),
                Effect::Persist { token, what } => {
                    self.writes.push(what);
                    self.e.persisted(now, token, Ok(()));
                }
            }
        }
    }

    fn release(&mut self, now: f64, outcome: Result<(), String>) {
        for (token, what) in std::mem::take(&mut self.held) {
            self.writes.push(what);
            self.e.persisted(now, token, outcome.clone());
        }
        self.pump(now);
    }

    /// Sends `msg` from `p` at `now`; returns the request id.
    fn send(&mut self, now: f64, p: &Peer, msg: ClientMsg) -> RequestId {
        let req = self.next;
        self.next += 1;
        self.e.handle(now, req, p.clone(), msg);
        self.pump(now);
        req
    }

    /// Sends and expects an answer at once.
    fn ask(&mut self, now: f64, p: &Peer, msg: ClientMsg) -> ServerMsg {
        let req = self.send(now, p, msg);
        self.replies
            .remove(&req)
            .unwrap_or_else(|| panic!("no answer to request {req}"))
    }

    fn tick(&mut self, now: f64) {
        self.e.handle_timeout(now);
        self.pump(now);
    }

    fn task(&mut self, now: f64, p: &Peer, after: u64) -> Task {
        match self.ask(now, p, ClientMsg::NextTask { after_round: after }) {
            ServerMsg::Task(t) => *t,
            other => panic!("expected a task, got {other:?}"),
        }
    }
}

fn engine(rounds: u64, min_clients: usize) -> Engine {
    Engine::new(
        schedule(rounds, min_clients),
        weights([1.0, 1.0, 1.0]),
        0,
        rand_chacha::ChaCha8Rng::seed_from_u64(7),
        0.0,
    )
}

fn code(m: &ServerMsg) -> Option<ErrorCode> {
    match m {
        ServerMsg::Error(e) => Some(e.code),
        _ => None,
    }
}

#[test]
fn the_handshake_refuses_other_versions_forged_names_and_requests_before_hello() {
    let mut s = Shell::new(engine(1, 1));
    let a = peer("a", 1);
    let r = s.ask(0.0, &a, ClientMsg::NextTask { after_round: 0 });
    assert_eq!(code(&r), Some(ErrorCode::HelloRequired));
    let r = s.ask(0.0, &a, hello("b"));
    assert_eq!(code(&r), Some(ErrorCode::NameMismatch), "{r:?}");
    let mut old = hello("a");
    if let ClientMsg::Hello(h) = &mut old {
        h.protocol_version -= 1;
    }
    let r = s.ask(0.0, &a, old);
    assert_eq!(code(&r), Some(ErrorCode::VersionMismatch));
    assert_eq!(s.e.connected(), 0, "no refused site counts as connected");
    let c = s.e.counters.snapshot();
    assert_eq!(
        (
            c.requests_without_hello,
            c.name_mismatches,
            c.version_mismatches
        ),
        (1, 1, 1)
    );
    assert!(s.writes.is_empty(), "nothing refused is recorded as a site");
    assert!(matches!(s.ask(0.0, &a, hello("a")), ServerMsg::Welcome(_)));
}

#[test]
fn a_welcome_waits_for_its_write_and_a_failed_write_is_reported() {
    let mut s = Shell::new(engine(1, 2));
    s.hold = true;
    let a = peer("a", 1);
    let req = s.send(0.0, &a, hello("a"));
    assert!(
        !s.replies.contains_key(&req),
        "no Welcome before the site is recorded"
    );
    assert_eq!(s.e.connected(), 0);
    s.release(0.0, Ok(()));
    assert!(matches!(
        s.replies.remove(&req),
        Some(ServerMsg::Welcome(_))
    ));
    assert_eq!(s.e.connected(), 1);

    let b = peer("b", 2);
    let req = s.send(0.0, &b, hello("b"));
    s.release(0.0, Err("disk full".into()));
    let r = s.replies.remove(&req).unwrap();
    assert_eq!(code(&r), Some(ErrorCode::Internal));
    assert_eq!(
        s.e.connected(),
        1,
        "b is not connected: its Hello was not recorded"
    );
}

#[test]
fn too_few_sites_stop_the_run_at_the_end_of_the_wait() {
    let mut s = Shell::new(engine(1, 3));
    let a = peer("a", 1);
    s.ask(0.0, &a, hello("a"));
    assert_eq!(s.e.poll_timeout(), Some(30.0));
    s.tick(29.9);
    assert!(s.stops.is_empty());
    s.tick(30.0);
    assert_eq!(s.stops.len(), 1);
    assert!(
        s.stops[0].contains("only 1 of the required 3 clients"),
        "{}",
        s.stops[0]
    );
    assert!(s.e.is_finished());
    // The site is told, not left polling.
    assert!(matches!(
        s.ask(31.0, &a, ClientMsg::NextTask { after_round: 0 }),
        ServerMsg::Finished { .. }
    ));
}

#[test]
fn tasks_wait_for_the_round_to_be_durable_and_acks_for_the_update() {
    let mut s = Shell::new(engine(1, 2));
    let (a, b) = (peer("a", 1), peer("b", 2));
    s.ask(0.0, &a, hello("a"));
    // The long poll is held while the round cannot open.
    let poll_a = s.send(1.0, &a, ClientMsg::NextTask { after_round: 0 });
    assert!(!s.replies.contains_key(&poll_a));
    s.hold = true;
    s.send(2.0, &b, hello("b"));
    // b's Hello is held: the round cannot open yet.
    assert_eq!(s.held.len(), 1);
    s.release(2.0, Ok(()));
    // Now connected = 2: the round opens, but its write is held, so no task is out.
    assert!(matches!(s.held.as_slice(), [(_, Durable::RoundOpened(st))] if st.nonces.len() == 2));
    assert!(
        !s.replies.contains_key(&poll_a),
        "no task before its round is durable"
    );
    s.release(2.0, Ok(()));
    let ta = match s.replies.remove(&poll_a) {
        Some(ServerMsg::Task(t)) => *t,
        other => panic!("{other:?}"),
    };
    s.hold = false;
    let tb = s.task(3.0, &b, 0);

    // a's upload: held write → no acknowledgement; failed write → refused, not counted.
    s.hold = true;
    let up = s.send(4.0, &a, upload(&ta, [0.2, 0.0, 0.0]));
    assert!(
        !s.replies.contains_key(&up),
        "no ack before the update is durable"
    );
    // A resend while the first is being written is told to wait, not folded twice.
    let again = s.ask(4.0, &a, upload(&ta, [0.2, 0.0, 0.0]));
    assert_eq!(code(&again), Some(ErrorCode::Internal));
    s.release(4.0, Err("disk full".into()));
    assert_eq!(
        code(&s.replies.remove(&up).unwrap()),
        Some(ErrorCode::Internal)
    );
    assert_eq!(s.e.counters.snapshot().persist_failures, 1);
    assert_eq!(s.e.counters.snapshot().updates_accepted, 0);
    // The site sends the same bytes again: this time the write succeeds.
    let up = s.send(5.0, &a, upload(&ta, [0.2, 0.0, 0.0]));
    s.release(5.0, Ok(()));
    assert!(matches!(
        s.replies.remove(&up),
        Some(ServerMsg::UploadAccepted {
            duplicate: false,
            ..
        })
    ));
    s.hold = false;
    // A replay with another nonce is refused and counted.
    let mut forged = ta.clone();
    forged.nonce ^= 1;
    let r = s.ask(6.0, &a, upload(&forged, [0.2, 0.0, 0.0]));
    assert_eq!(code(&r), Some(ErrorCode::UnknownNonce));
    assert_eq!(s.e.counters.snapshot().updates_replayed, 1);
    // The idempotent resend of the accepted update is acknowledged as a duplicate.
    assert!(matches!(
        s.ask(6.0, &a, upload(&ta, [0.2, 0.0, 0.0])),
        ServerMsg::UploadAccepted {
            duplicate: true,
            ..
        }
    ));

    // b's upload completes the round: its commit is written, then the model is global.
    s.hold = true;
    s.send(7.0, &b, upload(&tb, [0.0, 0.4, 0.0]));
    s.release(7.0, Ok(()));
    assert!(
        matches!(s.held.as_slice(), [(_, Durable::Commit(r))] if r.accepted == 2),
        "{:?}",
        s.held
    );
    assert_eq!(
        s.e.committed(),
        0,
        "not global before the commit is durable"
    );
    s.release(7.0, Ok(()));
    assert_eq!(s.e.committed(), 1);
    assert_eq!(s.e.global().tensors[0].values, vec![1.1, 1.2, 1.0]);
    assert!(s.e.is_finished());
    assert!(matches!(
        s.ask(8.0, &a, ClientMsg::NextTask { after_round: 1 }),
        ServerMsg::Finished { last_round: 1, .. }
    ));
}

#[test]
fn the_deadline_closes_the_round_with_what_arrived_without_sleeping() {
    let mut s = Shell::new(engine(2, 2));
    let (a, b) = (peer("a", 1), peer("b", 2));
    s.ask(0.0, &a, hello("a"));
    s.ask(0.0, &b, hello("b"));
    let ta = s.task(0.0, &a, 0);
    s.task(0.0, &b, 0);
    s.ask(1.0, &a, upload(&ta, [0.2, 0.0, 0.0]));
    assert_eq!(s.e.poll_timeout(), Some(100.0), "the round's deadline");
    s.tick(99.0);
    assert_eq!(s.e.committed(), 0);
    s.tick(100.0);
    assert_eq!(s.e.committed(), 1, "closed at its deadline with a's update");
    // Round 2 opened at once (both still connected); b, silent, is selected again.
    assert!(matches!(
        s.writes.last(),
        Some(Durable::RoundOpened(st)) if st.round == 2 && st.deadline == 200.0
    ));
    // A long poll with nothing to give expires after LONG_POLL_SECS.
    let t2 = s.task(100.0, &b, 1);
    s.ask(101.0, &b, upload(&t2, [0.0, 0.1, 0.0]));
    let p = s.send(101.0, &b, ClientMsg::NextTask { after_round: 2 });
    assert!(!s.replies.contains_key(&p));
    s.tick(101.0 + LONG_POLL_SECS);
    assert!(matches!(s.replies.remove(&p), Some(ServerMsg::Wait { .. })));
    // A closed connection drops its long polls: no answer to a dead stream.
    let p = s.send(117.0, &b, ClientMsg::NextTask { after_round: 2 });
    s.e.handle_disconnect(117.0, &b);
    s.tick(200.0);
    assert!(!s.replies.contains_key(&p));
    assert_eq!(s.e.committed(), 2);
}

#[test]
fn a_short_round_is_extended_then_recorded_as_failed() {
    let mut sch = schedule(3, 2);
    sch.rules = RoundRules {
        deadline_secs: 10.0,
        min_updates: 2,
        max_extensions: 1,
    };
    let mut s = Shell::new(Engine::new(
        sch,
        weights([1.0; 3]),
        0,
        rand_chacha::ChaCha8Rng::seed_from_u64(1),
        0.0,
    ));
    let (a, b) = (peer("a", 1), peer("b", 2));
    s.ask(0.0, &a, hello("a"));
    s.ask(0.0, &b, hello("b"));
    let ta = s.task(0.0, &a, 0);
    s.ask(1.0, &a, upload(&ta, [0.2, 0.0, 0.0]));
    s.tick(10.0);
    assert!(matches!(
        s.writes.last(),
        Some(Durable::RoundExtended(st)) if st.extensions == 1 && st.deadline == 20.0
    ));
    s.tick(20.0);
    assert!(matches!(
        s.writes.last(),
        Some(Durable::Failed { round: 1, .. })
    ));
    assert_eq!(s.stops.len(), 1);
    assert!(
        s.stops[0].contains("needs 2 accepted updates but got 1"),
        "{}",
        s.stops[0]
    );
    assert_eq!(s.e.committed(), 0, "the version does not advance");
}

#[test]
fn a_restarted_engine_resumes_the_round_and_does_not_ask_acknowledged_sites_again() {
    // The first process: round 1 open, a's update accepted (and durable), then it dies.
    let mut s = Shell::new(engine(1, 2));
    let (a, b) = (peer("a", 1), peer("b", 2));
    s.ask(0.0, &a, hello("a"));
    s.ask(0.0, &b, hello("b"));
    let ta = s.task(0.0, &a, 0);
    let tb = s.task(0.0, &b, 0);
    s.ask(1.0, &a, upload(&ta, [0.2, 0.0, 0.0]));
    let state = s
        .writes
        .iter()
        .find_map(|w| match w {
            Durable::RoundOpened(st) => Some(st.clone()),
            _ => None,
        })
        .unwrap();
    let accepted: Vec<(String, Upload)> = s
        .writes
        .iter()
        .filter_map(|w| match w {
            Durable::Update { name, upload, .. } => Some((name.clone(), (**upload).clone())),
            _ => None,
        })
        .collect();
    assert_eq!(accepted.len(), 1);

    // The same run without a crash, for the expected model.
    s.ask(2.0, &b, upload(&tb, [0.0, 0.4, 0.0]));
    let want = s.e.global().clone();

    // The second process, 50 s later, from what was durable.
    let mut r = Shell::new(engine(1, 2));
    let left_out = r.e.resume(50.0, *state, &accepted, &[], 60.0);
    assert!(left_out.is_empty());
    assert_eq!(
        r.e.poll_timeout(),
        Some(110.0),
        "at least the grace from now"
    );
    let (a2, b2) = (peer("a", 11), peer("b", 12));
    r.ask(51.0, &a2, hello("a"));
    r.ask(51.0, &b2, hello("b"));
    // a already answered round 1: it gets no task; b gets its original one.
    let p = r.send(51.0, &a2, ClientMsg::NextTask { after_round: 0 });
    assert!(!r.replies.contains_key(&p), "a is not asked to train again");
    let tb2 = r.task(51.0, &b2, 0);
    assert_eq!((tb2.round, tb2.nonce), (tb.round, tb.nonce));
    // a's pending upload, resent after the restart, is a duplicate, not a second fold.
    assert!(matches!(
        r.ask(52.0, &a2, upload(&ta, [0.2, 0.0, 0.0])),
        ServerMsg::UploadAccepted {
            duplicate: true,
            ..
        }
    ));
    r.ask(53.0, &b2, upload(&tb2, [0.0, 0.4, 0.0]));
    assert_eq!(
        r.e.committed(),
        1,
        "the round commits well before its deadline"
    );
    assert_eq!(r.e.global(), &want);
    assert_eq!(r.e.global_hash(), want.hash());
}

#[test]
fn a_paused_run_finishes_its_open_round_then_opens_none_until_resumed() {
    let wait = schedule(3, 2).wait_for_clients_secs;
    let mut s = Shell::new(engine(3, 2));
    let (a, b) = (peer("a", 1), peer("b", 2));
    s.ask(0.0, &a, hello("a"));
    s.ask(0.0, &b, hello("b"));
    let (ta, tb) = (s.task(1.0, &a, 0), s.task(1.0, &b, 0));
    // Paused while round 1 is open: the round still completes with both updates.
    s.e.set_paused(2.0, true);
    s.pump(2.0);
    assert!(s.e.is_paused());
    s.ask(3.0, &a, upload(&ta, [0.2, 0.0, 0.0]));
    s.ask(3.0, &b, upload(&tb, [0.0, 0.4, 0.0]));
    assert_eq!(s.e.committed(), 1);
    // No round 2, however long the pause: no deadline, no stop for missing sites, and a
    // site asking for work is held in its long poll.
    assert_eq!(s.e.poll_timeout(), None);
    let poll = s.send(4.0, &a, ClientMsg::NextTask { after_round: 1 });
    s.tick(4.0 + 10.0 * wait);
    assert!(s.stops.is_empty(), "{:?}", s.stops);
    assert_eq!(s.e.book().open_round(), None);
    assert!(matches!(
        s.replies.remove(&poll),
        Some(ServerMsg::Wait { .. })
    ));
    assert!(!s
        .writes
        .iter()
        .any(|w| matches!(w, Durable::RoundOpened(st) if st.round == 2)));
    // Resumed: round 2 opens at once with the connected sites.
    let t = 5.0 + 10.0 * wait;
    s.e.set_paused(t, false);
    s.pump(t);
    assert_eq!(s.e.book().open_round(), Some(2));
    assert_eq!(s.task(t, &a, 1).round, 2);
}
