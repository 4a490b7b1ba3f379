//! `docs/configuration.md` lists every key of `server.toml` and `client.toml`: the key set
//! of a configuration with every optional table and key filled in, as the config types
//! serialize it, must equal the keys in the reference's tables (nothing missing, nothing
//! stale). `FEDSSL_WRITE_CONFIG_TOML=DIR` also writes those two files (to redraft the
//! reference's tables from them).

use std::collections::BTreeSet;
use std::path::PathBuf;

use fedssl_core::spec::EncoderConfig;
use fedssl_ml::model::Norm;
use fedssl_server::config::{CentralDpConfig, MetricsConfig, ServerEvalConfig};

fn keys(v: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                keys(v, &p, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// The first column of the tables in the section of `doc` headed `heading`.
fn documented(doc: &str, heading: &str) -> BTreeSet<String> {
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("no section `## {heading}` in docs/configuration.md"));
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_configuration_reference_lists_every_key_of_both_files() {
    let cd = PathBuf::from(".");
    // The configuration files' defaults, with every optional key set.
    let mut s = fedssl_server::config::ServerConfig::new(
        "0.0.0.0:4433".parse().unwrap(),
        PathBuf::from("run"),
        fedssl_net::certs::server_tls(std::path::Path::new(".")),
    );
    s.tls.crl = Some(cd.join("crl.pem"));
    s.plan.encoder = Some(EncoderConfig::ConvnetS);
    s.plan.norm = Some(Norm::Group);
    s.plan.privacy.noise_multiplier = Some(1.1);
    s.plan.privacy.client.adaptive = Some(
        toml::from_str("target_quantile = 0.5\nlearning_rate = 0.2\ncount_noise_multiplier = 1.0")
            .unwrap(),
    );
    s.eval = Some(ServerEvalConfig {
        data: Some(PathBuf::from("/data/eval-idx")),
        ..toml::from_str("").unwrap()
    });
    s.central_dp = Some(CentralDpConfig {
        adaptive: Some(
            toml::from_str(
                "target_quantile = 0.5\nlearning_rate = 0.2\ncount_noise_multiplier = 1.0",
            )
            .unwrap(),
        ),
        ..toml::from_str("noise_multiplier = 1.0\nclip_norm = 0.1").unwrap()
    });
    s.min_updates = Some(1);
    s.metrics = Some(MetricsConfig {
        listen: "127.0.0.1:9100".parse().unwrap(),
    });
    let mut c: fedssl_client::config::ClientConfig = toml::from_str(
        "server_addr = \"fl.example.org:4433\"\nserver_name = \"fl.example.org\"\n\
         state_dir = \"state\"\nepsilon_budget = 10.0\n[tls]\nca = \"ca.pem\"\ncert = \"client-a.pem\"\n\
         key = \"client-a.key\"\n[data]\n",
    )
    .unwrap();
    c.tls.crl = Some(cd.join("crl.pem"));
    c.data.dir = Some(PathBuf::from("/data/images-idx"));
    c.data.shard = Some(fedssl_client::config::Shard { index: 0, count: 2 });

    let server_toml = toml::to_string(&s).unwrap();
    let client_toml = toml::to_string(&c).unwrap();
    if let Ok(out) = std::env::var("FEDSSL_WRITE_CONFIG_TOML") {
        std::fs::write(PathBuf::from(&out).join("server.toml"), &server_toml).unwrap();
        std::fs::write(PathBuf::from(&out).join("client.toml"), &client_toml).unwrap();
    }
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    for (heading, text) in [("Server", &server_toml), ("Client", &client_toml)] {
        let mut want = BTreeSet::new();
        keys(&toml::from_str(text).unwrap(), "", &mut want);
        let have = documented(&doc, heading);
        let missing: Vec<_> = want.difference(&have).collect();
        let stale: Vec<_> = have.difference(&want).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "{heading}: keys missing from docs/configuration.md: {missing:?}; documented \
             keys the types no longer have: {stale:?}"
        );
    }
}
