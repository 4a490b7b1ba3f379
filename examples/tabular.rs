//! Tabular records: the MLP on generated records of 16 features in five classes,
//! federated over QUIC on 127.0.0.1.
//!
//! `cargo run --release --example tabular [simclr|denoising|clip|masked|vicreg|...]`
//! (default simclr, whose second view is SCARF's feature corruption). `clip` aligns two
//! groups of features (two encoders).

#[path = "common/mod.rs"]
mod common;

use fedssl_ml::data::{records, SampleShape};
use fedssl_ml::ssl::ObjectiveKind;
use fedssl_server::config::PlanConfig;

fn main() -> anyhow::Result<()> {
    let objective = common::objective_arg(ObjectiveKind::SimClr)?;
    let plan = PlanConfig {
        objective,
        data: SampleShape::Tabular {
            features: records::FEATURES,
        },
        batch_size: 128,
        local_epochs: 10,
        learning_rate: 3e-3,
        privacy: common::demo_privacy(),
        ..PlanConfig::default()
    };
    common::run(&format!("tabular-{objective}"), plan, 5, 3000)
}
