//! Text: the byte-level Transformer on generated lines about four topics, pretrained by
//! masked-token modeling (BERT-style), federated over QUIC on 127.0.0.1.
//!
//! `cargo run --release --example text` — or point it at your own text with
//! `fedssl simulate --plan examples/plans/text-masked.toml --data lines.txt`
//! (one sample per line; `__label__NAME ` prefixes are optional labels for the probe).

#[path = "common/mod.rs"]
mod common;

use fedssl_ml::ssl::ObjectiveKind;
use fedssl_server::config::PlanConfig;

fn main() -> anyhow::Result<()> {
    let objective = common::objective_arg(ObjectiveKind::Masked)?;
    // The plan file, embedded, so the example and the file cannot drift apart.
    let mut plan: PlanConfig = toml::from_str(include_str!("plans/text-masked.toml"))?;
    plan.objective = objective;
    // The Transformer needs a few hundred steps per site before its features tell
    // topics apart: 1000 lines per site, 5 local epochs, 6 rounds.
    common::run(&format!("text-{objective}"), plan, 6, 3000)
}
