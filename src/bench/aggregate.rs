//! `fedssl bench aggregate`: streaming FedAvg of K updates of P parameters, as the server does
//! it (decode the wire payload, check its hash and shape, fold it into the f64 accumulator,
//! drop it), against this machine's memcpy bandwidth; and the process's peak memory as K grows.

use std::time::Instant;

use fedssl_ml::model::weights::WeightTensor;
use fedssl_ml::model::Weights;
use fedssl_protocol::ModelPayload;
use fedssl_server::strategy::mean::FedAvg;
use rand::{Rng, SeedableRng};

use super::table::{machine, num, Table};

/// Resident set size and its peak so far, in bytes (Linux; `None` elsewhere).
fn rss() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the kernel's peak-RSS mark to the current RSS (Linux ≥ 4.0).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// memcpy bandwidth in bytes/s (bytes copied, i.e. read once and written once) with all
/// compute threads, as the fold uses them; best of 10.
fn memcpy_bandwidth(bytes: usize) -> f64 {
    use rayon::prelude::*;
    let src = vec![1u8; bytes];
    let mut dst = vec![0u8; bytes];
    let chunk = (bytes / rayon::current_num_threads().max(1)).max(1 << 16);
    let mut best = f64::MAX;
    for _ in 0..10 {
        let t = Instant::now();
        dst.par_chunks_mut(chunk)
            .zip(src.par_chunks(chunk))
            .for_each(|(d, s)| d.copy_from_slice(s));
        std::hint::black_box(&mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best
}

fn update(p: usize, seed: u64) -> Weights {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Weights {
        tensors: vec![WeightTensor {
            name: "w".into(),
            shape: vec![p],
            values: (0..p).map(|_| rng.gen_range(-0.01f32..0.01)).collect(),
        }],
    }
}

/// Runs the benchmark for each P in `params` and K in `ks`.
pub fn run(params: &[usize], ks: &[usize]) -> anyhow::Result<Table> {
    let mut t = Table::new(
        "bench aggregate: streaming FedAvg (decode + hash check + fold per update)",
        &[
            "P params",
            "K updates",
            "fold GB/s",
            "fold / memcpy",
            "end-to-end GB/s",
            "process peak RSS MB",
            "accumulator MB",
        ],
    );
    for &p in params {
        let bw = memcpy_bandwidth(p * 4);
        t.note(format!(
            "memcpy of {} MB on this machine: {:.2} GB/s",
            p * 4 / 1_000_000,
            bw / 1e9
        ));
        let w = update(p, p as u64);
        let wire = ModelPayload::from_weights(&w);
        let spec = w.spec();
        for &k in ks {
            // Fold only (the update already decoded; the accumulator's pages touched once
            // before timing, as they are after a round's first update).
            let mut acc = FedAvg::new(spec.clone());
            acc.fold(&w, 1.0)?;
            let tf = Instant::now();
            for _ in 0..k {
                acc.fold(&w, 1.0)?;
            }
            let fold_s = tf.elapsed().as_secs_f64();
            drop(acc);
            // End to end, as on the server: each update decoded from its wire form, folded,
            // dropped. Peak memory measured over this loop alone.
            let reset = reset_peak();
            let te = Instant::now();
            let mut acc = FedAvg::new(spec.clone());
            for _ in 0..k {
                let u = wire.decode(&spec)?;
                acc.fold(&u, 1.0)?;
            }
            let mean = acc.mean();
            let e2e_s = te.elapsed().as_secs_f64();
            std::hint::black_box(&mean);
            let peak = match (reset, rss()) {
                (true, Some((_, hwm))) => Some(hwm as f64 / 1e6),
                _ => None,
            };
            drop(mean);
            let bytes = (k * p * 4) as f64;
            t.row(vec![
                p.to_string(),
                k.to_string(),
                num(Some(bytes / fold_s / 1e9), 2),
                format!("{:.0}%", 100.0 * (bytes / fold_s) / bw),
                num(Some(bytes / e2e_s / 1e9), 2),
                num(peak, 1),
                num(Some((p * 8) as f64 / 1e6), 1),
            ]);
        }
    }
    t.note(
        "fold GB/s counts the f32 update bytes folded per second; memcpy GB/s counts bytes copied",
    );
    t.note("process peak RSS during the end-to-end loop: the wire payload (4 B/param, held by the bench), the accumulator (8 B/param), one decoded update at a time (4 B/param) and the mean: flat in K means streaming");
    t.note(format!("machine: {}", machine()));
    Ok(t)
}
