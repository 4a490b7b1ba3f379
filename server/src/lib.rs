//! `fedssl-server`: the aggregation server.
//!
//! - [`engine`]: the sans-IO server in quinn-proto's shape: `handle(now, req, peer, msg)`,
//!   `handle_timeout`, `poll_timeout`, `poll_effect` (persist, reply, stop) and `persisted`;
//!   it owns the handshake, sampling, plans, long polls, deadlines and the order of
//!   durability, tested without sockets or sleeping.
//! - [`strategy`]: the aggregation rules, one file each behind one trait.
//! - [`central_dp`]: DP-FedAvg at the server with adaptive clipping (sans-IO).
//! - [`validate`]: the checks every upload must pass.
//! - [`store`]: SQLite state and atomically written model files.
//! - [`metrics`]: counters and the per-round `metrics.jsonl`.
//! - [`endpoint`]: the thin async shell: one driver task executes the engine's effects;
//!   connection tasks (QUIC + mTLS) forward requests to it.
//! - [`revocation`]: the revocation list's reload and the closing of revoked sites.
//! - [`admin`]: the run directory's admin socket (`fedssl pause`, `resume`, `stop`).
//! - [`dashboard`]: the operator's HTML page and SVG plots (live, and written at the end).
//! - [`evaluate`]: full evaluation of an encoder (probe, kNN, baselines, label efficiency).
//! - [`round_eval`]: the per-round evaluation on a labeled set the server holds.

pub mod admin;
pub mod central_dp;
pub mod config;
pub mod dashboard;
pub mod endpoint;
pub mod engine;
pub mod evaluate;
pub mod metrics;
pub mod revocation;
pub mod round_eval;
pub mod status;
pub mod store;
pub mod strategy;
pub mod telemetry;
pub mod validate;

pub use endpoint::{run_server, ServerOptions, ServerReport};
