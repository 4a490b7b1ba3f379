//! Byzantine sites over loopback: 2 of 10 sites (20 %) train honestly, then send their
//! update sign-flipped and scaled by 10, or a random vector at 10 × its norm. Each run is
//! made under FedAvg, the coordinate-wise median, the trimmed mean and Krum. From the updates the server stored, the test checks
//! that the server committed exactly previous + rule(updates), and measures how far the two
//! attackers moved each rule's aggregate from the same rule over the honest sites alone
//! (for Krum: that it returned an honest site's update unchanged).
//! The table (with the server's probe, which two short rounds on generated data do not
//! move beyond its noise) goes to stderr; `fedssl bench byzantine` measures the probe on
//! real data with the same attackers (`fedssl::bench::byzantine`).

mod common;

use std::time::Duration;

use fedssl::bench::byzantine::{attacker, Attack};
use fedssl_ml::data::{synthetic, Dataset};
use fedssl_ml::model::Weights;
use fedssl_net::certs;
use fedssl_privacy::plan::{PrivacyMechanism, PrivacyPlan};
use fedssl_server::config::ServerEvalConfig;
use fedssl_server::strategy::config::{StrategyConfig, StrategyKind};

const SITES: usize = 10;
const BYZANTINE: usize = 2;
const ROUNDS: u64 = 2;

fn site_data(i: usize) -> Dataset {
    synthetic::generate(240, 100 + i as u64).unlabeled()
}

fn plan() -> fedssl_server::config::PlanConfig {
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

async fn run(strategy: StrategyConfig, attack: Option<Attack>) -> Outcome {
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
        if let Some(attack) = attack.filter(|_| i < BYZANTINE) {
            let files = certs::client_tls(&certs_dir, n);
            let n = n.clone();
            tasks.push(tokio::spawn(async move {
                attacker(addr, &files, &n, data, attack, 1000 + i as u64).await
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
async fn robust_rules_hold_against_byzantine_sites_and_fedavg_does_not() {
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
    let clean = run(base, None).await;
    eprintln!(
        "| rule (2 of 10 sites attack) | attack | probe after {ROUNDS} rounds | ‖rule(all) − rule(honest)‖ / ‖rule(honest)‖, last round (Krum: to the nearest honest update) |"
    );
    eprintln!("|---|---|---|---|");
    eprintln!("| fedavg | none | {:.2} % | 0 |", 100.0 * clean.probe);
    for attack in [Attack::SignFlip, Attack::Random] {
        let mut rows = vec![];
        for (name, s) in rules {
            let o = run(s, Some(attack)).await;
            // The server applied the rule: the committed model is the previous one plus
            // the rule's aggregate of the stored updates.
            let all: Vec<&Weights> = o.updates.iter().map(|(_, w)| w).collect();
            let agg = aggregate(&s, &all);
            assert!(
                distance(&o.before.add(&agg).unwrap(), &o.after) < 1e-4 * (1.0 + o.after.l2_norm()),
                "{name}: the committed model is not previous + rule(updates)"
            );
            // What the two attackers changed: the rule over all sites against the rule
            // over the honest ones, relative to the latter.
            let honest: Vec<&Weights> = o
                .updates
                .iter()
                .filter(|(n, _)| !(0..BYZANTINE).any(|i| *n == format!("site{i}")))
                .map(|(_, w)| w)
                .collect();
            assert_eq!(honest.len(), SITES - BYZANTINE);
            let shift = if s.name == StrategyKind::Krum {
                // Krum returns one site's update. Over all sites and over the honest ones
                // it may pick different honest sites, so the check is the rule's own
                // guarantee: what it picked is an honest site's update, exactly.
                honest
                    .iter()
                    .map(|h| distance(&agg, h) / h.l2_norm())
                    .fold(f64::INFINITY, f64::min)
            } else {
                let reference = aggregate(&s, &honest);
                distance(&agg, &reference) / reference.l2_norm()
            };
            eprintln!(
                "| {name} | {attack:?} | {:.2} % | {shift:.3} |",
                100.0 * o.probe
            );
            rows.push((name, shift));
        }
        let fedavg = rows[0].1;
        assert!(
            fedavg > 1.0,
            "{attack:?}: FedAvg follows the attackers: shift {fedavg:.3}"
        );
        for (n, d) in &rows[1..] {
            // A robust rule's shift is bounded by the honest updates' spread (one order
            // statistic for the median and trimmed mean), whatever the attackers' scale;
            // FedAvg's grows with it. Krum must return an honest update unchanged.
            if n.starts_with("krum") {
                assert!(
                    *d < 1e-6,
                    "{attack:?}: {n} picked an attacker's update ({d:.3} from every honest one)"
                );
            } else {
                assert!(
                    *d < 1.0 && *d < fedavg / 4.0,
                    "{attack:?}: {n} keeps the honest sites' aggregate: shift {d:.3} (FedAvg {fedavg:.3})"
                );
            }
        }
    }
}
