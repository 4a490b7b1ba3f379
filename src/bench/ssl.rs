//! `fedssl bench ssl`: representation quality on a real dataset (IDX, e.g. Fashion-MNIST)
//! for raw pixels, a random-init encoder, supervised training from scratch, centralized SSL
//! and federated SSL (IID, Dirichlet 0.5, Dirichlet 0.1, Dirichlet 0.1 with DP at ε = 8),
//! all with the same evaluation, and the same total number of local steps for centralized
//! and federated rows.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use tracing::info;

use fedssl_ml::data::{idx, Dataset, Partition};
use fedssl_ml::eval::finetune::supervised_encoder;
use fedssl_ml::eval::{
    balanced_subset, encode_with_weights, finetune, FinetuneConfig, Labels, Scorer,
};
use fedssl_ml::model::{ModelSpec, Norm, Weights};
use fedssl_privacy::plan::{ClientLevelParams, PrivacyMechanism, PrivacyPlan};
use fedssl_server::config::PlanConfig;

use super::table::{machine, num, pct, Table};
use crate::simulate::{simulate, SimulateArgs};

/// Sizes of one benchmark mode.
#[derive(Debug, Clone, Copy)]
pub struct SslScale {
    /// Unlabeled pretraining pool (from the training split).
    pub pool: usize,
    /// Labeled pool for probes and fine-tuning (from the training split).
    pub labeled: usize,
    /// Test samples.
    pub test: usize,
    /// Federated clients.
    pub clients: usize,
    /// Rounds (the centralized row runs as many, on one site holding all the data).
    pub rounds: u64,
    /// Local epochs per round.
    pub local_epochs: u32,
    /// Fine-tuning and supervised steps.
    pub finetune_steps: usize,
}

impl SslScale {
    /// Under 15 minutes on 2 cores (small pool, few rounds: the accuracies are far from
    /// what the full mode reaches).
    pub fn quick() -> Self {
        Self {
            pool: 3000,
            labeled: 5000,
            test: 2000,
            clients: 10,
            rounds: 4,
            local_epochs: 1,
            finetune_steps: 100,
        }
    }

    /// Well under 2 hours on 2 cores: 10 000 pretraining images for 5 rounds (about 4× the
    /// quick mode's local steps per row), 10 000 labeled and the whole 10 000-image test
    /// split. Timing in BENCHMARKS.md.
    pub fn full() -> Self {
        Self {
            pool: 10_000,
            labeled: 10_000,
            test: 10_000,
            clients: 10,
            rounds: 5,
            local_epochs: 1,
            finetune_steps: 300,
        }
    }
}

/// Settings of the benchmark.
#[derive(Debug, Clone)]
pub struct SslBench {
    /// IDX folder.
    pub data: PathBuf,
    /// Sizes.
    pub scale: SslScale,
    /// Where the runs go.
    pub out: PathBuf,
    /// Seed.
    pub seed: u64,
    /// ε of the DP rows over the whole run (at δ = 1e-5): one record-level DP-SGD row and
    /// one client-level row per value.
    pub dp_epsilons: Vec<f64>,
}

struct Eval {
    probe: f64,
    knn: f64,
    probe1: f64,
    probe10: f64,
}

/// The labeled pool and test set every row is scored on, with one scorer.
struct Labeled {
    pool: Dataset,
    test: Dataset,
    ytr: Vec<u8>,
    yte: Vec<u8>,
    classes: usize,
    scorer: Scorer,
}

impl Labeled {
    fn eval_features(&self, tr: &[f32], te: &[f32], dim: usize) -> Eval {
        let labels = Labels {
            train: &self.ytr,
            test: &self.yte,
            classes: self.classes,
        };
        let s = self.scorer.score(tr, te, dim, labels, &[0.01, 0.1]);
        Eval {
            probe: s.probe.test_accuracy,
            knn: s.knn,
            probe1: s.fractions[0].accuracy,
            probe10: s.fractions[1].accuracy,
        }
    }

    fn eval_encoder(
        &self,
        spec: &ModelSpec,
        w: Option<&Weights>,
        seed: u64,
    ) -> anyhow::Result<Eval> {
        let f = encode_with_weights(spec, w, seed, &self.pool, &[&self.pool, &self.test])?;
        let dim = f[0].len() / self.pool.len().max(1);
        Ok(self.eval_features(&f[0], &f[1], dim))
    }
}

/// z such that `rounds` rounds of client-level Gaussian noise cost `epsilon` per site at δ
/// (RDP accountant, every site in every round: no amplification by sampling).
pub fn calibrate_noise(epsilon: f64, delta: f64, rounds: u64) -> anyhow::Result<f64> {
    fedssl_privacy::rdp::calibrate_sigma(1.0, rounds, delta, epsilon)
        .ok_or_else(|| anyhow::anyhow!("no noise multiplier reaches ε = {epsilon}"))
}

/// Runs the benchmark.
pub async fn run(cfg: &SslBench) -> anyhow::Result<Table> {
    let s = cfg.scale;
    let splits = idx::load_dir(&cfg.data)
        .with_context(|| format!("cannot load the IDX dataset in {}", cfg.data.display()))?;
    let pool = splits.train.take(s.labeled);
    let test = splits.test.take(s.test);
    let ytr = pool
        .labels
        .clone()
        .context("the training split has no labels")?;
    let yte = test
        .labels
        .clone()
        .context("the test split has no labels")?;
    // The same seeded subsets the scorer's 1% / 10% probes use.
    let (sub1_idx, sub10_idx) = (
        balanced_subset(&ytr, 0.01, cfg.seed),
        balanced_subset(&ytr, 0.1, cfg.seed),
    );
    let lab = Labeled {
        classes: pool.num_classes.max(test.num_classes),
        pool,
        test,
        ytr,
        yte,
        scorer: Scorer::seeded(cfg.seed),
    };
    let ft = FinetuneConfig {
        steps: s.finetune_steps,
        seed: cfg.seed,
        ..FinetuneConfig::default()
    };
    let sub1 = lab.pool.subset(&sub1_idx);
    let sub10 = lab.pool.subset(&sub10_idx);

    let mut t = Table::new(
        format!(
            "bench ssl: {} — ConvNet-S, {} pretraining images, {} clients, {} rounds",
            cfg.data.display(),
            s.pool,
            s.clients,
            s.rounds
        ),
        &[
            "row",
            "objective",
            "linear probe",
            "kNN",
            "1% probe",
            "10% probe",
            "1% fine-tune",
            "local steps",
            "wall s",
            "MB on wire",
        ],
    );

    // Baselines.
    let started = Instant::now();
    info!("bench ssl: raw pixels");
    let raw = lab.eval_features(&lab.pool.samples, &lab.test.samples, lab.pool.dim());
    push(&mut t, "raw pixels", "-", &raw, None, None, started, None);
    let started = Instant::now();
    info!("bench ssl: random-init encoder");
    let rnd = lab.eval_encoder(&ModelSpec::default(), None, cfg.seed ^ 0xA5A5)?;
    push(
        &mut t,
        "random-init encoder",
        "-",
        &rnd,
        None,
        None,
        started,
        None,
    );
    let started = Instant::now();
    let gn_spec = ModelSpec {
        norm: Norm::Group,
        ..ModelSpec::default()
    };
    let rnd_gn = lab.eval_encoder(&gn_spec, None, cfg.seed ^ 0xA5A5)?;
    push(
        &mut t,
        "random-init encoder, GroupNorm",
        "-",
        &rnd_gn,
        None,
        None,
        started,
        None,
    );
    let started = Instant::now();
    info!("bench ssl: supervised from scratch (all labels, 10%, 1%)");
    let (sup_w, _) = supervised_encoder(&ModelSpec::default(), &lab.pool, &ft)?;
    let sup = lab.eval_encoder(&ModelSpec::default(), Some(&sup_w), cfg.seed)?;
    let sup1 = finetune(&ModelSpec::default(), None, &sub1, &lab.test, &ft)?.test_accuracy;
    let sup10 = finetune(&ModelSpec::default(), None, &sub10, &lab.test, &ft)?.test_accuracy;
    push(
        &mut t,
        "supervised from scratch",
        "-",
        &Eval {
            probe1: sup1,
            probe10: sup10,
            ..sup
        },
        Some(sup1),
        Some(ft.steps),
        started,
        None,
    );

    // SSL rows: one site holding everything, then federated partitions, then DP.
    let no_dp = PrivacyPlan {
        mechanism: PrivacyMechanism::None,
        ..PrivacyPlan::default()
    };
    let pretrain_pool = splits.train.take(s.pool);
    let row = |name: &str, clients, partition, privacy, norm| Row {
        name: name.to_string(),
        clients,
        partition,
        privacy,
        norm,
        epsilon: f64::INFINITY,
    };
    let dir01 = Partition::Dirichlet(0.1);
    let mut rows = vec![
        row("centralized SSL", 1, Partition::Iid, no_dp, None),
        row("federated SSL, IID", s.clients, Partition::Iid, no_dp, None),
        row(
            "federated SSL, Dirichlet 0.5",
            s.clients,
            Partition::Dirichlet(0.5),
            no_dp,
            None,
        ),
        row(
            "federated SSL, Dirichlet 0.1",
            s.clients,
            dir01,
            no_dp,
            None,
        ),
        row(
            "federated SSL, Dirichlet 0.1, GroupNorm",
            s.clients,
            dir01,
            no_dp,
            Some(Norm::Group),
        ),
    ];
    for &eps in &cfg.dp_epsilons {
        let dp_sgd = PrivacyPlan {
            mechanism: PrivacyMechanism::DpSgd,
            noise_multiplier: None,
            target_epsilon: Some(eps),
            clip_norm: DP_SGD_CLIP,
            ..PrivacyPlan::default()
        };
        rows.push(Row {
            epsilon: eps,
            ..row(
                &format!("Dirichlet 0.1, DP-SGD ε = {eps} per record"),
                s.clients,
                dir01,
                dp_sgd,
                Some(Norm::Group),
            )
        });
        let client = PrivacyPlan {
            mechanism: PrivacyMechanism::ClientLevel,
            client: ClientLevelParams {
                clip_norm: CLIENT_CLIP,
                // The site widens its grid noise until z holds after rounding, so the
                // calibrated z is exactly what its ledger charges.
                noise_multiplier: calibrate_noise(eps, 1e-5, s.rounds)?,
                adaptive: None,
            },
            ..PrivacyPlan::default()
        };
        rows.push(Row {
            epsilon: eps,
            ..row(
                &format!("Dirichlet 0.1, client-level ε = {eps} per site"),
                s.clients,
                dir01,
                client,
                None,
            )
        });
    }
    let objective = "simclr";
    for r in &rows {
        info!(row = r.name, objective, "bench ssl: pretraining");
        let started = Instant::now();
        let run_dir = cfg.out.join(format!(
            "ssl-{}-{}",
            objective,
            r.name.replace([' ', ',', '.', '='], "_")
        ));
        let _ = std::fs::remove_dir_all(&run_dir);
        let plan = PlanConfig {
            local_epochs: s.local_epochs,
            // 100 divides every IID shard of both modes, so the centralized and the IID
            // federated rows take exactly the same number of local steps.
            batch_size: 100,
            // The Fashion-MNIST recipe's temperature (examples/plans/fashion-mnist-simclr.toml:
            // 82.55 % against 81.75 % at τ = 0.2, 6 rounds, 10 sites).
            temperature: 0.5,
            privacy: r.privacy,
            norm: r.norm,
            seed: cfg.seed,
            ..PlanConfig::default()
        };
        let summary = simulate(SimulateArgs {
            clients: r.clients,
            rounds: s.rounds,
            data: Some(cfg.data.clone()),
            partition: r.partition,
            run_dir: run_dir.clone(),
            device: "cpu".into(),
            // A hair above the target: the ledger stops a run that would overspend.
            epsilon_budget: r.epsilon * 1.001,
            delta: 1e-5,
            site_report: Default::default(),
            plan: plan.clone(),
            train_samples: s.pool,
            probe_train: 1000,
            probe_test: 1000,
            round_deadline_secs: 7200.0,
            eval_every: 0,
            site_labels: 0,
            federated_eval_every: 0,
            eval: None,
            progress: true,
            schedule: fedssl_client::Schedule::Serial,
            central_dp: None,
            metrics_listen: None,
        })
        .await?;
        let steps = local_steps(
            &pretrain_pool,
            r.clients,
            r.partition,
            &plan,
            summary.rounds_completed,
        )?;
        let spec = plan.model_spec();
        let w = &summary.final_model;
        let e = lab.eval_encoder(&spec, Some(w), cfg.seed)?;
        let ft1 = finetune(&spec, Some(w), &sub1, &lab.test, &ft)?.test_accuracy;
        let p = &summary.privacy;
        let label = match r.privacy.mechanism {
            PrivacyMechanism::None => r.name.clone(),
            PrivacyMechanism::ClientLevel => format!(
                "{} (spent {:.2}, z = {:.2}, C = {CLIENT_CLIP})",
                r.name,
                p.epsilon_site.unwrap_or(f64::INFINITY),
                r.privacy.client.noise_multiplier
            ),
            _ => format!(
                "{} (spent {:.2}, σ = {:.2}, q ≤ {:.2}, C = {DP_SGD_CLIP})",
                r.name,
                p.epsilon.unwrap_or(f64::INFINITY),
                p.sigma.unwrap_or(f64::NAN),
                p.q.unwrap_or(f64::NAN)
            ),
        };
        push(
            &mut t,
            &label,
            objective,
            &e,
            Some(ft1),
            Some(steps),
            started,
            (r.clients > 1).then_some(summary.bytes_on_wire),
        );
    }
    t.note(format!(
        "probes: standardized features, softmax regression (full-batch Adam, 300 steps), L2 penalty chosen on a 20% validation split; kNN: k = 200, T = 0.1 on L2-normalized features; {} labeled / {} test images",
        lab.pool.len(),
        lab.test.len()
    ));
    t.note(format!(
        "1% / 10%: class-balanced seeded subsets ({} / {} labels); fine-tune: encoder + linear head end to end, Adam, encoder lr 1e-4, head lr 1e-3, {} steps of batch 64",
        sub1.len(),
        sub10.len(),
        ft.steps
    ));
    t.note("supervised row: probe / kNN on the encoder trained with all labels; its 1% / 10% columns are the from-scratch classifier trained on that subset (the baseline for the probe and fine-tune columns)");
    t.note("rows without DP train with no clipping and no noise; client-level rows: z calibrated so the whole run costs the stated ε per site (add-or-remove one site, δ = 1e-5, RDP accountant, every site in every round, q = 1); DP-SGD rows: SimCLR with group-level clipping (groups of 16 records, sensitivity 2C), Poisson sampling at q = batch / site records, σ calibrated per site so the whole run costs the stated ε per record (add-or-remove one record, δ = 1e-5, RDP accountant); 'spent' is the largest site's ledger figure, 'q ≤' the largest site's sampling rate");
    t.note("DP-SGD and the GroupNorm row train GroupNorm encoders (BatchNorm mixes a batch's records); compare them with the GroupNorm random-init row");
    t.note("centralized SSL: one site holding the whole pool, same rounds, local epochs and batch (100 pairs), hence the same total local steps as the IID row; Dirichlet shards drop their last partial batch, so their count differs slightly (its traffic is omitted: no network)");
    t.note(format!("machine: {}", machine()));
    Ok(t)
}

/// DP-SGD rows' per-group clip bound.
const DP_SGD_CLIP: f64 = 1.0;
/// Client-level rows' update clip bound.
const CLIENT_CLIP: f64 = 0.1;

/// One pretraining row of the table.
struct Row {
    name: String,
    clients: usize,
    partition: Partition,
    privacy: PrivacyPlan,
    norm: Option<Norm>,
    /// The run's ε budget (infinite without DP).
    epsilon: f64,
}

/// Local optimizer steps of a whole run: every site takes `steps_per_round` on its share
/// of the pool (the same partition `simulate` draws).
fn local_steps(
    pool: &Dataset,
    clients: usize,
    partition: Partition,
    plan: &PlanConfig,
    rounds: u64,
) -> anyhow::Result<usize> {
    let parts = fedssl_ml::data::partition::partition(
        pool.len(),
        pool.labels.as_deref(),
        clients,
        partition,
        plan.seed,
        2,
    )?;
    let round_plan = plan.plan(1);
    Ok(parts
        .iter()
        .map(|p| fedssl_client::trainer::steps_per_round(p.len(), &round_plan))
        .sum::<usize>()
        * rounds as usize)
}

#[allow(clippy::too_many_arguments)]
fn push(
    t: &mut Table,
    row: &str,
    objective: &str,
    e: &Eval,
    ft1: Option<f64>,
    steps: Option<usize>,
    started: Instant,
    bytes: Option<u64>,
) {
    t.row(vec![
        row.into(),
        objective.into(),
        pct(Some(e.probe)),
        pct(Some(e.knn)),
        pct(Some(e.probe1)),
        pct(Some(e.probe10)),
        pct(ft1),
        steps.map(|s| s.to_string()).unwrap_or("-".into()),
        num(Some(started.elapsed().as_secs_f64()), 0),
        bytes
            .map(|b| format!("{:.1}", b as f64 / 1e6))
            .unwrap_or("-".into()),
    ]);
}
