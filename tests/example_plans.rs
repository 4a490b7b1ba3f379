//! The plan files in `examples/plans/` parse, validate, and describe a model that builds.

use fedssl_ml::prelude::*;
use fedssl_server::config::PlanConfig;

#[test]
fn every_example_plan_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plans");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let plan: PlanConfig =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        plan.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        plan.model_spec()
            .initial_global(1)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seen += 1;
    }
    assert!(seen >= 3, "expected the example plans in {}", dir.display());
}

/// The server and client TOML files shown in the deployment guide (docs/deploy.md) parse into the configs the binaries
/// read, and their plan validates: the deployment guide cannot drift from the code.
#[test]
fn the_readme_config_files_parse() {
    use fedssl_client::config::ClientConfig;
    use fedssl_server::config::ServerConfig;
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy.md"),
    )
    .unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in readme.lines() {
        let t = line.trim_start();
        match (&mut current, t) {
            (None, "```toml") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap().join("\n")),
            (Some(b), _) => b.push(t),
            _ => {}
        }
    }
    let server = blocks
        .iter()
        .find(|b| b.contains("listen ="))
        .expect("a server.toml block in docs/deploy.md");
    let cfg: ServerConfig = toml::from_str(server).unwrap_or_else(|e| panic!("server.toml: {e}"));
    cfg.validate().unwrap();
    cfg.plan.validate().unwrap();
    assert!(cfg.plan.privacy.mechanism.dp_sgd());
    let client = blocks
        .iter()
        .find(|b| b.contains("server_addr ="))
        .expect("a client.toml block in docs/deploy.md");
    let cfg: ClientConfig = toml::from_str(client).unwrap_or_else(|e| panic!("client.toml: {e}"));
    cfg.validate().unwrap();
    assert_eq!(
        cfg.local_eval_labels, 200,
        "a top-level key, not one of [tls]'s"
    );
}
