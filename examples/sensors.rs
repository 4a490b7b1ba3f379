//! Sensor streams: the 1-D CNN on generated 6-channel inertial windows (accelerometer and
//! gyroscope, 64 steps, six activities), federated over QUIC on 127.0.0.1.
//!
//! `cargo run --release --example sensors [cpc|clip|masked|simclr|simsiam|vicreg|byol|denoising]`
//! (default cpc). `clip` aligns the accelerometer with the gyroscope channels (two
//! encoders); `byol` runs with FedEMA.

#[path = "common/mod.rs"]
mod common;

use fedssl_core::federation::Federation;
use fedssl_ml::data::{sensors, SampleShape};
use fedssl_ml::ssl::ObjectiveKind;
use fedssl_server::config::PlanConfig;

fn main() -> anyhow::Result<()> {
    let objective = common::objective_arg(ObjectiveKind::Cpc)?;
    let plan = PlanConfig {
        objective,
        data: SampleShape::Series {
            channels: sensors::CHANNELS,
            length: sensors::LENGTH,
        },
        batch_size: 128,
        local_epochs: 2,
        federation: if objective == ObjectiveKind::Byol {
            Federation::FedEma { tau: 0.7 }
        } else {
            Federation::FedAvg
        },
        privacy: common::demo_privacy(),
        ..PlanConfig::default()
    };
    common::run(&format!("sensors-{objective}"), plan, 5, 3000)
}
