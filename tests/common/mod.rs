//! Helpers shared by the integration tests: certificates, configs, tiny data.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fedssl_client::config::{ClientConfig, ClientData};
use fedssl_ml::data::{synthetic, Dataset};
use fedssl_net::certs;
use fedssl_net::tls::TlsFiles;
use fedssl_server::config::{PlanConfig, ServerConfig};

pub fn tiny_plan() -> PlanConfig {
    PlanConfig {
        local_epochs: 1,
        batch_size: 16,
        learning_rate: 1e-3,
        temperature: 0.5,
        seed: 3,
        ..PlanConfig::default()
    }
}

pub fn make_certs(dir: &Path, clients: &[&str]) -> PathBuf {
    let d = dir.join("certs");
    let names: Vec<String> = clients.iter().map(|s| s.to_string()).collect();
    certs::init(&d, &["localhost".into()], &names).unwrap();
    d
}

pub fn server_config(
    run: &Path,
    certs_dir: &Path,
    rounds: u64,
    min_clients: usize,
) -> ServerConfig {
    ServerConfig {
        rounds,
        min_clients,
        round_deadline_secs: 120.0,
        wait_for_clients_secs: 120.0,
        idle_timeout_secs: 5.0,
        max_connections: 64,
        plan: tiny_plan(),
        ..ServerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            run.join("server"),
            certs::server_tls(certs_dir),
        )
    }
}

pub fn client_config(run: &Path, certs_dir: &Path, name: &str, addr: SocketAddr) -> ClientConfig {
    ClientConfig {
        server_addr: addr.to_string(),
        server_name: "localhost".into(),
        tls: certs::client_tls(certs_dir, name),
        state_dir: run.join("clients").join(name),
        data: ClientData {
            dir: None,
            shard: None,
            partition: "iid".into(),
            seed: 1,
            shape: fedssl_ml::data::SampleShape::GRAY_28,
        },
        device: "cpu".into(),
        epsilon_budget: 1e9,
        delta: 1e-5,
        max_frame_bytes: fedssl_protocol::DEFAULT_MAX_FRAME,
        idle_timeout_secs: 5.0,
        max_reconnect_attempts: 5,
        local_eval_labels: 0,
        report: Default::default(),
        init_ledger: false,
    }
}

pub fn tiny_data(seed: u64) -> Dataset {
    synthetic::generate(32, seed).unlabeled()
}

/// Starts a server; returns its address and task.
pub async fn start_server(
    cfg: ServerConfig,
) -> (
    SocketAddr,
    tokio::task::JoinHandle<anyhow::Result<fedssl_server::ServerReport>>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let h = tokio::spawn(fedssl_server::run_server(
        cfg,
        fedssl_server::ServerOptions {
            progress: None,
            ready: Some(tx),
            final_grace: Duration::from_secs(5),
        },
    ));
    (rx.await.unwrap(), h)
}

/// A raw QUIC connection with the given client certificate files.
pub async fn raw_connect(
    addr: SocketAddr,
    files: &TlsFiles,
) -> anyhow::Result<(quinn::Endpoint, quinn::Connection)> {
    let crypto = fedssl_net::tls::client_crypto(files)?;
    let ep = fedssl_net::endpoint::client(addr, crypto, Default::default())?;
    let conn = ep.connect(addr, "localhost")?.await?;
    Ok((ep, conn))
}

/// A small `simulate` run: 3 sites on 96 generated images with the tiny plan, `rounds`
/// rounds, no final evaluation, no progress bars.
pub fn tiny_simulation(run: PathBuf, rounds: u64) -> fedssl::simulate::SimulateArgs {
    let mut a = fedssl::simulate::SimulateArgs::new(tiny_plan(), run);
    a.clients = 3;
    a.rounds = rounds;
    a.train_samples = 96;
    a.eval = None;
    a.progress = false;
    a
}

/// A Hello from site `name` (protocol version of this build).
pub fn hello(name: &str) -> fedssl_protocol::ClientMsg {
    fedssl_protocol::ClientMsg::Hello(fedssl_protocol::Hello {
        protocol_version: fedssl_protocol::PROTOCOL_VERSION,
        software_version: "test".into(),
        capabilities: vec![],
        claimed_name: name.into(),
        num_samples: Some(10),
    })
}

/// Whether site `name`, connecting with `files`, gets past the TLS handshake and is
/// welcomed (under TLS 1.3 a client may finish its side of the handshake before the server
/// refuses its certificate, so this asks for an answer).
pub async fn welcomed(addr: SocketAddr, files: &TlsFiles, name: &str) -> bool {
    let Ok((_ep, conn)) = raw_connect(addr, files).await else {
        return false;
    };
    matches!(
        fedssl_net::io::request(&conn, &hello(name), 1 << 20, Duration::from_secs(10)).await,
        Ok((fedssl_protocol::ServerMsg::Welcome(_), _))
    )
}

/// Runs the `fedssl client` binary on `cfg` (written to `dir/client.toml`) and returns its
/// exit code, stderr and how long it ran.
pub fn run_client_binary(dir: &Path, cfg: &ClientConfig) -> (i32, String, Duration) {
    let path = dir.join("client.toml");
    std::fs::write(&path, toml::to_string(cfg).unwrap()).unwrap();
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fedssl"))
        .args(["client", "--config"])
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

/// A plain HTTP/1.1 GET; returns (status line, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    Ok((
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    ))
}
