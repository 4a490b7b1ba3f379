//! Crash tests with real processes: the built `fedssl` binary runs the server and every
//! client on loopback, and the test kills them with SIGKILL (`kill -9`) at the moments
//! that matter. What was acknowledged must survive; nothing may be spent twice.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fedssl_client::config::{ClientConfig, Shard};
use fedssl_privacy::plan::{ClientLevelParams, PrivacyMechanism, PrivacyPlan};
use fedssl_server::config::ServerConfig;

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
struct Proc {
    child: Child,
    what: String,
}

impl Proc {
    fn spawn(args: &[&str], log: &Path, what: &str) -> Self {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_fedssl"))
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        Self {
            child,
            what: what.into(),
        }
    }

    /// `kill -9`.
    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the process to exit by itself; true if it exited with status 0.
    fn wait_ok(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.success();
            }
            assert!(Instant::now() < end, "{} did not finish in time", self.what);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A 2-round server config on a fixed free loopback port (a restarted process must come
/// back on the same address), and that address.
fn fixed_port_server(
    dir: &Path,
    certs_dir: &Path,
    min_clients: usize,
    deadline: f64,
) -> (ServerConfig, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cfg = common::server_config(dir, certs_dir, 2, min_clients);
    cfg.listen = addr;
    cfg.round_deadline_secs = deadline;
    (cfg, addr)
}

fn write_toml<T: serde::Serialize>(path: &Path, v: &T) -> PathBuf {
    std::fs::write(path, toml::to_string(v).unwrap()).unwrap();
    path.to_path_buf()
}

/// A query on the server's database, retried while the server holds a write lock.
fn query<T>(db: &Path, f: impl Fn(&rusqlite::Connection) -> rusqlite::Result<T>) -> Option<T> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ok()?;
    f(&c).ok()
}

fn accepted_in(db: &Path, round: u64) -> Vec<String> {
    query(db, |c| {
        let mut st =
            c.prepare("SELECT client FROM accepted_updates WHERE round = ?1 ORDER BY id")?;
        let rows = st
            .query_map([round as i64], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    })
    .unwrap_or_default()
}

fn ledger_rounds(state: &Path) -> Vec<u64> {
    let Ok(text) = std::fs::read_to_string(state.join("privacy-ledger.json")) else {
        return vec![];
    };
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => return vec![],
    };
    v["entries"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["round"].as_u64()).collect())
        .unwrap_or_default()
}

fn committed_lines(metrics: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(metrics)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Five client processes, two rounds under client-level DP. In round 2: one client is
/// killed while it trains, the server is killed once at least two updates are accepted,
/// and another client is killed right after its ledger recorded the spend (its upload in
/// flight or not yet sent). Everyone restarts. The round commits with every site well
/// before its deadline, each site's ledger holds one entry per round, the server accepted
/// one update per site and round, and the committed model is exactly the previous one plus
/// the mean of the stored updates, folded in the order the server acknowledged them.
#[test]
fn kill_9_of_the_server_and_of_clients_loses_no_acknowledged_update() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["s0", "s1", "s2", "s3", "s4"];
    let certs_dir = common::make_certs(dir.path(), &names);
    let deadline = 240.0;
    let (mut scfg, addr) = fixed_port_server(dir.path(), &certs_dir, 5, deadline);
    scfg.plan.privacy = PrivacyPlan {
        mechanism: PrivacyMechanism::ClientLevel,
        client: ClientLevelParams {
            clip_norm: 1.0,
            noise_multiplier: 0.3,
            adaptive: None,
        },
        ..PrivacyPlan::default()
    };
    let server_toml = write_toml(&dir.path().join("server.toml"), &scfg);
    let db = scfg.run_dir.join("fedssl.db");
    let metrics = scfg.run_dir.join("metrics.jsonl");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    // Two small sites finish first; three larger ones are still training when the server
    // dies.
    let mut client_tomls = vec![];
    let mut states = vec![];
    for (i, n) in names.iter().enumerate() {
        let mut c: ClientConfig = common::client_config(dir.path(), &certs_dir, n, addr);
        c.data.shard = Some(Shard {
            index: i,
            count: if i < 2 { 40 } else { 8 },
        });
        c.max_reconnect_attempts = 0; // retry for as long as it takes
        states.push(c.state_dir.clone());
        client_tomls.push(write_toml(&dir.path().join(format!("{n}.toml")), &c));
    }
    let start_server = |tag: &str| {
        Proc::spawn(
            &["server", "--config", server_toml.to_str().unwrap()],
            &logs.join(format!("server-{tag}.log")),
            "the server",
        )
    };
    let start_client = |i: usize, tag: &str| {
        Proc::spawn(
            &["client", "--config", client_tomls[i].to_str().unwrap()],
            &logs.join(format!("{}-{tag}.log", names[i])),
            names[i],
        )
    };
    let show_logs = || {
        if !std::thread::panicking() {
            return;
        }
        for e in std::fs::read_dir(&logs).unwrap() {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- {} (last lines)", p.display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    };
    let _guard = scopeguard(show_logs);

    let mut server = start_server("first");
    let mut clients: Vec<Proc> = (0..names.len()).map(|i| start_client(i, "first")).collect();

    wait_for("round 1 to commit", Duration::from_secs(300), || {
        !committed_lines(&metrics).is_empty()
    });
    // s4 dies while it trains round 2 (its ledger has no round-2 entry yet) and restarts.
    clients[4].kill9();
    let s4_spent_before_kill = ledger_rounds(&states[4]).contains(&2);
    clients[4] = start_client(4, "after-kill");

    // The server dies once at least two round-2 updates are acknowledged.
    wait_for(
        "two accepted round-2 updates",
        Duration::from_secs(300),
        || accepted_in(&db, 2).len() >= 2,
    );
    server.kill9();
    let before_crash = accepted_in(&db, 2);
    assert!(
        committed_lines(&metrics).len() == 1,
        "round 2 was not committed before the crash"
    );
    let restarted = Instant::now();
    let mut server = start_server("restarted");

    // s3 dies right after its ledger recorded the round-2 spend, before or while its
    // upload goes out, unless it was already acknowledged before the crash.
    if !before_crash.iter().any(|n| n == "s3") {
        wait_for("s3 to spend for round 2", Duration::from_secs(300), || {
            ledger_rounds(&states[3]).contains(&2)
        });
        clients[3].kill9();
        clients[3] = start_client(3, "after-kill");
    }

    assert!(
        server.wait_ok(Duration::from_secs(300)),
        "the restarted server failed"
    );
    let commit_after = restarted.elapsed().as_secs_f64();
    for c in &mut clients {
        let what = c.what.clone();
        assert!(c.wait_ok(Duration::from_secs(60)), "{what} failed");
    }

    // The round committed with every site, well before its deadline.
    let lines = committed_lines(&metrics);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["round"], 2);
    assert_eq!(lines[1]["clients_accepted"], 5, "{}", lines[1]);
    assert!(
        commit_after < deadline / 2.0,
        "round 2 took {commit_after:.0} s after the restart (deadline {deadline} s)"
    );
    eprintln!(
        "crash test: {} updates acknowledged before the kill ({before_crash:?}); round 2 \
         committed {commit_after:.1} s after the restart; s4 had spent before its kill: \
         {s4_spent_before_kill}",
        before_crash.len()
    );

    // One ledger entry per site and round; one accepted update per site and round.
    for (n, st) in names.iter().zip(&states) {
        let mut rounds = ledger_rounds(st);
        rounds.sort();
        assert_eq!(rounds, vec![1, 2], "{n}'s ledger");
    }
    let store = fedssl_server::store::Store::open(&scfg.run_dir).unwrap();
    let rows = store.updates().unwrap();
    for n in names {
        for r in [1, 2] {
            let k = rows
                .iter()
                .filter(|u| u.0 == r && u.1 == n && u.2 == "accepted")
                .count();
            assert_eq!(k, 1, "{n}, round {r}: {rows:?}");
        }
    }
    // The sites acknowledged before the crash were folded from the store, not resent.
    let kept = store.accepted_uploads(2).unwrap();
    let order: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&order[..before_crash.len()], &before_crash[..]);

    // The accumulator check: v2 = v1 + mean of the stored updates, in their order.
    let v1 = fedssl_ml::model::Weights::load(
        &scfg.run_dir.join("checkpoints/global-000001.safetensors"),
    )
    .unwrap();
    let (v, v2) = store.latest_model().unwrap().unwrap();
    assert_eq!(v, 2);
    let mut acc = fedssl_server::strategy::mean::FedAvg::new(v1.spec());
    for (_, u) in &kept {
        let w = u.update.decode(&v1.spec()).unwrap();
        acc.fold(&w, 1.0).unwrap();
    }
    let want = v1.add(&acc.mean().unwrap()).unwrap();
    assert_eq!(
        want.hash(),
        v2.hash(),
        "the committed model is not v1 + mean(updates)"
    );
}

/// Runs `f` when dropped (the logs are printed when an assertion failed).
fn scopeguard<F: FnMut()>(f: F) -> impl Drop {
    struct G<F: FnMut()>(F);
    impl<F: FnMut()> Drop for G<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    G(f)
}

/// Chaos: 3 of 10 client processes (30 %) are killed right after round 1 opens. The
/// round closes at its deadline with the other 7, the next round runs with the survivors,
/// and the run completes.
#[test]
fn a_round_closes_at_its_deadline_when_30_percent_of_the_clients_die() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let certs_dir = common::make_certs(dir.path(), &refs);
    let deadline = 20.0;
    // Rounds start once 7 sites are connected (round 1 may select 7 to 10 of them).
    let (mut scfg, addr) = fixed_port_server(dir.path(), &certs_dir, 7, deadline);
    scfg.plan.privacy = PrivacyPlan {
        mechanism: PrivacyMechanism::None,
        ..PrivacyPlan::default()
    };
    let server_toml = write_toml(&dir.path().join("server.toml"), &scfg);
    let db = scfg.run_dir.join("fedssl.db");
    let metrics = scfg.run_dir.join("metrics.jsonl");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let show_logs = || {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(logs.join("server.log")).unwrap_or_default();
            eprintln!("--- server log\n{text}");
        }
    };
    let _guard = scopeguard(show_logs);
    let mut server = Proc::spawn(
        &["server", "--config", server_toml.to_str().unwrap()],
        &logs.join("server.log"),
        "the server",
    );
    let mut clients = vec![];
    for (i, n) in names.iter().enumerate() {
        let mut c: ClientConfig = common::client_config(dir.path(), &certs_dir, n, addr);
        c.data.shard = Some(Shard {
            index: i,
            count: 40,
        });
        c.epsilon_budget = f64::INFINITY;
        let toml = write_toml(&dir.path().join(format!("{n}.toml")), &c);
        clients.push(Proc::spawn(
            &["client", "--config", toml.to_str().unwrap()],
            &logs.join(format!("{n}.log")),
            n,
        ));
    }
    let mut selected: Vec<String> = vec![];
    wait_for("round 1 to open", Duration::from_secs(120), || {
        selected = query(&db, |c| {
            c.query_row("SELECT state FROM round_state WHERE round = 1", [], |r| {
                r.get::<_, String>(0)
            })
        })
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["nonces"].as_object().map(|o| o.keys().cloned().collect()))
        .unwrap_or_default();
        !selected.is_empty()
    });
    // Kill 3 of the selected sites.
    let victims: Vec<usize> = selected
        .iter()
        .take(3)
        .map(|n| names.iter().position(|m| m == n).unwrap())
        .collect();
    for &v in &victims {
        clients[v].kill9();
    }
    let killed_at = Instant::now();
    assert!(
        server.wait_ok(Duration::from_secs(300)),
        "the server failed (logs in {})",
        logs.display()
    );
    let total = killed_at.elapsed().as_secs_f64();
    for (i, c) in clients.iter_mut().enumerate() {
        if !victims.contains(&i) {
            let what = c.what.clone();
            assert!(c.wait_ok(Duration::from_secs(60)), "{what} failed");
        }
    }
    let lines = committed_lines(&metrics);
    assert_eq!(lines.len(), 2);
    let k = selected.len();
    assert_eq!(lines[0]["clients_sampled"], k);
    assert_eq!(lines[0]["clients_accepted"], k - 3);
    let r1 = lines[0]["seconds"].as_f64().unwrap();
    assert!(
        r1 >= deadline - 0.5 && r1 < deadline + 15.0,
        "round 1 closed at its deadline: {r1:.1} s"
    );
    assert_eq!(
        lines[1]["clients_sampled"], 7,
        "round 2 runs with the survivors"
    );
    assert_eq!(lines[1]["clients_accepted"], 7);
    eprintln!("chaos test: round 1 closed after {r1:.1} s (deadline {deadline} s) with {} of {k} selected; the run ended {total:.1} s after the kills", k - 3);
}
