//! `fedssl init deployment` writes folders that work as they are: every config parses and
//! validates, every party's certificates load, and the real server started from its folder
//! welcomes a site connecting with the files of that site's folder.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use fedssl_client::config::ClientConfig;
use fedssl_net::io;
use fedssl_protocol::{ClientMsg, Hello, ServerMsg};
use fedssl_server::config::ServerConfig;

fn fedssl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fedssl"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_from_init_connects_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("deploy");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let st = fedssl()
        .args(["init", "deployment", "--sites", "hospital-a,hospital-b"])
        .args(["--server-name", "localhost", "--port", &port.to_string()])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    // The server's folder: its config is valid and its certificates load.
    let server_toml = out.join("server/server.toml");
    let mut scfg: ServerConfig = fedssl_core::read_toml(&server_toml, "server config").unwrap();
    scfg.resolve_paths(&fedssl_core::config_dir(&server_toml));
    scfg.validate().unwrap();
    assert_eq!(scfg.min_clients, 2);
    fedssl_net::tls::server_crypto(&scfg.tls).unwrap();
    assert!(out.join("ca/ca.key").exists());
    assert!(
        !out.join("server/ca.key").exists(),
        "the CA key stays in ca/"
    );

    // Each site's folder: its config is valid, its key private, its certificates load.
    let mut sites = vec![];
    for name in ["hospital-a", "hospital-b"] {
        let p = out.join("sites").join(name).join("client.toml");
        let mut c: ClientConfig = fedssl_core::read_toml(&p, "client config").unwrap();
        c.resolve_paths(&fedssl_core::config_dir(&p));
        c.validate().unwrap();
        assert_eq!(c.server_addr, format!("localhost:{port}"));
        let mode = std::fs::metadata(&c.tls.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{name}'s key is readable by others");
        fedssl_net::tls::client_crypto(&c.tls).unwrap();
        assert!(!out.join("sites").join(name).join("ca.key").exists());
        sites.push((name, c));
    }

    // init never overwrites: a second run into the same folder is refused.
    let again = fedssl()
        .args(["init", "deployment", "--sites", "x", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // The real server, started from its folder with its config as written, welcomes each
    // site by its certificate.
    let text = std::fs::read_to_string(&server_toml)
        .unwrap()
        .replace("listen = \"0.0.0.0:", "listen = \"127.0.0.1:");
    std::fs::write(&server_toml, text).unwrap();
    let mut server = fedssl()
        .args(["server", "--config", "server.toml"])
        .current_dir(out.join("server"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for (name, c) in &sites {
        let mut welcomed = false;
        for _ in 0..100 {
            if let Ok((_ep, conn)) = common::raw_connect(addr, &c.tls).await {
                let hello = ClientMsg::Hello(Hello {
                    protocol_version: fedssl_protocol::PROTOCOL_VERSION,
                    software_version: fedssl_protocol::SOFTWARE_VERSION.into(),
                    capabilities: vec![],
                    claimed_name: name.to_string(),
                    num_samples: None,
                });
                let (resp, _) = io::request(
                    &conn,
                    &hello,
                    fedssl_protocol::DEFAULT_MAX_FRAME,
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
                assert!(matches!(resp, ServerMsg::Welcome(_)), "{name}: {resp:?}");
                welcomed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(welcomed, "{name} could not reach the server");
    }
    let _ = server.kill();
    let _ = server.wait();
}
