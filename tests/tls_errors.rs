//! A client that cannot succeed stops at once, with a distinct exit code and a message that
//! names the configuration key to fix; a server that does not answer is named as such.

mod common;

use std::time::Duration;

use fedssl_client::failure::exit_code;
use fedssl_net::certs;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_ca_refused_certificate_and_silent_server_fail_fast_and_say_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = common::make_certs(dir.path(), &["a", "b"]);
    let other = dir.path().join("other");
    certs::init(&other, &["localhost".into()], &["a".into()]).unwrap();
    let (addr, _server) =
        common::start_server(common::server_config(dir.path(), &certs_dir, 1, 2)).await;

    // 1. The site holds another deployment's CA: the server's certificate is not trusted.
    let mut cfg = common::client_config(dir.path(), &certs_dir, "a", addr);
    cfg.tls.ca = other.join(certs::CA_CERT);
    let (code, err, took) = common::run_client_binary(dir.path(), &cfg);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("tls.ca") && err.contains("does not trust"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}: {err}");

    // 2. The site's certificate comes from another CA: the server refuses it.
    let mut cfg = common::client_config(dir.path(), &certs_dir, "a", addr);
    let (cert, key) = certs::client_files(&other, "a");
    cfg.tls.cert = cert;
    cfg.tls.key = key;
    cfg.state_dir = dir.path().join("clients/a2");
    let (code, err, took) = common::run_client_binary(dir.path(), &cfg);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("refused this site's certificate") && err.contains("tls.cert"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}: {err}");

    // 3. Nothing listens at the address: "no answer", exit code 4, after the few attempts
    // the config allows (in process, to check the error type as well).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let mut cfg = common::client_config(dir.path(), &certs_dir, "b", silent_addr);
    cfg.idle_timeout_secs = 1.0;
    cfg.max_reconnect_attempts = 1;
    let e = fedssl_client::run_client(cfg, common::tiny_data(1), None)
        .await
        .unwrap_err();
    let msg = format!("{e:#}");
    assert_eq!(exit_code(&e), 4, "{msg}");
    assert!(
        msg.contains(&format!("no answer from {silent_addr} (UDP")),
        "{msg}"
    );
    assert!(!msg.contains("lost"), "{msg}");
}
