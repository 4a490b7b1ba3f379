//! `fedssl bench dp`: seconds to clip and noise P coordinates with fedssl's exact discrete
//! Gaussian sampler (integer arithmetic, ChaCha20 per thread, parallel), side by side with
//! opendp's exact sampler at the same σ on the same machine, against the time of one local
//! ConvNet-S round.

use fedssl_ml::prelude::*;
use std::time::Instant;

use fedssl_client::trainer::{self, TrainJob};
use fedssl_core::device::ComputeDevice;
use fedssl_ml::data::synthetic;
use fedssl_ml::model::weights::WeightTensor;
use fedssl_ml::model::Weights;
use fedssl_privacy::discrete_gaussian::GridGaussian;
use fedssl_privacy::{GaussianMechanism, Mechanism};
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_gaussian;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::L2Distance;
use rayon::prelude::*;

use super::table::{machine, num, Table};

/// opendp's exact sampler on `values` in parallel chunks of 16 384 (its measurements are not
/// `Send`: each worker builds its own), at granularity 2^k.
fn opendp_noise(values: &mut [f32], sigma: f64, k: i32) -> anyhow::Result<()> {
    values.par_chunks_mut(16_384).try_for_each(|chunk| {
        let m = make_gaussian::<_, _, ZeroConcentratedDivergence>(
            VectorDomain::new(AtomDomain::<f32>::new_non_nan()).with_size(chunk.len()),
            L2Distance::<f32>::default(),
            sigma,
            Some(k),
        )
        .map_err(|e| anyhow::anyhow!("opendp make_gaussian: {e}"))?;
        let out = m
            .invoke(&chunk.to_vec())
            .map_err(|e| anyhow::anyhow!("opendp sampling: {e}"))?;
        chunk.copy_from_slice(&out);
        anyhow::Ok(())
    })
}

/// Runs the benchmark: each P in `params` with fedssl's sampler, and with opendp's for the
/// P up to `opendp_max`; one local round on `round_samples` generated images.
pub fn run(params: &[usize], round_samples: usize, opendp_max: usize) -> anyhow::Result<Table> {
    let plan_cfg = fedssl_server::config::PlanConfig {
        privacy: fedssl_privacy::plan::PrivacyPlan {
            mechanism: fedssl_privacy::plan::PrivacyMechanism::None,
            ..Default::default()
        },
        ..Default::default()
    };
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
            dp_sgd: None,
            progress: None,
        },
    )?;
    let round_s = t0.elapsed().as_secs_f64();
    let encoder_p = global.num_params();
    let (clip, z) = (1.0, 1.0);

    let mut t = Table::new(
        "bench dp: clip + exact discrete Gaussian noise, fedssl vs opendp (same σ, same machine)",
        &[
            "P params",
            "fedssl s",
            "fedssl M/s",
            "opendp s (k = -30)",
            "opendp M/s",
            "speed-up",
            "fedssl share of a ConvNet-S round",
        ],
    );
    for &p in params {
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
        let mut copy: Vec<f32> = w.values().collect();
        let mech = GaussianMechanism::new(clip, z, p)?;
        let t1 = Instant::now();
        mech.privatize(&mut w)?;
        let ours = t1.elapsed().as_secs_f64();
        let theirs = if p <= opendp_max {
            let t2 = Instant::now();
            opendp_noise(&mut copy, z * clip, -30)?;
            Some(t2.elapsed().as_secs_f64())
        } else {
            None
        };
        t.row(vec![
            if p == encoder_p {
                format!("{p} (ConvNet-S)")
            } else {
                p.to_string()
            },
            num(Some(ours), 3),
            num(Some(p as f64 / ours / 1e6), 2),
            num(theirs, 3),
            num(theirs.map(|s| p as f64 / s / 1e6), 2),
            theirs
                .map(|s| format!("{:.0}×", s / ours))
                .unwrap_or_else(|| "-".into()),
            format!("{:.1}%", 100.0 * ours / round_s),
        ]);
    }
    let g = GridGaussian::new(z * clip)?;
    t.note(format!(
        "local round: {} steps of batch {} × 2 views on {round_samples} images took {round_s:.1} s (no DP)",
        out.steps, plan.batch_size
    ));
    t.note(format!(
        "fedssl: Canonne–Kamath–Steinke in u128 integers, noise on the grid 2^{:.0} (σ/2^k ≈ 2^20), ChaCha20 per 65 536 coordinates seeded from the OS; opendp: make_gaussian at k = -30, rationals, parallel chunks of 16 384; both at σ = {}",
        g.step().log2(),
        z * clip
    ));
    t.note(format!(
        "opendp runs only up to P = {opendp_max} (--opendp-max)"
    ));
    t.note(format!("machine: {}", machine()));
    Ok(t)
}
