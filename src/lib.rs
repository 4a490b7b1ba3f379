//! The `fedssl` program's library: the `simulate` job (server + clients on loopback) with its
//! human-readable report, and the benchmarks. The command line lives in `main.rs`.

pub mod bench;
pub mod export;
pub mod init;
pub mod simulate;

pub use fedssl_client::logging::{progress, LogFormat};

/// Logs to stderr through `tracing` in `format` (`RUST_LOG` filters; default: info, quinn
/// quiet), above the progress bars, and tunes the allocator for training: what every
/// `fedssl` entry point does first.
pub fn init(format: LogFormat) {
    fedssl_client::logging::init(format);
    fedssl_kernels::tune_allocator();
}
