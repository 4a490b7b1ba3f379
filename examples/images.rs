//! Images, federated over QUIC on 127.0.0.1: ConvNet-S on the generated 28×28 grayscale
//! shapes, or with `rgb` the ResNet (ResNet-18 layout, width 8) on the same shapes in
//! colour at 32×32, with colour jitter, grayscale and blur among the augmentations (the
//! plan of `examples/plans/rgb-resnet.toml`).
//!
//! `cargo run --release --example images [simclr|simsiam|vicreg|byol|masked|denoising] [rgb]`
//! (default byol: FedBYOL, each site's momentum target kept on the site).

#[path = "common/mod.rs"]
mod common;

use fedssl_ml::ssl::ObjectiveKind;
use fedssl_server::config::PlanConfig;

fn main() -> anyhow::Result<()> {
    let objective = common::objective_arg(ObjectiveKind::Byol)?;
    let rgb = std::env::args().nth(2).as_deref() == Some("rgb");
    if !rgb {
        let plan = PlanConfig {
            objective,
            batch_size: 128,
            privacy: common::demo_privacy(),
            ..PlanConfig::default()
        };
        return common::run(&format!("images-{objective}"), plan, 4, 3000);
    }
    // The plan file, embedded: the example cannot drift from it (it once ran temperature
    // 0.2 against the file's 0.5).
    let mut plan: PlanConfig = toml::from_str(include_str!("plans/rgb-resnet.toml"))?;
    plan.objective = objective;
    common::run(&format!("images-rgb-{objective}"), plan, 8, 2000)
}
