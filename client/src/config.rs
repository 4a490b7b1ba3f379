//! The client's configuration file (`fedssl client --config client.toml`), validated with
//! errors that name the field.

use std::path::PathBuf;

use anyhow::bail;
use fedssl_core::spec::SampleShape;
use fedssl_net::tls::TlsFiles;
use serde::{Deserialize, Serialize};

fn d_frame() -> usize {
    fedssl_protocol::DEFAULT_MAX_FRAME
}

fn d_idle() -> f64 {
    30.0
}

fn d_delta() -> f64 {
    1e-5
}

/// Where a client's training data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientData {
    /// MNIST-style IDX folder (images) or a CSV file / folder (records, time series, see
    /// `data::load_splits`); absent = the generated set of `shape`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Use shard `index` of `count` of the training split (for demos that share one
    /// dataset); absent = all of it.
    #[serde(default)]
    pub shard: Option<Shard>,
    /// How the shards are drawn: `iid` or `dirichlet:ALPHA`.
    #[serde(default = "d_partition")]
    pub partition: String,
    /// Seed of the dataset generator and the partition.
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// The samples' shape (`[data.shape.series] channels = 6, length = 64`; must
    /// match the server's `plan.data`); the generated set of that modality is used when
    /// `dir` is absent.
    #[serde(default = "d_shape")]
    pub shape: SampleShape,
}

fn d_shape() -> SampleShape {
    SampleShape::GRAY_28
}

fn d_partition() -> String {
    "iid".into()
}
fn d_seed() -> u64 {
    1
}

/// One shard out of many.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// 0-based shard index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

/// A client's configuration (`fedssl client --config client.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The server's UDP address, `host:port`: a name (resolved at every connection
    /// attempt) or an IP address.
    pub server_addr: String,
    /// Name in the server's certificate (e.g. its DNS name).
    pub server_name: String,
    /// CA, client certificate and key.
    pub tls: TlsFiles,
    /// Folder for the privacy ledger and local state.
    pub state_dir: PathBuf,
    /// Training data.
    pub data: ClientData,
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "d_device")]
    pub device: String,
    /// Largest total ε this data owner accepts, per the unit of the plan's mechanism (a
    /// record under DP-SGD, the site under client-level DP). `inf` accepts training
    /// without DP (`[plan.privacy] mechanism = "none"`), which any finite budget refuses.
    pub epsilon_budget: f64,
    /// δ at which ε is computed; pinned in the ledger at its creation.
    #[serde(default = "d_delta")]
    pub delta: f64,
    /// Largest accepted frame in bytes.
    #[serde(default = "d_frame")]
    pub max_frame_bytes: usize,
    /// Seconds of silence after which the connection is dead.
    #[serde(default = "d_idle")]
    pub idle_timeout_secs: f64,
    /// Give up after this many failed connection attempts in a row (0 = never).
    #[serde(default = "d_attempts")]
    pub max_reconnect_attempts: u32,
    /// Keep the labels of this many local samples for federated evaluation (half fit the
    /// probe, half test it; only the accuracies leave the site, and only with
    /// `report.site_eval`). 0 = take no part.
    #[serde(default)]
    pub local_eval_labels: usize,
    /// Figures this site discloses next to its update, in plain numbers outside any ε.
    #[serde(default)]
    pub report: ReportConfig,
    /// Start a new privacy ledger even though the state folder holds site state
    /// (`fedssl client --init-ledger`; never from a file).
    #[serde(skip)]
    pub init_ledger: bool,
}

/// `[report]` in client.toml: which figures computed on the site's private data may leave
/// it in plain numbers next to the update. They are outside every ε the ledger reports,
/// and the site's report lists them as such. Under `mechanism = "none"` all are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// The number of local training samples (also sent in the handshake).
    pub sample_count: bool,
    /// The mean local loss.
    pub loss: bool,
    /// The site's ε after the round.
    pub epsilon: bool,
    /// Local training seconds.
    pub train_seconds: bool,
    /// Collapse monitors of the locally trained encoder.
    pub collapse: bool,
    /// Federated evaluation: probe and kNN accuracy on `local_eval_labels`.
    pub site_eval: bool,
}

impl ReportConfig {
    /// Every figure.
    pub const ALL: Self = Self {
        sample_count: true,
        loss: true,
        epsilon: true,
        train_seconds: true,
        collapse: true,
        site_eval: true,
    };

    /// Parses a comma-separated list (`loss,collapse`, `all`, `none`).
    pub fn parse_list(s: &str) -> anyhow::Result<Self> {
        let mut r = Self::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item {
                "all" => r = Self::ALL,
                "none" => r = Self::default(),
                "sample_count" => r.sample_count = true,
                "loss" => r.loss = true,
                "epsilon" => r.epsilon = true,
                "train_seconds" => r.train_seconds = true,
                "collapse" => r.collapse = true,
                "site_eval" => r.site_eval = true,
                other => bail!("unknown report figure {other:?} (expected sample_count, loss, epsilon, train_seconds, collapse, site_eval, all or none)"),
            }
        }
        Ok(r)
    }
}

fn d_device() -> String {
    "cpu".into()
}
fn d_attempts() -> u32 {
    20
}

impl ClientConfig {
    /// Makes the relative paths (TLS files, state folder, data folder) relative to `base`,
    /// the config file's folder.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        use fedssl_core::resolve_path;
        resolve_path(base, &mut self.tls.ca);
        resolve_path(base, &mut self.tls.cert);
        resolve_path(base, &mut self.tls.key);
        if let Some(c) = &mut self.tls.crl {
            resolve_path(base, c);
        }
        resolve_path(base, &mut self.state_dir);
        if let Some(d) = &mut self.data.dir {
            resolve_path(base, d);
        }
    }

    /// Checks ranges, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        match self.server_addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => bail!(
                "server_addr must be HOST:PORT (a name or an IP address and the server's UDP port), got {:?}",
                self.server_addr
            ),
        }
        if self.epsilon_budget.is_nan() || self.epsilon_budget <= 0.0 {
            bail!(
                "epsilon_budget must be a positive number (or inf to accept training without DP), got {}",
                self.epsilon_budget
            );
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            bail!("delta must be in (0, 1), got {}", self.delta);
        }
        if let Some(s) = self.data.shard {
            if s.count == 0 || s.index >= s.count {
                bail!(
                    "data.shard.index must be below data.shard.count ({} of {})",
                    s.index,
                    s.count
                );
            }
        }
        self.data.partition.parse::<fedssl_ml::data::Partition>()?;
        self.device.parse::<fedssl_core::device::ComputeDevice>()?;
        if self.max_frame_bytes < 1024 {
            bail!("max_frame_bytes must be at least 1024");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_config_may_keep_labels_for_federated_evaluation() {
        let text = r#"
server_addr = "10.0.0.5:4433"
server_name = "fl.example.org"
state_dir = "/var/lib/fedssl/client"
epsilon_budget = 10.0
local_eval_labels = 200
[tls]
ca = "certs/ca.pem"
cert = "certs/client-a.pem"
key = "certs/client-a.key"
[data]
partition = "dirichlet:0.5"
"#;
        let cfg: ClientConfig = toml::from_str(text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.local_eval_labels, 200);
        assert_eq!(cfg.device, "cpu");
        let bad = text.replace("dirichlet:0.5", "dirichlet:-1");
        assert!(toml::from_str::<ClientConfig>(&bad)
            .unwrap()
            .validate()
            .is_err());
    }
}
