//! `fedssl bench dp`: seconds to clip and noise P parameters with opendp's exact Gaussian
//! sampler, against the time of one local ConvNet-S round on this machine.

use std::time::Instant;

use fedssl_client::trainer::{self, TrainJob};
use fedssl_common::data::synthetic;
use fedssl_common::device::ComputeDevice;
use fedssl_common::dp::{GaussianMechanism, Mechanism};
use fedssl_common::model::weights::WeightTensor;
use fedssl_common::model::Weights;

use super::table::{machine, num, Table};

/// Runs the benchmark: DP for each P in `params`, and one local round on `round_samples`
/// generated images with the default plan.
pub fn run(params: &[usize], round_samples: usize) -> anyhow::Result<Table> {
    let plan_cfg = fedssl_common::config::PlanConfig::default();
    let plan = plan_cfg.plan(1);
    let global = plan.model.initial_global(1).map_err(anyhow::Error::msg)?;
    let data = synthetic::generate(round_samples, 5).unlabeled();
    let t0 = Instant::now();
    let out = trainer::train(
        ComputeDevice::Cpu,
        TrainJob {
            global: &global,
            local: None,
            target: None,
            lambda: None,
            data: &data,
            plan: &plan,
            site_seed: 1,
            progress: None,
        },
    )?;
    let round_s = t0.elapsed().as_secs_f64();
    let encoder_p = global.num_params();

    let mut t = Table::new(
        "bench dp: clip + exact Gaussian noise (opendp, k = -30) vs one local round",
        &[
            "P params",
            "granularity k",
            "clip + noise s",
            "M params/s",
            "share of a ConvNet-S round",
        ],
    );
    let runs = params.iter().flat_map(|&p| {
        let ks: &[i32] = if p == encoder_p {
            &[-30, -20, -15]
        } else {
            &[-30]
        };
        ks.iter().map(move |&k| (p, k))
    });
    for (p, k) in runs {
        let mut w = if p == encoder_p {
            out.global.sub(&global)?
        } else {
            Weights {
                tensors: vec![WeightTensor {
                    name: "w".into(),
                    shape: vec![p],
                    values: vec![0.01; p],
                }],
            }
        };
        let mut mech = GaussianMechanism::new(plan_cfg.clip_norm, plan_cfg.noise_multiplier, p)?;
        mech.k = k;
        let t1 = Instant::now();
        mech.privatize(&mut w)?;
        let s = t1.elapsed().as_secs_f64();
        t.row(vec![
            if p == encoder_p {
                format!("{p} (ConvNet-S)")
            } else {
                p.to_string()
            },
            if k == GaussianMechanism::DEFAULT_K {
                format!("{k} (default)")
            } else {
                k.to_string()
            },
            num(Some(s), 3),
            num(Some(p as f64 / s / 1e6), 2),
            format!("{:.1}%", 100.0 * s / round_s),
        ]);
    }
    t.note(format!(
        "local round: {} steps of batch {} × 2 views on {round_samples} images took {round_s:.1} s",
        out.steps, plan.batch_size
    ));
    t.note("k: opendp samples the noise on the grid 2^k; a coarser grid grows the sensitivity by 2^k·√P (at k = -15 and P = 240k: 0.015·C)");
    t.note(format!("machine: {}", machine()));
    Ok(t)
}
