//! `fedssl bench`: measured speed and quality, printed as tables and written as JSON / CSV.
//! None of these is a test: they measure, they do not assert.
//!
//! - [`train`]: local SimCLR step throughput against PyTorch on the same machine.
//! - [`aggregate`]: streaming FedAvg throughput against memcpy, and memory as K grows.
//! - [`dp`]: clip + exact Gaussian noise time, against opendp and a local round.
//! - [`dpsgd`]: a DP-SGD step against Opacus, and against the non-private step.
//! - [`ssl`]: representation quality on a real dataset, centralized vs federated vs DP.

pub mod aggregate;
pub mod dp;
pub mod dpsgd;
pub mod ssl;
pub mod table;
pub mod train;

pub use table::Table;
