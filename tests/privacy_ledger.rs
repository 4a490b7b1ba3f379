//! One noising per round, ever, against a scripted (misbehaving) server over real QUIC and
//! mutual TLS on 127.0.0.1: after refusing the site's update for round 1 the server asks for
//! round 1 again under a new nonce (the site must send the very same bytes), then once more
//! from another base model (the site must refuse). The ledger holds one spend.

use fedssl_ml::prelude::*;
mod common;

use std::time::Duration;

use fedssl_net::tls::TlsFiles;
use fedssl_net::{certs, endpoint, io, tls};
use fedssl_privacy::plan::{PrivacyMechanism, PrivacyPlan};
use fedssl_protocol::{ClientMsg, ErrorCode, ModelPayload, ServerMsg, Task, Upload, Welcome};
use fedssl_server::config::PlanConfig;

/// What the scripted server saw.
#[derive(Debug, Default)]
struct Seen {
    uploads: Vec<Upload>,
    declines: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_round_asked_again_gets_the_same_bytes_or_a_refusal_never_fresh_noise() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = common::make_certs(dir.path(), &["a"]);
    let plan = PlanConfig {
        objective: fedssl_ml::ssl::ObjectiveKind::Masked,
        batch_size: 16,
        privacy: PrivacyPlan {
            mechanism: PrivacyMechanism::DpSgd,
            ..PrivacyPlan::default()
        },
        ..PlanConfig::default()
    };
    plan.validate().unwrap();
    let round_plan = plan.plan(1);
    let m0 = round_plan.model.initial_global(1).unwrap();
    let mut m1 = m0.clone();
    m1.tensors[0].values[0] += 1.0;
    let (p0, p1) = (
        ModelPayload::from_weights(&m0),
        ModelPayload::from_weights(&m1),
    );
    let task = |nonce: u64, model: &ModelPayload| {
        ServerMsg::Task(Box::new(Task {
            round: 1,
            nonce,
            plan: round_plan.clone(),
            model: model.clone(),
        }))
    };
    // The script: one answer per NextTask, in order.
    let mut script = vec![
        task(111, &p0),
        task(222, &p0),
        task(333, &p1),
        ServerMsg::Finished {
            last_round: 1,
            model_hash: p0.hash.clone(),
        },
    ]
    .into_iter();

    let server_files = TlsFiles {
        ca: certs_dir.join(certs::CA_CERT),
        cert: certs_dir.join(certs::SERVER_CERT),
        key: certs_dir.join(certs::SERVER_KEY),
        crl: None,
    };
    let ep = endpoint::server(
        "127.0.0.1:0".parse().unwrap(),
        tls::server_crypto(&server_files).unwrap(),
        Default::default(),
    )
    .unwrap();
    let addr = ep.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut seen = Seen::default();
        let conn = ep.accept().await.unwrap().await.unwrap();
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let (msg, _) = io::read_msg::<ClientMsg>(&mut recv, 64 << 20)
                .await
                .unwrap();
            let reply = match msg {
                ClientMsg::Hello(_) => ServerMsg::Welcome(Welcome {
                    protocol_version: fedssl_protocol::PROTOCOL_VERSION,
                    software_version: "scripted".into(),
                    client_name: "a".into(),
                    committed_round: 0,
                    total_rounds: 1,
                }),
                ClientMsg::NextTask { .. } => script.next().unwrap(),
                ClientMsg::Upload(u) => {
                    seen.uploads.push(*u);
                    // Refused every time: a server fishing for fresh noise.
                    ServerMsg::error(ErrorCode::UnknownNonce, "scripted refusal")
                }
                ClientMsg::Decline { reason, round, .. } => {
                    seen.declines.push(reason);
                    ServerMsg::DeclineNoted { round }
                }
                ClientMsg::FetchModel => ServerMsg::Model {
                    version: 1,
                    model: p0.clone(),
                },
            };
            io::write_msg(&mut send, &reply, 64 << 20).await.unwrap();
            let _ = send.finish();
            if matches!(reply, ServerMsg::Model { .. }) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen
    });

    let cfg = common::client_config(dir.path(), &certs_dir, "a", addr);
    let state = cfg.state_dir.clone();
    let report = tokio::time::timeout(
        Duration::from_secs(300),
        fedssl_client::run_client(cfg, common::tiny_data(1), None),
    )
    .await
    .expect("the client finishes")
    .unwrap();
    let seen = server.await.unwrap();

    // Asked twice for round 1 from the same base model: the same bytes, new nonces.
    assert_eq!(seen.uploads.len(), 2, "{seen:?}");
    let (a, b) = (&seen.uploads[0], &seen.uploads[1]);
    assert_eq!((a.nonce, b.nonce), (111, 222));
    assert_eq!(
        a.update, b.update,
        "a second request for the round got fresh noise"
    );
    // Under DP-SGD nothing but the update left the site.
    assert!(a.report.disclosed().is_empty(), "{:?}", a.report);
    // Asked for round 1 from another base model: refused.
    assert_eq!(seen.declines.len(), 1, "{seen:?}");
    assert!(
        seen.declines[0].contains("already privatized"),
        "{}",
        seen.declines[0]
    );
    // One spend in the ledger, per record.
    let ledger: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("privacy-ledger.json")).unwrap())
            .unwrap();
    let entries = ledger["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let bound = &entries[0]["releases"][0]["bounds"][0];
    assert_eq!(bound["mechanism"], "dp-sgd");
    assert_eq!(bound["unit"], "record");
    assert_eq!(bound["neighbour"], "add-or-remove-one");
    assert!(report.epsilon_record.unwrap() > 0.0);
    assert_eq!(report.rounds_declined, vec![1]);
}
