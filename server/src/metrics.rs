//! Counters of everything refused or notable, and the per-round metrics file.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Server counters (monotonic).
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted after the TLS handshake.
    pub connections: AtomicU64,
    /// Handshakes that failed (unknown CA, missing certificate, wrong ALPN...).
    pub handshake_failures: AtomicU64,
    /// Connections refused by admission control.
    pub connections_refused: AtomicU64,
    /// Hellos whose claimed name differed from the certificate.
    pub name_mismatches: AtomicU64,
    /// Protocol version mismatches.
    pub version_mismatches: AtomicU64,
    /// Frames longer than the maximum.
    pub frames_oversized: AtomicU64,
    /// Frames cut short.
    pub frames_truncated: AtomicU64,
    /// Frames that did not decode.
    pub frames_malformed: AtomicU64,
    /// Requests before a Hello.
    pub requests_without_hello: AtomicU64,
    /// Updates accepted.
    pub updates_accepted: AtomicU64,
    /// Updates refused (any reason).
    pub updates_rejected: AtomicU64,
    /// Updates refused as stale or replayed (wrong round or nonce).
    pub updates_replayed: AtomicU64,
    /// Accepted updates the store could not make durable (refused, to be resent).
    pub persist_failures: AtomicU64,
    /// Bytes received in frames.
    pub bytes_up: AtomicU64,
    /// Bytes sent in frames.
    pub bytes_down: AtomicU64,
}

impl Counters {
    /// Adds one to a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A plain snapshot for reports.
    pub fn snapshot(&self) -> CounterSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            connections: g(&self.connections),
            handshake_failures: g(&self.handshake_failures),
            connections_refused: g(&self.connections_refused),
            name_mismatches: g(&self.name_mismatches),
            version_mismatches: g(&self.version_mismatches),
            frames_oversized: g(&self.frames_oversized),
            frames_truncated: g(&self.frames_truncated),
            frames_malformed: g(&self.frames_malformed),
            requests_without_hello: g(&self.requests_without_hello),
            updates_accepted: g(&self.updates_accepted),
            updates_rejected: g(&self.updates_rejected),
            updates_replayed: g(&self.updates_replayed),
            persist_failures: g(&self.persist_failures),
            bytes_up: g(&self.bytes_up),
            bytes_down: g(&self.bytes_down),
        }
    }
}

/// A snapshot of [`Counters`].
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct CounterSnapshot {
    pub connections: u64,
    pub handshake_failures: u64,
    pub connections_refused: u64,
    pub name_mismatches: u64,
    pub version_mismatches: u64,
    pub frames_oversized: u64,
    pub frames_truncated: u64,
    pub frames_malformed: u64,
    pub requests_without_hello: u64,
    pub updates_accepted: u64,
    pub updates_rejected: u64,
    pub updates_replayed: u64,
    /// Accepted updates the store could not make durable.
    pub persist_failures: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RoundMetrics {
    /// Round id.
    pub round: u64,
    /// Clients selected.
    pub clients_sampled: usize,
    /// Updates accepted.
    pub clients_accepted: usize,
    /// Updates rejected.
    pub clients_rejected: usize,
    /// Clients that declined (e.g. budget).
    pub clients_declined: usize,
    /// Mean local loss over accepted updates.
    pub mean_local_loss: Option<f64>,
    /// Largest ε reported by an accepted client.
    pub max_epsilon: Option<f64>,
    /// Bytes received during the round.
    pub bytes_up: u64,
    /// Bytes sent during the round.
    pub bytes_down: u64,
    /// Wall-clock seconds of the round.
    pub seconds: f64,
    /// Hash of the global model after the round.
    pub model_hash: String,
    /// Mean over accepted clients of `std · √d` of their locally trained embeddings.
    #[serde(default)]
    pub client_std_ratio: Option<f64>,
    /// Mean over accepted clients of the effective rank of those embeddings.
    #[serde(default)]
    pub client_effective_rank: Option<f64>,
    /// Sites' own evaluation of the round's starting model (federated evaluation).
    #[serde(default)]
    pub federated_eval: Option<crate::engine::FederatedEval>,
    /// The server's evaluation of the model after the round on its labeled set.
    #[serde(default)]
    pub server_eval: Option<ServerEval>,
    /// What central DP at the server released this round (`[central_dp]`).
    #[serde(default)]
    pub central_dp: Option<crate::central_dp::CentralRound>,
    /// ε per site of central DP over the rounds so far (add-or-remove one site, at the
    /// server's δ, RDP accountant); holds only if the server is honest.
    #[serde(default)]
    pub central_epsilon: Option<f64>,
    /// Client-level adaptive clipping: the bound this round's indicators moved C to (the
    /// next round's plan carries it).
    #[serde(default)]
    pub client_clip_norm: Option<f64>,
}

/// The server's per-round evaluation on a labeled set it holds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct ServerEval {
    /// Collapse monitors of the global encoder on the evaluation set (every round).
    pub collapse: fedssl_ml::eval::CollapseMetrics,
    /// Linear-probe accuracy (every `eval.every` rounds and after the last).
    pub linear_probe_accuracy: Option<f64>,
    /// Weighted-kNN accuracy (same rounds).
    pub knn_accuracy: Option<f64>,
    /// Seconds the evaluation took.
    pub seconds: f64,
}

/// Appends one JSON line to `path` and syncs it.
pub fn append_jsonl<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{}", serde_json::to_string(value)?)?;
    f.sync_data()?;
    Ok(())
}
