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
    /// Log lines on stderr: `text` for people (coloured only on a terminal; NO_COLOR turns
    /// colours off) or `json`, one object per line, for log collectors.
    #[arg(long, value_enum, default_value = "text")]
    log_format: fedssl_client::logging::LogFormat,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    fedssl_client::logging::init(args.log_format);
    fedssl_kernels::tune_allocator();
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()?;
    }
    let rt = tokio::runtime::Runtime::new()?;
    match rt.block_on(fedssl_client::session::run_from_file(
        &args.config,
        args.init_ledger,
        Some(fedssl_client::logging::progress()),
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
