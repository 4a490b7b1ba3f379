//! `fedssl init`: commented configuration templates, and for a whole deployment the
//! certificates too, laid out as the folders each party receives.
//!
//! `init deployment --out DIR --sites a,b` writes
//! - `DIR/ca/`: the CA (`ca.key` stays on the admin machine) and every issued certificate,
//!   where `fedssl certs add-client --dir DIR/ca` issues more;
//! - `DIR/server/`: `server.toml`, `ca.pem`, `server.pem`, `server.key`, `crl.pem` (a copy
//!   of the CA's revocation list: copy it again after each `certs revoke`);
//! - `DIR/sites/NAME/`: `client.toml`, `ca.pem`, `client-NAME.pem`, `client-NAME.key`.
//!
//! Each folder is complete: copy it to its machine and start the program there with
//! `--config` pointing at the file (paths in a config file are relative to its folder).

use std::path::{Path, PathBuf};

use anyhow::Context;
use fedssl_net::certs;

/// What a deployment's templates are filled with.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Site names (certificate common names).
    pub sites: Vec<String>,
    /// Names the server is reached by (DNS names or IPs), the first one goes into the
    /// clients' `server_name`.
    pub server_names: Vec<String>,
    /// UDP port the server listens on.
    pub port: u16,
    /// The CA's deployment name, certificate validity and key passphrase.
    pub ca: certs::CaOptions,
}

/// The server's template. `min_clients` is how many sites a round waits for.
pub fn server_toml(min_clients: usize, port: u16) -> String {
    format!(
        r#"# fedssl server configuration: `fedssl server --config server.toml`.
# Relative paths are relative to this file's folder. Full reference: docs/deploy.md.

listen = "0.0.0.0:{port}"        # UDP address for QUIC; open this port in the firewall
run_dir = "run"                  # database, every global model version, metrics.jsonl
rounds = 20                      # federated rounds
min_clients = {min_clients}                  # a round starts once this many sites are connected
sample_fraction = 1.0            # share of connected sites asked to train in each round
round_deadline_secs = 900        # a round closes with what arrived by then
# min_updates = 1                # fewer accepted updates at the deadline: extend the round
# max_round_extensions = 1       #   once, then record it as failed (the model does not advance)

[tls]                            # mutual TLS: sites are known by their certificate only
ca = "ca.pem"
cert = "server.pem"
key = "server.key"
crl = "crl.pem"                  # revoked sites (fedssl certs revoke); reloaded when it changes

[plan]                           # what every site trains, sent with each round's task
local_epochs = 1
batch_size = 128
learning_rate = 0.001
temperature = 0.2
seed = 1
objective = "simclr"             # simsiam vicreg byol masked denoising cpc clip reorder
# [plan.data.series]             # the sites' data (default: 28×28 grayscale images)
# channels = 6
# length = 64

[plan.privacy]                   # the privacy unit is the record (a patient, an image)
mechanism = "dp-sgd"             # client-level | dp-sgd+client-level | none
target_epsilon = 8.0             # ε per record over all rounds (δ set by each site)
clip_norm = 1.0                  # per record, or per group of group_size records
group_size = 16

# [plan.strategy]                # how updates merge (default: fedavg)
# name = "median"                # fedavg fedprox fedadam fedyogi fedadagrad
#                                # median trimmed_mean krum multi_krum

# [eval]                         # a labeled set the server holds: probe every version
# train_samples = 2000
# test_samples = 1000
# every = 5
"#
    )
}

/// A site's template.
pub fn client_toml(name: &str, server_addr: &str, server_name: &str) -> String {
    format!(
        r#"# fedssl client configuration for site `{name}`:
# `fedssl client --config client.toml` (or the edge binary `fedssl-client`).
# Relative paths are relative to this file's folder.

server_addr = "{server_addr}"    # HOST:PORT of the server (UDP); a name resolves at each attempt
server_name = "{server_name}"    # must be a name in the server's certificate
state_dir = "state"              # privacy ledger, pending upload, local model: back it up
device = "cpu"                   # or "cuda", "cuda:1"
epsilon_budget = 10.0            # the most ε this site ever spends (per record under DP-SGD,
                                 #   per site under client-level DP); rounds beyond are declined
delta = 1e-5                     # pinned in the ledger at first use
# local_eval_labels = 200        # labeled samples kept for federated evaluation

[tls]
ca = "ca.pem"
cert = "client-{name}.pem"
key = "client-{name}.key"

[report]                         # plain figures sent next to the update, OUTSIDE ε
# loss = true                    # each one is listed in the site's report as disclosed

[data]                           # this site's unlabeled data; omit dir for generated images
# dir = "/data/images-idx"       # IDX folder, image folder, CSV, NPY or text lines
# [data.shape.series]            # must match the server's plan.data
# channels = 6
# length = 64
"#
    )
}

fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !path.exists(),
        "{} already exists; init never overwrites a file (choose another --out)",
        path.display()
    );
    fedssl_core::atomic_write(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Copies `name` from the CA folder into `to` (keys keep their 0600 mode).
fn hand_out(ca_dir: &Path, name: &str, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(ca_dir.join(name), to.join(name))
        .with_context(|| format!("cannot copy {name} into {}", to.display()))?;
    Ok(())
}

/// Writes a whole deployment under `out` (see the module docs). Returns the folders
/// written: the CA's, the server's, then each site's.
pub fn deployment(out: &Path, d: &Deployment) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(!d.sites.is_empty(), "--sites names at least one site");
    anyhow::ensure!(
        !out.exists() || std::fs::read_dir(out).map(|mut e| e.next().is_none())?,
        "{} is not empty; init writes a new deployment into an empty or new folder",
        out.display()
    );
    let ca = out.join("ca");
    certs::init_with(&ca, &d.server_names, &d.sites, &d.ca)?;
    let server_name = d
        .server_names
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let server = out.join("server");
    std::fs::create_dir_all(&server)?;
    for f in [
        certs::CA_CERT,
        certs::SERVER_CERT,
        certs::SERVER_KEY,
        certs::CRL,
    ] {
        hand_out(&ca, f, &server)?;
    }
    write_new(
        &server.join("server.toml"),
        &server_toml(d.sites.len(), d.port),
    )?;
    let mut written = vec![ca.clone(), server];
    for name in &d.sites {
        let site = out.join("sites").join(name);
        std::fs::create_dir_all(&site)?;
        hand_out(&ca, certs::CA_CERT, &site)?;
        let (cert, key) = certs::client_files(&ca, name);
        for f in [cert, key] {
            let file = f.file_name().context("a certificate path without a name")?;
            hand_out(&ca, &file.to_string_lossy(), &site)?;
        }
        write_new(
            &site.join("client.toml"),
            &client_toml(name, &format!("{server_name}:{}", d.port), &server_name),
        )?;
        written.push(site);
    }
    Ok(written)
}

/// Writes only `server.toml` into `out` (the certificates come from `fedssl certs init`).
pub fn server(out: &Path, min_clients: usize, port: u16) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let p = out.join("server.toml");
    write_new(&p, &server_toml(min_clients, port))?;
    Ok(p)
}

/// Writes only `client.toml` for site `name` into `out`.
pub fn client(
    out: &Path,
    name: &str,
    server_addr: &str,
    server_name: &str,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let p = out.join("client.toml");
    write_new(&p, &client_toml(name, server_addr, server_name))?;
    Ok(p)
}
