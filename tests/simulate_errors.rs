//! `simulate` surfaces a site's error at once, quoting it, instead of waiting out the
//! server's wait for clients (which used to end, 120 s later, with "only 0 of the required 4
//! clients connected").

mod common;

use std::time::{Duration, Instant};

use fedssl::simulate::{simulate, SimulateArgs};

fn args(run: std::path::PathBuf) -> SimulateArgs {
    common::tiny_simulation(run, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flag_no_site_can_run_with_ends_the_run_before_the_server_starts() {
    for (change, expect) in [
        (
            (|a: &mut SimulateArgs| a.epsilon_budget = -1.0) as fn(&mut SimulateArgs),
            "epsilon_budget must be a positive number",
        ),
        (|a: &mut SimulateArgs| a.device = "tpu".into(), "tpu"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args(dir.path().join("run"));
        change(&mut a);
        let started = Instant::now();
        let e = format!("{:#}", simulate(a).await.unwrap_err());
        assert!(started.elapsed() < Duration::from_secs(10), "{e}");
        assert!(e.contains("site-1's configuration is invalid"), "{e}");
        assert!(e.contains(expect), "{e}");
        assert!(
            !dir.path().join("run/server/fedssl.db").exists(),
            "the server must not have started"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_that_fails_while_running_ends_the_run_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // site-2's state folder cannot be made: a file stands where it would go.
    std::fs::create_dir_all(run.join("clients")).unwrap();
    std::fs::write(run.join("clients/site-2"), b"not a folder").unwrap();
    let started = Instant::now();
    let e = format!("{:#}", simulate(args(run)).await.unwrap_err());
    assert!(started.elapsed() < Duration::from_secs(30), "{e}");
    assert!(e.starts_with("site-2 failed:"), "{e}");
    assert!(e.contains("the simulation stops"), "{e}");
}
