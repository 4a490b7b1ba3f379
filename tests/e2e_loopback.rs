//! A 3-client, 2-round federated run over real QUIC + mTLS on 127.0.0.1.

mod common;

use fedssl::simulate::{simulate, SimulateArgs};
use fedssl_ml::data::Partition;
use fedssl_server::evaluate::EvalOptions;
use fedssl_server::metrics::RoundMetrics;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_clients_two_rounds_learn_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let s = simulate(SimulateArgs {
        clients: 3,
        rounds: 2,
        data: None,
        partition: Partition::Iid,
        run_dir: run.clone(),
        device: "cpu".into(),
        epsilon_budget: 1e9,
        delta: 1e-5,
        // The sites opt in to every plain figure (outside ε) so that the server's per-round
        // records can be checked.
        site_report: fedssl_client::config::ReportConfig::ALL,
        plan: common::tiny_plan(),
        train_samples: 96,
        probe_train: 100,
        probe_test: 100,
        round_deadline_secs: 120.0,
        eval_every: 1,
        site_labels: 16,
        federated_eval_every: 1,
        eval: Some(EvalOptions {
            label_fractions: vec![0.1, 1.0],
            ..EvalOptions::default()
        }),
        progress: false,
        schedule: fedssl_client::Schedule::Split,
        central_dp: None,
        metrics_listen: None,
    })
    .await
    .unwrap();
    assert_eq!(s.rounds_completed, 2);
    assert_eq!(s.rounds.len(), 2);
    for r in &s.rounds {
        assert_eq!((r.clients_sampled, r.clients_accepted), (3, 3));
        assert!(r.mean_local_loss.unwrap().is_finite());
        assert!(r.max_epsilon.unwrap() > 0.0);
        assert!(r.bytes_up > 3 * 900_000, "three ~1 MB updates went up");
    }
    // The global model changed and every client received the final one.
    let initial =
        fedssl_ml::model::Weights::load(&run.join("server/checkpoints/global-000000.safetensors"))
            .unwrap();
    assert_ne!(initial.hash(), s.final_model_hash);
    for c in &s.client_reports {
        assert_eq!(
            c.final_model_hash.as_deref(),
            Some(s.final_model_hash.as_str())
        );
        assert_eq!(c.rounds_trained, vec![1, 2]);
    }
    // Rounds persisted: SQLite, model files, metrics, summary.
    let db = rusqlite::Connection::open(run.join("server/fedssl.db")).unwrap();
    let committed: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM rounds WHERE status = 'committed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(committed, 2);
    let accepted: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM updates WHERE status = 'accepted'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(accepted, 6);
    let last =
        fedssl_ml::model::Weights::load(&run.join("server/checkpoints/global-000002.safetensors"))
            .unwrap();
    assert_eq!(last.hash(), s.final_model_hash);
    let metrics = std::fs::read_to_string(run.join("server/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2);
    // Every round: the server's own evaluation, the sites' collapse monitors and their
    // federated evaluation of the round's starting model.
    for (i, line) in metrics.lines().enumerate() {
        let m: RoundMetrics = serde_json::from_str(line).unwrap();
        let ev = m.server_eval.expect("server evaluation recorded");
        let probe = ev.linear_probe_accuracy.expect("probe every round");
        assert!((0.0..=1.0).contains(&probe));
        assert!(ev.knn_accuracy.is_some());
        assert!(ev.collapse.effective_rank >= 1.0 && ev.collapse.std_ratio > 0.0);
        assert!(m.client_std_ratio.unwrap() > 0.0);
        assert!(m.client_effective_rank.unwrap() >= 1.0);
        let f = m.federated_eval.expect("federated evaluation recorded");
        assert_eq!(
            (f.sites, f.model_version, f.test_samples),
            (3, i as u64, 3 * 8)
        );
        assert!((0.0..=1.0).contains(&f.probe_accuracy));
    }
    let eval = s.eval.as_ref().unwrap();
    assert_eq!(eval.label_efficiency.len(), 2);
    assert_eq!(eval.label_efficiency[1].labeled, 100);
    assert!(
        s.knn_accuracy.unwrap() > 0.1,
        "kNN on 10 shape classes beats chance"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    for k in [
        "rounds_completed",
        "clients",
        "linear_probe_accuracy",
        "random_init_linear_probe_accuracy",
        "knn_accuracy",
        "bytes_on_wire",
        "privacy",
        "seconds",
    ] {
        assert!(summary.get(k).is_some(), "summary.json lacks {k}");
    }
    let p = &summary["privacy"];
    for k in [
        "mechanism",
        "unit",
        "neighbour",
        "epsilon",
        "delta",
        "accountant",
        "sigma",
        "q",
        "steps",
        "clip_norm",
    ] {
        assert!(p.get(k).is_some(), "summary.json's privacy lacks {k}");
    }
    assert_eq!(p["unit"], s.privacy.unit.as_str());
    assert!(p["epsilon"].as_f64().unwrap() > 0.0);
    assert_eq!(
        p["disclosed_outside_epsilon"].as_array().unwrap().len(),
        6,
        "the report names every figure sent outside ε"
    );
    assert!(run.join("config.toml").exists());
}
