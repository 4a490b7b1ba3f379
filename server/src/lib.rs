//! `fedssl-server`: the aggregation server.
//!
//! - [`engine`]: the sans-IO round state machine (selection, validation, streaming FedAvg),
//!   tested without sockets.
//! - [`central_dp`]: DP-FedAvg at the server with adaptive clipping (sans-IO).
//! - [`validate`]: the checks every upload must pass.
//! - [`store`]: SQLite state and atomically written model files.
//! - [`metrics`]: counters and the per-round `metrics.jsonl`.
//! - [`endpoint`]: the thin async shell: QUIC + mTLS connections, long polls, rounds.
//! - [`evaluate`]: full evaluation of an encoder (probe, kNN, baselines, label efficiency).
//! - [`round_eval`]: the per-round evaluation on a labeled set the server holds.

pub mod central_dp;
pub mod config;
pub mod endpoint;
pub mod engine;
pub mod evaluate;
pub mod metrics;
pub mod round_eval;
pub mod store;
pub mod strategy;
pub mod validate;

pub use endpoint::{run_server, ServerOptions, ServerReport};
