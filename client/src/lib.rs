//! `fedssl-client`: what runs at a data owner's site.
//!
//! - [`trainer`]: local training of the plan's objective on private data (CPU or CUDA).
//! - [`dp_sgd`]: record-level DP-SGD steps: Poisson sampling, per-record clipping, exact noise.
//! - [`federation`]: merging the global model into the site's own (FedAvg, FedEMA, FedU).
//! - [`ledger`]: the site's own privacy ledger on disk, failing closed; the budget holds
//!   even if the server misbehaves, because the client refuses to train past it.
//! - [`privacy`]: a round's mechanism on this site's data, and what the ledger records.
//! - [`site`]: resend, decline or train, decided without I/O (one noising per round).
//! - [`state`]: local state that survives restarts (the site's model, BYOL's target,
//!   FedEMA's λ, the pending upload).
//! - [`session`]: the QUIC + mTLS session with the server, reconnecting with backoff.
//! - [`compute`]: the thread pool (and gate) a site's training runs on.
//! - [`data`]: loading the site's data from its configuration.

pub mod compute;
pub mod config;
pub mod data;
pub mod dp_sgd;
pub mod evaluate;
pub mod failure;
pub mod federation;
pub mod ledger;
pub mod logging;
pub mod privacy;
pub mod session;
pub mod site;
pub mod state;
pub mod trainer;

pub use compute::{Compute, Schedule};
pub use session::{run_client, run_client_on, ClientReport};
