//! The `fedssl` program's library: the `simulate` job (server + clients on loopback) with its
//! human-readable report, and the benchmarks. The command line lives in `main.rs`.

pub mod bench;
pub mod simulate;

/// Logs to stderr through `tracing` (`RUST_LOG` filters; default: info, quinn quiet), and
/// tunes the allocator for training: what every `fedssl` entry point does first.
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn,quinn_proto=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    fedssl_kernels::tune_allocator();
}
