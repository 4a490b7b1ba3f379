//! Byzantine sites over loopback: 2 of 10 sites (20 %) train honestly, then send their
//! update sign-flipped and scaled by 10. The run is made under FedAvg, the coordinate-wise
//! median, the trimmed mean and Krum. From the updates the server stored, the test checks
//! that the server committed exactly previous + rule(updates), and measures how far the two
//! attackers moved each rule's aggregate from the same rule over the honest sites alone.
//! The table (with the server's probe, which two short rounds on generated data do not
//! move beyond its noise) goes to stderr.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use fedssl_common::config::ServerEvalConfig;
use fedssl_common::data::{synthetic, Dataset};
use fedssl_common::device::ComputeDevice;
use fedssl_common::dp::plan::{PrivacyMechanism, PrivacyPlan};
use fedssl_common::model::Weights;
use fedssl_common::net::{certs, io, tls::TlsFiles};
use fedssl_common::protocol::{ClientMsg, Hello, ModelPayload, ServerMsg, SiteReport, Upload};
use fedssl_common::strategy::{StrategyConfig, StrategyKind};

const SITES: usize = 10;
const BYZANTINE: usize = 2;
const ROUNDS: u64 = 2;

fn site_data(i: usize) -> Dataset {
    synthetic::generate(240, 100 + i as u64).unlabeled()
}

/// A site that trains like an honest one and sends −10 × its update.
async fn sign_flipper(
    addr: SocketAddr,
    certs_dir: &Path,
    name: &str,
    data: Dataset,
) -> anyhow::Result<()> {
    let (cert, key) = certs::client_files(certs_dir, name);
    let files = TlsFiles {
        ca: certs_dir.join(certs::CA_CERT),
        cert,
        key,
    };
    let (_ep, conn) = common::raw_connect(addr, &files).await?;
    let max = fedssl_common::config::DEFAULT_MAX_FRAME;
    let t = Duration::from_secs(300);
    let hello = ClientMsg::Hello(Hello {
        protocol_version: fedssl_common::PROTOCOL_VERSION,
        software_version: fedssl_common::SOFTWARE_VERSION.into(),
        capabilities: vec![],
        claimed_name: name.into(),
        num_samples: None,
    });
    let (resp, _) = io::request(&conn, &hello, max, t).await?;
    anyhow::ensure!(matches!(resp, ServerMsg::Welcome(_)), "{resp:?}");
    let mut after = 0;
    loop {
        let (resp, _) =
            io::request(&conn, &ClientMsg::NextTask { after_round: after }, max, t).await?;
        match resp {
            ServerMsg::Task(task) => {
                let global = task.model.decode(&task.model.declared_spec())?;
                let (g, plan, d) = (global.clone(), task.plan.clone(), data.clone());
                let out = tokio::task::spawn_blocking(move || {
                    fedssl_client::trainer::train(
                        ComputeDevice::Cpu,
                        fedssl_client::trainer::TrainJob {
                            global: &g,
                            local: None,
                            target: None,
                            lambda: None,
                            data: &d,
                            plan: &plan,
                            site_seed: 7,
                            dp_sgd: None,
                            progress: None,
                        },
                    )
                })
                .await??;
                let mut update = out.global.sub(&global)?;
                update.scale(-10.0);
                let up = Upload {
                    round: task.round,
                    nonce: task.nonce,
                    base_model_hash: task.model.hash.clone(),
                    update: ModelPayload::from_weights(&update),
                    report: SiteReport::default(),
                };
                let (resp, _) =
                    io::request(&conn, &ClientMsg::Upload(Box::new(up)), max, t).await?;
                anyhow::ensure!(matches!(resp, ServerMsg::UploadAccepted { .. }), "{resp:?}");
                after = task.round;
            }
            ServerMsg::Wait { retry_after_ms } => {
                tokio::time::sleep(Duration::from_millis(retry_after_ms.max(50))).await
            }
            ServerMsg::Finished { .. } => return Ok(()),
            other => anyhow::bail!("{other:?}"),
        }
    }
}

fn plan() -> fedssl_common::config::PlanConfig {
    let mut p = common::tiny_plan();
    p.privacy = PrivacyPlan {
        mechanism: PrivacyMechanism::None,
        ..PrivacyPlan::default()
    };
    p.learning_rate = 2e-3;
    p
}

struct Outcome {
    probe: f64,
    /// The last round's stored updates (name, update), in acceptance order.
    updates: Vec<(String, Weights)>,
    /// The global models before and after the last round.
    before: Weights,
    after: Weights,
}

async fn run(strategy: StrategyConfig, attacked: bool) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..SITES).map(|i| format!("site{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let certs_dir = common::make_certs(dir.path(), &refs);
    let mut cfg = common::server_config(dir.path(), &certs_dir, ROUNDS, SITES);
    cfg.plan = plan();
    cfg.plan.strategy = strategy;
    cfg.eval = Some(ServerEvalConfig {
        data: None,
        train_samples: 1000,
        test_samples: 1000,
        every: 0,
    });
    let (addr, server) = common::start_server(cfg).await;
    let mut tasks = vec![];
    for (i, n) in names.iter().enumerate() {
        let data = site_data(i);
        if attacked && i < BYZANTINE {
            let (c, n) = (certs_dir.clone(), n.clone());
            tasks.push(tokio::spawn(async move {
                sign_flipper(addr, &c, &n, data).await.map(|_| ())
            }));
        } else {
            let mut c = common::client_config(dir.path(), &certs_dir, n, addr);
            c.epsilon_budget = f64::INFINITY;
            tasks.push(tokio::spawn(async move {
                fedssl_client::run_client(c, data, None).await.map(|_| ())
            }));
        }
    }
    let report = tokio::time::timeout(Duration::from_secs(900), server)
        .await
        .expect("the run finishes")
        .unwrap()
        .unwrap();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(report.rounds_completed, ROUNDS);
    let probe = report
        .rounds
        .last()
        .and_then(|m| m.server_eval)
        .and_then(|e| e.linear_probe_accuracy)
        .expect("a probe after the last round");
    let store = fedssl_server::store::Store::open(&dir.path().join("server")).unwrap();
    let before = Weights::load(&dir.path().join(format!(
        "server/checkpoints/global-{:06}.safetensors",
        ROUNDS - 1
    )))
    .unwrap();
    let updates = store
        .accepted_uploads(ROUNDS)
        .unwrap()
        .into_iter()
        .map(|(n, u)| (n, u.update.decode(&before.spec()).unwrap()))
        .collect();
    Outcome {
        probe,
        updates,
        before,
        after: report.final_model,
    }
}

fn distance(a: &Weights, b: &Weights) -> f64 {
    a.sub(b).unwrap().l2_norm()
}

/// The rule applied to `updates` (the server's own code, run here on the stored updates).
fn aggregate(s: &StrategyConfig, updates: &[&Weights]) -> Weights {
    let rule = fedssl_server::strategy::build(s);
    let mut a = rule.aggregator(&updates[0].spec());
    for u in updates {
        a.fold((*u).clone(), 1.0).unwrap();
    }
    a.aggregate().unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn robust_rules_hold_against_sign_flipping_sites_and_fedavg_does_not() {
    let base = StrategyConfig::default();
    let rules = [
        ("fedavg", base),
        (
            "median",
            StrategyConfig {
                name: StrategyKind::Median,
                ..base
            },
        ),
        (
            "trimmed_mean (β 0.2)",
            StrategyConfig {
                name: StrategyKind::TrimmedMean,
                trim_fraction: 0.2,
                ..base
            },
        ),
        (
            "krum (f 2)",
            StrategyConfig {
                name: StrategyKind::Krum,
                byzantine: 2,
                ..base
            },
        ),
    ];
    let clean = run(base, false).await;
    let mut rows = vec![];
    for (name, s) in rules {
        let o = run(s, true).await;
        // The server applied the rule: the committed model is the previous one plus the
        // rule's aggregate of the stored updates.
        let all: Vec<&Weights> = o.updates.iter().map(|(_, w)| w).collect();
        let agg = aggregate(&s, &all);
        assert!(
            distance(&o.before.add(&agg).unwrap(), &o.after) < 1e-4 * (1.0 + o.after.l2_norm()),
            "{name}: the committed model is not previous + rule(updates)"
        );
        // What the two sign-flipping sites changed: the rule over all sites against the
        // rule over the honest ones, relative to the latter.
        let honest: Vec<&Weights> = o
            .updates
            .iter()
            .filter(|(n, _)| !(0..BYZANTINE).any(|i| *n == format!("site{i}")))
            .map(|(_, w)| w)
            .collect();
        assert_eq!(honest.len(), SITES - BYZANTINE);
        let reference = aggregate(&s, &honest);
        let shift = distance(&agg, &reference) / reference.l2_norm();
        rows.push((name, o.probe, shift));
    }
    eprintln!(
        "| rule (2 of 10 sites send −10 × their update) | probe after {ROUNDS} rounds | ‖rule(all) − rule(honest)‖ / ‖rule(honest)‖, last round |"
    );
    eprintln!("|---|---|---|");
    eprintln!("| fedavg, no attack | {:.2} % | 0 |", 100.0 * clean.probe);
    for (n, p, d) in &rows {
        eprintln!("| {n} | {:.2} % | {d:.3} |", 100.0 * p);
    }
    let fedavg = rows[0].2;
    assert!(
        fedavg > 1.0,
        "FedAvg follows the attackers: shift {fedavg:.3}"
    );
    for (n, _, d) in &rows[1..] {
        // A robust rule's shift is bounded by the honest updates' spread (one order
        // statistic for the median and trimmed mean, none for Krum when it picks an honest
        // update), whatever the attackers' scale; FedAvg's grows with it.
        assert!(
            *d < 1.0 && *d < fedavg / 4.0,
            "{n} keeps the honest sites' aggregate: shift {d:.3} (FedAvg {fedavg:.3})"
        );
    }
}
