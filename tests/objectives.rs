//! Every objective, run federated over real QUIC for a few rounds on the generated default
//! data, gives an encoder that a linear probe separates better than the random-init one.

mod common;

use fedssl::simulate::{simulate, SimulateArgs};
use fedssl_common::config::PlanConfig;
use fedssl_common::data::Partition;
use fedssl_common::ssl::Objective;
use fedssl_server::evaluate::EvalOptions;

async fn probe_gain(objective: Objective) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let s = simulate(SimulateArgs {
        clients: 2,
        rounds: 3,
        data: None,
        partition: Partition::Iid,
        run_dir: dir.path().join("run"),
        device: "cpu".into(),
        epsilon_budget: 1e9,
        delta: 1e-5,
        plan: PlanConfig {
            batch_size: 64,
            objective,
            ..common::tiny_plan()
        },
        train_samples: 768,
        probe_train: 600,
        probe_test: 600,
        round_deadline_secs: 300.0,
        eval_every: 0,
        site_labels: 0,
        federated_eval_every: 0,
        eval: Some(EvalOptions {
            label_fractions: vec![1.0],
            ..EvalOptions::default()
        }),
        progress: false,
        schedule: fedssl_client::Schedule::Serial,
    })
    .await
    .unwrap();
    assert_eq!(s.rounds_completed, 3, "{objective}");
    (
        s.linear_probe_accuracy.unwrap(),
        s.random_init_linear_probe_accuracy.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_objective_beats_its_random_init_encoder() {
    for objective in [Objective::SimClr, Objective::SimSiam, Objective::VicReg] {
        let (trained, random) = probe_gain(objective).await;
        println!("{objective}: trained {trained:.3}, random-init {random:.3}");
        assert!(
            trained > random,
            "{objective}: linear probe {trained:.3} does not beat random-init {random:.3}"
        );
    }
}
