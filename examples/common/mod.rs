//! What the examples share: argument parsing, logging, running the simulation and printing
//! its report. Each example only chooses its plan.

use fedssl::simulate::{render_report, simulate, SimulateArgs};
use fedssl_ml::ssl::ObjectiveKind;
use fedssl_privacy::plan::{ClientLevelParams, PrivacyMechanism, PrivacyPlan};
use fedssl_server::config::PlanConfig;

/// The examples demonstrate objectives and modalities, not privacy: client-level noise at
/// z = 0.01 on updates clipped to 1, the setting their README figures were measured with.
/// That is **no meaningful protection** (the report prints the ε it spent, thousands per
/// site); `cargo run --release -- simulate` shows record-level DP-SGD.
#[allow(dead_code)] // the text example embeds its own plan file
pub fn demo_privacy() -> PrivacyPlan {
    PrivacyPlan {
        mechanism: PrivacyMechanism::ClientLevel,
        client: ClientLevelParams {
            clip_norm: 1.0,
            noise_multiplier: 0.01,
            adaptive: None,
        },
        ..PrivacyPlan::default()
    }
}

/// The objective named by the first argument, or `default`.
pub fn objective_arg(default: ObjectiveKind) -> anyhow::Result<ObjectiveKind> {
    match std::env::args().nth(1) {
        Some(name) => ObjectiveKind::parse(&name).map_err(anyhow::Error::msg),
        None => Ok(default),
    }
}

/// Runs `plan` with 3 clients for `rounds` rounds on `samples` generated samples, writes
/// `runs/example-<name>-<time>/` and prints the report.
pub fn run(name: &str, plan: PlanConfig, rounds: u64, samples: usize) -> anyhow::Result<()> {
    fedssl::init(fedssl::LogFormat::Text);
    plan.validate()?;
    let run_dir = fedssl::simulate::fresh_run_dir(&format!("example-{name}"));
    let mut args = SimulateArgs::new(plan, run_dir.clone());
    args.clients = 3;
    args.rounds = rounds;
    args.train_samples = samples;
    args.probe_train = 1000;
    args.probe_test = 1000;
    // No budget: the demonstration noise (see `demo_privacy`) would exceed any meaningful one;
    // the report still prints every site's ε with its unit.
    args.epsilon_budget = f64::INFINITY;
    let summary = tokio::runtime::Runtime::new()?.block_on(simulate(args))?;
    println!("{}", render_report(&summary, &run_dir));
    Ok(())
}
