//! Round robustness: silent clients, server restarts, privacy budgets.

mod common;

use std::time::Duration;

use fedssl_net::certs;
use fedssl_net::io;
use fedssl_net::tls::TlsFiles;
use fedssl_protocol::{ClientMsg, Hello, ServerMsg};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_vanishes_mid_round_does_not_block_past_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = common::make_certs(dir.path(), &["good", "ghost"]);
    let mut cfg = common::server_config(dir.path(), &certs_dir, 1, 2);
    cfg.round_deadline_secs = 8.0;
    let (addr, server) = common::start_server(cfg).await;

    // The ghost joins, takes its task, and disappears without answering.
    let (gc, gk) = certs::client_files(&certs_dir, "ghost");
    let files = TlsFiles {
        ca: certs_dir.join(certs::CA_CERT),
        cert: gc,
        key: gk,
        crl: None,
    };
    let ghost = tokio::spawn(async move {
        let (ep, conn) = common::raw_connect(addr, &files).await.unwrap();
        let hello = ClientMsg::Hello(Hello {
            protocol_version: fedssl_protocol::PROTOCOL_VERSION,
            software_version: "ghost".into(),
            capabilities: vec![],
            claimed_name: "ghost".into(),
            num_samples: Some(10),
        });
        io::request(&conn, &hello, 1 << 26, Duration::from_secs(10))
            .await
            .unwrap();
        loop {
            let (resp, _) = io::request(
                &conn,
                &ClientMsg::NextTask { after_round: 0 },
                1 << 26,
                Duration::from_secs(30),
            )
            .await
            .unwrap();
            if matches!(resp, ServerMsg::Task(_)) {
                break;
            }
        }
        conn.close(0u32.into(), b"gone");
        ep.close(0u32.into(), b"gone");
    });
    let cfg = common::client_config(dir.path(), &certs_dir, "good", addr);
    let client = tokio::spawn(fedssl_client::run_client(cfg, common::tiny_data(1), None));
    ghost.await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(120), server)
        .await
        .expect("the server must close the round at its deadline")
        .unwrap()
        .unwrap();
    assert_eq!(report.rounds_completed, 1);
    assert_eq!(report.rounds[0].clients_sampled, 2);
    assert_eq!(report.rounds[0].clients_accepted, 1);
    let c = client.await.unwrap().unwrap();
    assert_eq!(c.rounds_trained, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_server_restarts_at_the_next_round_with_the_committed_model() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = common::make_certs(dir.path(), &["a"]);
    let cfg = common::server_config(dir.path(), &certs_dir, 3, 1);
    let metrics = cfg.run_dir.join("metrics.jsonl");
    let (addr, server) = common::start_server(cfg.clone()).await;
    let ccfg = common::client_config(dir.path(), &certs_dir, "a", addr);
    let client = tokio::spawn(fedssl_client::run_client(ccfg, common::tiny_data(1), None));
    // Kill the server as soon as round 1 is committed.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&metrics)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "round 1 never committed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.abort();
    let _ = server.await;
    client.abort();
    let _ = client.await;
    let line = std::fs::read_to_string(&metrics).unwrap();
    let r1: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let r1_hash = r1["model_hash"].as_str().unwrap().to_string();

    // Restart on the same run directory: it resumes from round 1's model.
    let store = fedssl_server::store::Store::open(&cfg.run_dir).unwrap();
    let (version, w) = store.latest_model().unwrap().unwrap();
    drop(store);
    assert!(version >= 1);
    if version == 1 {
        assert_eq!(w.hash(), r1_hash);
    }
    let (addr, server) = common::start_server(cfg.clone()).await;
    let ccfg = common::client_config(dir.path(), &certs_dir, "a", addr);
    let client = tokio::spawn(fedssl_client::run_client(ccfg, common::tiny_data(1), None));
    let report = server.await.unwrap().unwrap();
    assert_eq!(report.rounds_completed, 3);
    assert_eq!(
        report.rounds.first().map(|m| m.round),
        Some(version + 1),
        "resumed at the next round"
    );
    client.await.unwrap().unwrap();
    let store = fedssl_server::store::Store::open(&cfg.run_dir).unwrap();
    assert_eq!(store.committed_rounds().unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_at_its_budget_refuses_to_train() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = common::make_certs(dir.path(), &["a"]);
    let scfg = common::server_config(dir.path(), &certs_dir, 1, 1);
    let run_dir = scfg.run_dir.clone();
    let (addr, server) = common::start_server(scfg).await;
    let mut ccfg = common::client_config(dir.path(), &certs_dir, "a", addr);
    // The plan's one round is calibrated to ε = 8 per record: above this budget.
    ccfg.epsilon_budget = 1.0;
    let state = ccfg.state_dir.clone();
    let report = fedssl_client::run_client(ccfg, common::tiny_data(1), None)
        .await
        .unwrap();
    assert_eq!(report.rounds_declined, vec![1]);
    assert!(report.rounds_trained.is_empty());
    assert_eq!(report.epsilon_site, Some(0.0));
    // A round in which every site declined is not committed as an empty round: it fails
    // with the reason, and the model version stays.
    let err = format!("{:#}", server.await.unwrap().unwrap_err());
    assert!(
        err.contains("needs 1 accepted updates but got 0") && err.contains("1 declined"),
        "{err}"
    );
    let store = fedssl_server::store::Store::open(&run_dir).unwrap();
    assert_eq!(store.committed_rounds().unwrap(), 0);
    assert_eq!(store.failures().unwrap().len(), 1);
    assert_eq!(store.latest_model().unwrap().unwrap().0, 0);
    let ledger: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("privacy-ledger.json"))
            .unwrap_or_else(|_| "{\"entries\":[]}".into()),
    )
    .unwrap();
    assert_eq!(
        ledger["entries"].as_array().map(|a| a.len()).unwrap_or(0),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_whose_data_do_not_fit_the_plan_declines_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = common::make_certs(dir.path(), &["images", "sensors"]);
    let cfg = common::server_config(dir.path(), &certs_dir, 1, 2);
    let (addr, server) = common::start_server(cfg).await;
    let good = common::client_config(dir.path(), &certs_dir, "images", addr);
    let wrong = common::client_config(dir.path(), &certs_dir, "sensors", addr);
    let series = fedssl_ml::data::sensors::generate(32, 6, 64, 1).unlabeled();
    let a = tokio::spawn(fedssl_client::run_client(good, common::tiny_data(1), None));
    let b = tokio::spawn(fedssl_client::run_client(wrong, series, None));
    let report = tokio::time::timeout(Duration::from_secs(120), server)
        .await
        .expect("the round must close")
        .unwrap()
        .unwrap();
    assert_eq!(report.rounds_completed, 1);
    assert_eq!(report.rounds[0].clients_accepted, 1);
    assert_eq!(report.rounds[0].clients_declined, 1);
    assert_eq!(a.await.unwrap().unwrap().rounds_trained, vec![1]);
    let b = b.await.unwrap().unwrap();
    assert!(b.rounds_trained.is_empty());
    assert_eq!(b.rounds_declined, vec![1]);
}

/// Central DP at the server over real QUIC: every round releases a noised, clipped sum
/// whose ε per site is the accountant's composition of the rounds; adaptive clipping moves
/// the bound from round to round; a restarted server resumes the bound and the ε from its
/// store instead of starting again at zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn central_dp_is_charged_every_round_and_survives_a_restart() {
    use fedssl_privacy::plan::{PrivacyMechanism, PrivacyPlan};
    use fedssl_server::config::{AdaptiveClipConfig, CentralDpConfig};
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = common::make_certs(dir.path(), &["a", "b"]);
    let mut cfg = common::server_config(dir.path(), &certs_dir, 2, 2);
    // The sites trust the server: no local noise (and so they must accept it: budget inf).
    cfg.plan.privacy = PrivacyPlan {
        mechanism: PrivacyMechanism::None,
        ..PrivacyPlan::default()
    };
    cfg.central_dp = Some(CentralDpConfig {
        noise_multiplier: 1.0,
        clip_norm: 0.05,
        sample_rate: 1.0,
        adaptive: Some(AdaptiveClipConfig {
            target_quantile: 0.5,
            learning_rate: 0.2,
            count_noise_multiplier: 0.5,
        }),
    });
    let run = |cfg: fedssl_server::config::ServerConfig| {
        let dir = dir.path().to_path_buf();
        let certs_dir = certs_dir.clone();
        async move {
            let (addr, server) = common::start_server(cfg).await;
            let mut clients = Vec::new();
            for (i, name) in ["a", "b"].into_iter().enumerate() {
                let mut c = common::client_config(&dir, &certs_dir, name, addr);
                c.epsilon_budget = f64::INFINITY;
                clients.push(tokio::spawn(fedssl_client::run_client(
                    c,
                    common::tiny_data(i as u64 + 1),
                    None,
                )));
            }
            let report = server.await.unwrap().unwrap();
            for c in clients {
                c.await.unwrap().unwrap();
            }
            report
        }
    };
    let first = run(cfg.clone()).await;
    assert_eq!(first.rounds_completed, 2);
    let releases: Vec<_> = first.rounds.iter().map(|r| r.central_dp.unwrap()).collect();
    for r in &releases {
        assert_eq!((r.selected, r.accepted, r.eligible), (2, 2, 2));
        assert!(r.noised_count.is_some());
    }
    assert_eq!(releases[0].clip_norm, 0.05);
    assert_eq!(releases[1].clip_norm, releases[0].next_clip_norm);
    let eps2 = first.rounds[1].central_epsilon.unwrap();
    let want = fedssl_server::central_dp::epsilon(&releases, 1e-5).unwrap();
    assert!((eps2 / want - 1.0).abs() < 1e-9, "{eps2} vs {want}");
    assert!(first.rounds[0].central_epsilon.unwrap() < eps2);
    // metrics.jsonl carries the release and ε of every round.
    let metrics = std::fs::read_to_string(cfg.run_dir.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[1]["central_epsilon"].as_f64().unwrap() > 0.0);

    // A restarted server (one more round) resumes the bound and the ε.
    cfg.rounds = 3;
    let second = run(cfg.clone()).await;
    assert_eq!(second.rounds.len(), 1);
    let r3 = second.rounds[0].central_dp.unwrap();
    assert_eq!(r3.round, 3);
    assert_eq!(r3.clip_norm, releases[1].next_clip_norm);
    let mut all = releases.clone();
    all.push(r3);
    let eps3 = second.rounds[0].central_epsilon.unwrap();
    let want = fedssl_server::central_dp::epsilon(&all, 1e-5).unwrap();
    assert!(
        (eps3 / want - 1.0).abs() < 1e-9 && eps3 > eps2,
        "{eps3} vs {want}"
    );
}

/// Client-level adaptive clipping over QUIC: each site sends its noised indicator next to
/// its noised update and charges both to its ledger; the server moves C and the next
/// round's plan carries the new bound, which the sites then clip to.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_level_adaptive_clipping_moves_the_bound_the_sites_clip_to() {
    use fedssl_privacy::plan::{
        AdaptiveClipConfig, ClientLevelParams, PrivacyMechanism, PrivacyPlan,
    };
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = common::make_certs(dir.path(), &["a", "b"]);
    let mut cfg = common::server_config(dir.path(), &certs_dir, 2, 2);
    cfg.plan.privacy = PrivacyPlan {
        mechanism: PrivacyMechanism::ClientLevel,
        client: ClientLevelParams {
            clip_norm: 0.01,
            noise_multiplier: 0.5,
            adaptive: Some(AdaptiveClipConfig {
                target_quantile: 0.5,
                learning_rate: 0.5,
                count_noise_multiplier: 0.5,
            }),
        },
        ..PrivacyPlan::default()
    };
    let (addr, server) = common::start_server(cfg.clone()).await;
    let mut clients = Vec::new();
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        let mut c = common::client_config(dir.path(), &certs_dir, name, addr);
        c.epsilon_budget = 1e9;
        clients.push((
            c.state_dir.clone(),
            tokio::spawn(fedssl_client::run_client(
                c,
                common::tiny_data(i as u64 + 1),
                None,
            )),
        ));
    }
    let report = server.await.unwrap().unwrap();
    assert_eq!(report.rounds_completed, 2);
    let c1 = report.rounds[0].client_clip_norm.expect("round 1 moved C");
    assert!(c1 != 0.01 && c1 > 0.0);
    for (state, c) in clients {
        c.await.unwrap().unwrap();
        let ledger: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(state.join("privacy-ledger.json")).unwrap(),
        )
        .unwrap();
        let entries = ledger["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        for (e, c) in entries.iter().zip([0.01, c1]) {
            let releases = e["releases"].as_array().unwrap();
            assert_eq!(releases.len(), 2, "the update and the indicator");
            assert_eq!(releases[1]["what"], "clip-count");
            // The site clipped to the bound its round's plan carried.
            let used = releases[0]["bounds"][0]["clip_norm"].as_f64().unwrap();
            assert!((used - c).abs() < 1e-12, "{used} vs {c}");
        }
    }
}
