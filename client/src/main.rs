//! `fedssl-client`: the standalone edge binary (no server code inside).

use clap::Parser;

/// Runs a fedssl client from a TOML configuration.
#[derive(Parser)]
#[command(
    name = "fedssl-client",
    version,
    about = "fedssl client: local SSL training with client-level DP"
)]
struct Args {
    /// Client configuration file (TOML).
    #[arg(long)]
    config: std::path::PathBuf,
    /// Start a new privacy ledger although the state folder holds this site's state (only
    /// when no earlier privacy spend belongs to its data: a new ledger starts at ε = 0).
    #[arg(long)]
    init_ledger: bool,
    /// Compute threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .init();
    fedssl_kernels::tune_allocator();
    let args = Args::parse();
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()?;
    }
    let rt = tokio::runtime::Runtime::new()?;
    match rt.block_on(fedssl_client::session::run_from_file(
        &args.config,
        args.init_ledger,
    )) {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::exit(fedssl_client::failure::exit_code(&e).into());
        }
    }
}
