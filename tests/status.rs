//! `fedssl status` against the SQLite state of a real run: the real binary, read-only, in
//! text and JSON.

mod common;

use std::process::Command;

use fedssl::simulate::simulate;
use fedssl_ml::model::Weights;

fn status(dir: &std::path::Path, format: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fedssl"))
        .args(["status", "--format", format, "--run-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_reports_rounds_sites_and_the_latest_model_with_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let summary = simulate(common::tiny_simulation(run.clone(), 2))
        .await
        .unwrap();
    let db = run.join("server/fedssl.db");
    let before = std::fs::read(&db).unwrap();

    let out = status(&run, "json");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["rounds_committed"], 2);
    assert_eq!(s["rounds_planned"], 2);
    assert!(s["open_round"].is_null());
    let model = &s["latest_model"];
    assert_eq!(model["version"], 2);
    let path = model["path"].as_str().unwrap();
    // The hash is the committed file's, and the final model's.
    let w = Weights::load(std::path::Path::new(path)).unwrap();
    assert_eq!(model["hash"], w.hash());
    assert_eq!(w.hash(), summary.final_model.hash());
    let sites = s["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 3);
    for site in sites {
        assert_eq!(site["accepted"], 2, "{site}");
        assert_eq!(site["rejected"], 0, "{site}");
    }
    let rounds = s["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    assert!(rounds
        .iter()
        .all(|r| r["status"] == "committed" && r["accepted"] == 3));
    assert!(
        s["epsilon_meaning"]
            .as_str()
            .unwrap()
            .contains("add-or-remove one"),
        "{}",
        s["epsilon_meaning"]
    );

    let out = status(&run, "text");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("2 committed of 2"), "{text}");
    assert!(text.contains(&w.hash()), "{text}");
    assert!(text.contains("site-1"), "{text}");
    // Reading changed nothing.
    assert_eq!(std::fs::read(&db).unwrap(), before);

    // A folder that holds no run says what to pass.
    let out = status(dir.path(), "text");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no fedssl.db") && err.contains("run_dir"),
        "{err}"
    );
}
