//! `fedssl pause`, `resume` and `stop` against a real `fedssl server` process, checked in
//! the run directory's SQLite state: a pause lets the open round finish and opens no new
//! one, survives a restart, and `resume` goes on; `stop` ends the process cleanly with
//! every committed round on disk; a second server on the same run_dir is refused.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fedssl_server::status::{self, RunStatus};

fn fedssl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedssl"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn start(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fedssl"))
        .args(["server", "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Polls the run's state until `f` holds (or panics after `secs`, with the state).
async fn until(run: &Path, secs: u64, what: &str, f: impl Fn(&RunStatus) -> bool) -> RunStatus {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(s) = status::read(run) {
            if f(&s) {
                return s;
            }
            if Instant::now() > end {
                panic!("{what}: not within {secs} s; state: {s:?}");
            }
        } else if Instant::now() > end {
            panic!("{what}: no state within {secs} s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn admin(cmd: &str, run: &Path) -> String {
    let o = fedssl(&[cmd, "--run-dir", run.to_str().unwrap()]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "fedssl {cmd}: {out}");
    out
}

/// Waits for the server process to exit; returns its stdout.
fn wait_exit(mut child: Child, secs: u64) -> String {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut out = String::new();
            use std::io::Read;
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            assert!(st.success(), "the server exited with {st}: {out}");
            return out;
        }
        assert!(
            Instant::now() < end,
            "the server did not exit within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_survives_a_restart_resume_goes_on_and_stop_keeps_every_round() {
    let dir = tempfile::tempdir().unwrap();
    let cd = common::make_certs(dir.path(), &["a", "b"]);
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cfg = common::server_config(dir.path(), &cd, 50, 2);
    cfg.listen = addr;
    let run = cfg.run_dir.clone();
    let config = dir.path().join("server.toml");
    std::fs::write(&config, toml::to_string(&cfg).unwrap()).unwrap();
    let log = dir.path().join("server.log");
    let server = start(&config, &log);
    let sock = run.join(fedssl_server::admin::SOCKET);
    let end = Instant::now() + Duration::from_secs(60);
    while !sock.exists() {
        assert!(Instant::now() < end, "no admin socket");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut clients = vec![];
    for (i, n) in ["a", "b"].into_iter().enumerate() {
        let mut c = common::client_config(dir.path(), &cd, n, addr);
        c.max_reconnect_attempts = 30;
        clients.push(tokio::spawn(fedssl_client::run_client(
            c,
            common::tiny_data(i as u64),
            None,
        )));
    }
    until(&run, 120, "round 1 committed", |s| s.rounds_committed >= 1).await;

    // A second server on the same run directory is refused, naming the first.
    let o = Command::new(env!("CARGO_BIN_EXE_fedssl"))
        .args(["server", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("another fedssl server is running"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Pause: the open round (if any) finishes, then nothing opens.
    let said = admin("pause", &run);
    assert!(said.contains("paused"), "{said}");
    let s = until(&run, 120, "the open round finishes", |s| {
        s.open_round.is_none()
    })
    .await;
    assert!(s.paused_since.is_some());
    let held = s.rounds_committed;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s = status::read(&run).unwrap();
    assert_eq!(
        (s.rounds_committed, s.open_round.is_none()),
        (held, true),
        "a round ran while paused"
    );
    let text = fedssl(&["status", "--run-dir", run.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("paused     since"));

    // Stop: the process ends by itself, cleanly, and says how to continue.
    let said = admin("stop", &run);
    assert!(said.contains("stopping"), "{said}");
    let out = wait_exit(server, 15);
    assert!(out.contains("server stopped by the operator"), "{out}");
    assert!(!sock.exists(), "the admin socket outlived the server");
    let err = fedssl(&["pause", "--run-dir", run.to_str().unwrap()]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("no server answers"));
    // Every committed round's model is on disk with the recorded hash.
    let s = status::read(&run).unwrap();
    let m = s.latest_model.clone().unwrap();
    assert_eq!(m.version, held);
    let w = fedssl_core::weights::Weights::load(&m.path).unwrap();
    assert_eq!(w.hash(), m.hash);

    // Restarted: still paused (the state is in SQLite), no round opens.
    let server = start(&config, &log);
    while !sock.exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s = status::read(&run).unwrap();
    assert!(s.paused_since.is_some());
    assert_eq!((s.rounds_committed, s.open_round.is_none()), (held, true));

    // Resume: the sites (reconnected on their own) train again.
    let said = admin("resume", &run);
    assert!(said.contains("resumed"), "{said}");
    let s = until(&run, 120, "a round after resume", |s| {
        s.rounds_committed > held
    })
    .await;
    assert!(s.paused_since.is_none());
    admin("stop", &run);
    wait_exit(server, 15);
    for c in clients {
        c.abort();
    }
}
