//! A client configuration names the server by host name and its files relative to the
//! config file's folder; the real `fedssl client` binary, started from another working
//! directory, completes a round with it.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_name_and_relative_paths_work_from_any_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    common::make_certs(dir.path(), &["a"]);
    let (addr, server) = common::start_server(common::server_config(
        dir.path(),
        &dir.path().join("certs"),
        1,
        1,
    ))
    .await;
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    let toml = format!(
        r#"server_addr = "localhost:{port}"
server_name = "localhost"
state_dir = "state"
epsilon_budget = 1e9
idle_timeout_secs = 5.0
max_reconnect_attempts = 3
[tls]
ca = "../certs/ca.pem"
cert = "../certs/client-a.pem"
key = "../certs/client-a.key"
[data]
shard = {{ index = 0, count = 50 }}
"#,
        port = addr.port()
    );
    std::fs::write(site.join("client.toml"), toml).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fedssl"))
            .args(["client", "--config"])
            .arg(site.join("client.toml"))
            .current_dir(elsewhere.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rounds_trained"], serde_json::json!([1]), "{report}");
    // The state folder is next to the config file, not in the working directory.
    assert!(dir.path().join("site/state").is_dir());
    let r = server.await.unwrap().unwrap();
    assert_eq!(r.rounds_completed, 1);
}
