//! Log output of the real `fedssl` binary when stderr is a pipe (a log collector, `2> file`,
//! systemd): no terminal escape codes in text, one JSON object per line with
//! `--log-format json`.

use std::process::Command;

/// Runs `fedssl simulate` with a flag no site accepts: it loads its data (an INFO line),
/// then stops at once with the site's error.
fn run(extra: &[&str]) -> (String, std::process::ExitStatus) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fedssl"))
        .args(extra)
        .args([
            "simulate",
            "--clients",
            "2",
            "--rounds",
            "1",
            "--epsilon-budget=-1",
        ])
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (String::from_utf8(out.stderr).unwrap(), out.status)
}

#[test]
fn text_logs_to_a_pipe_carry_no_escape_codes() {
    let (err, status) = run(&[]);
    assert!(!status.success());
    assert!(err.contains("INFO") && err.contains("data ready"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "escape codes in piped logs: {err:?}"
    );
    assert!(
        err.contains("epsilon_budget must be a positive number"),
        "{err}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let (err, status) = run(&["--log-format", "json"]);
    assert!(!status.success());
    let events: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let ready = events
        .iter()
        .find(|e| e["message"] == "data ready")
        .unwrap_or_else(|| panic!("no 'data ready' event in {err}"));
    assert_eq!(ready["level"], "INFO");
    assert_eq!(ready["clients"], 2);
    assert!(ready["timestamp"].is_string() && ready["target"].is_string());
    assert!(!err.contains('\u{1b}'));
    // The final error is the program's own message, not a log event.
    assert!(
        err.contains("epsilon_budget must be a positive number"),
        "{err}"
    );
}
