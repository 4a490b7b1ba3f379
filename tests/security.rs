//! Identity and hostile input: foreign CAs, forged names, bad frames.

mod common;

use std::time::Duration;

use fedssl_net::certs;
use fedssl_net::io;
use fedssl_net::tls::TlsFiles;
use fedssl_protocol::{ClientMsg, ErrorCode, Hello, ServerMsg};

use common::hello;

async fn raw_exchange(conn: &quinn::Connection, bytes: &[u8]) -> Option<ServerMsg> {
    let (mut send, mut recv) = conn.open_bi().await.ok()?;
    send.write_all(bytes).await.ok()?;
    send.finish().ok()?;
    tokio::time::timeout(
        Duration::from_secs(10),
        io::read_msg::<ServerMsg>(&mut recv, 1 << 20),
    )
    .await
    .ok()?
    .ok()
    .map(|(m, _)| m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_ca_forged_names_and_bad_frames_are_refused_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = common::make_certs(dir.path(), &["a", "b"]);
    // A second deployment whose CA the server does not trust.
    let other = dir.path().join("other");
    certs::init(&other, &["localhost".into()], &["a".into()]).unwrap();
    let (addr, server) =
        common::start_server(common::server_config(dir.path(), &certs_dir, 1, 1)).await;

    // 1. Certificate from another CA (named `a`, trusting our server's CA): refused.
    let (oc, ok) = certs::client_files(&other, "a");
    let foreign = TlsFiles {
        ca: certs_dir.join(certs::CA_CERT),
        cert: oc,
        key: ok,
        crl: None,
    };
    let refused = match common::raw_connect(addr, &foreign).await {
        Err(_) => true,
        Ok((_ep, conn)) => io::request(&conn, &hello("a"), 1 << 20, Duration::from_secs(10))
            .await
            .is_err(),
    };
    assert!(
        refused,
        "a certificate from a foreign CA must not get an answer"
    );

    // 2. Valid certificate `a` claiming to be `b`: refused with NameMismatch.
    let (ac, ak) = certs::client_files(&certs_dir, "a");
    let files_a = TlsFiles {
        ca: certs_dir.join(certs::CA_CERT),
        cert: ac,
        key: ak,
        crl: None,
    };
    let (_ep, conn) = common::raw_connect(addr, &files_a).await.unwrap();
    let (resp, _) = io::request(&conn, &hello("b"), 1 << 20, Duration::from_secs(10))
        .await
        .unwrap();
    match resp {
        ServerMsg::Error(e) => assert_eq!(e.code, ErrorCode::NameMismatch),
        other => panic!("forged name accepted: {other:?}"),
    }
    // ... and cannot act at all without a successful Hello.
    let (resp, _) = io::request(
        &conn,
        &ClientMsg::FetchModel,
        1 << 20,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(
        matches!(resp, ServerMsg::Error(ref e) if e.code == ErrorCode::HelloRequired),
        "{resp:?}"
    );

    // 2b. A client of another protocol version (the right name): refused with VersionMismatch.
    let mut old = Hello {
        protocol_version: fedssl_protocol::PROTOCOL_VERSION - 1,
        ..match hello("a") {
            ClientMsg::Hello(h) => h,
            _ => unreachable!(),
        }
    };
    old.claimed_name = "a".into();
    let (resp, _) = io::request(
        &conn,
        &ClientMsg::Hello(old),
        1 << 20,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    match resp {
        ServerMsg::Error(e) => {
            assert_eq!(e.code, ErrorCode::VersionMismatch);
            assert!(e.message.contains("version"), "{}", e.message);
        }
        other => panic!("old protocol accepted: {other:?}"),
    }

    // 3. Oversized, truncated and garbage frames: refused, no panic.
    let oversized = (u32::MAX).to_le_bytes();
    match raw_exchange(&conn, &oversized).await {
        Some(ServerMsg::Error(e)) => assert_eq!(e.code, ErrorCode::Oversized),
        other => panic!("oversized frame not refused: {other:?}"),
    }
    let mut truncated = 100u32.to_le_bytes().to_vec();
    truncated.extend_from_slice(&[1, 2, 3]);
    assert!(matches!(
        raw_exchange(&conn, &truncated).await,
        Some(ServerMsg::Error(_))
    ));
    let mut garbage = 16u32.to_le_bytes().to_vec();
    garbage.extend_from_slice(&[0xff; 16]);
    match raw_exchange(&conn, &garbage).await {
        Some(ServerMsg::Error(e)) => assert_eq!(e.code, ErrorCode::Malformed),
        other => panic!("garbage not refused: {other:?}"),
    }
    conn.close(0u32.into(), b"done");

    // 4. The server still serves a real client through a whole round.
    let cfg = common::client_config(dir.path(), &certs_dir, "b", addr);
    let report = fedssl_client::run_client(cfg, common::tiny_data(2), None)
        .await
        .unwrap();
    assert_eq!(report.name, "b");
    assert_eq!(report.rounds_trained, vec![1]);
    let s = server.await.unwrap().unwrap();
    assert_eq!(s.rounds_completed, 1);
    let c = s.counters;
    assert!(c.handshake_failures >= 1, "{c:?}");
    assert_eq!(c.name_mismatches, 1);
    assert_eq!(c.version_mismatches, 1);
    assert_eq!(c.frames_oversized, 1);
    assert!(c.frames_truncated + c.frames_malformed >= 2, "{c:?}");
}
