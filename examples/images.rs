//! Images: ConvNet-S on the generated 28×28 shapes, federated over QUIC on 127.0.0.1.
//!
//! `cargo run --release --example images [simclr|simsiam|vicreg|byol|masked|denoising]`
//! (default byol: FedBYOL, each site's momentum target kept on the site).

#[path = "common/mod.rs"]
mod common;

use fedssl_common::config::PlanConfig;
use fedssl_common::ssl::Objective;

fn main() -> anyhow::Result<()> {
    let objective = common::objective_arg(Objective::Byol)?;
    let plan = PlanConfig {
        objective,
        batch_size: 128,
        ..PlanConfig::default()
    };
    common::run(&format!("images-{objective}"), plan, 4, 3000)
}
