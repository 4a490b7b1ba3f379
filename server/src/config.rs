//! Configuration files (TOML) for the server and the client, with validation that names
//! the offending field.

use fedssl_core::federation::Federation;
use fedssl_ml::data::SampleShape;
use fedssl_ml::model::{EncoderConfig, ModelSpec, Norm, Parts};
use fedssl_ml::prelude::*;
use fedssl_ml::ssl::{
    AugmentSettings, Byol, Cpc, CrossModal, Denoising, Masked, Objective, ObjectiveKind, Reorder,
    VicReg,
};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use fedssl_net::tls::TlsFiles;
use fedssl_privacy::plan::PrivacyPlan;
use fedssl_protocol::RoundPlan;

use fedssl_protocol::DEFAULT_MAX_FRAME;

/// Hyper-parameters the server hands out each round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanConfig {
    /// Local epochs per round.
    pub local_epochs: u32,
    /// Pairs per mini-batch.
    pub batch_size: u32,
    /// Local learning rate (Adam).
    pub learning_rate: f64,
    /// NT-Xent temperature.
    pub temperature: f64,
    /// Privacy: the mechanism every site runs and its parameters (`[plan.privacy]`).
    pub privacy: PrivacyPlan,
    /// Moved to `[plan.privacy]`; kept only to say so.
    #[serde(skip_serializing)]
    pub clip_norm: Option<f64>,
    /// Moved to `[plan.privacy]`; kept only to say so.
    #[serde(skip_serializing)]
    pub noise_multiplier: Option<f64>,
    /// Seed of the run.
    pub seed: u64,
    /// Self-supervised objective: `simclr`, `simsiam`, `vicreg`, `byol`, `masked`,
    /// `denoising`, `cpc`, `clip` or `reorder`; its settings are the table of the same
    /// name (`[plan.vicreg]`, `[plan.masked]`, …).
    pub objective: ObjectiveKind,
    /// The shape of every site's samples (`[plan.data.series] channels = 6, length = 64`,
    /// `[plan.data.tabular] features = 16`, `[plan.data.image] ...`).
    pub data: SampleShape,
    /// The encoder (`encoder = "convnet-s"`, `[plan.encoder.cnn1d] width = 32`,
    /// `[plan.encoder.mlp] hidden = 256`); the modality's default if unset.
    pub encoder: Option<EncoderConfig>,
    /// Normalization layers: `batch` or `group` (default: group under DP-SGD, which refuses
    /// BatchNorm; batch otherwise).
    pub norm: Option<Norm>,
    /// Which parts of the model are global.
    pub parts: Parts,
    /// How sites merge the global model into their own (`federation = "fedavg"`,
    /// `[plan.federation.fedema] tau = 0.7`, `[plan.federation.fedu] threshold = 1.0`).
    pub federation: Federation,
    /// Augmentations per modality.
    pub augment: AugmentSettings,
    /// VICReg's coefficients.
    pub vicreg: VicReg,
    /// BYOL's momentum.
    pub byol: Byol,
    /// Masked modeling's masks.
    pub masked: Masked,
    /// The denoising autoencoder's corruption.
    pub denoising: Denoising,
    /// CPC's segments and steps.
    pub cpc: Cpc,
    /// Cross-modal alignment's split and temperature.
    pub clip: CrossModal,
    /// Reordering's grid, segments and permutations.
    pub reorder: Reorder,
    /// How the server merges updates (`[plan.strategy]`).
    pub strategy: crate::strategy::config::StrategyConfig,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            local_epochs: 1,
            batch_size: 128,
            learning_rate: 1e-3,
            temperature: 0.2,
            privacy: PrivacyPlan::default(),
            clip_norm: None,
            noise_multiplier: None,
            seed: 1,
            objective: ObjectiveKind::default(),
            data: SampleShape::GRAY_28,
            encoder: None,
            norm: None,
            parts: Parts::default(),
            federation: Federation::default(),
            augment: AugmentSettings::default(),
            vicreg: VicReg::default(),
            byol: Byol::default(),
            masked: Masked::default(),
            denoising: Denoising::default(),
            cpc: Cpc::default(),
            clip: CrossModal::default(),
            reorder: Reorder::default(),
            strategy: crate::strategy::config::StrategyConfig::default(),
        }
    }
}

impl PlanConfig {
    /// The plan of round `round`.
    pub fn plan(&self, round: u64) -> RoundPlan {
        RoundPlan {
            local_epochs: self.local_epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            temperature: self.temperature,
            privacy: self.privacy,
            seed: self
                .seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(round),
            evaluate: false,
            model: self.model_spec(),
            augment: self.augment,
            federation: self.federation,
            proximal_mu: self.strategy.mu(),
        }
    }

    /// The plan's objective with its settings (from the table of its name).
    pub fn objective(&self) -> Objective {
        match self.objective {
            ObjectiveKind::SimClr => Objective::SimClr,
            ObjectiveKind::SimSiam => Objective::SimSiam,
            ObjectiveKind::VicReg => Objective::VicReg(self.vicreg),
            ObjectiveKind::Byol => Objective::Byol(self.byol),
            ObjectiveKind::Masked => {
                let mut masked = self.masked;
                if masked.patch == 0 {
                    // One patch per cell of the encoder's last feature map.
                    if let Some([ph, pw]) = self.encoder().cell(self.data) {
                        if ph == pw {
                            masked.patch = ph;
                        }
                    }
                }
                Objective::Masked(masked)
            }
            ObjectiveKind::Denoising => Objective::Denoising(self.denoising),
            ObjectiveKind::Cpc => Objective::Cpc(self.cpc),
            ObjectiveKind::Clip => Objective::Clip(self.clip),
            ObjectiveKind::Reorder => Objective::Reorder(self.reorder),
        }
    }

    fn encoder(&self) -> EncoderConfig {
        self.encoder
            .unwrap_or_else(|| EncoderConfig::default_for(self.data))
    }

    /// The model every site trains.
    pub fn model_spec(&self) -> ModelSpec {
        ModelSpec {
            shape: self.data,
            encoder: self.encoder(),
            objective: self.objective(),
            parts: self.parts,
            split: self.clip.resolved_split(self.data),
            cpc_steps: self.cpc.steps,
            classes: self.reorder.classes(self.data),
            pieces: self.reorder.pieces(self.data),
            norm: self.norm.unwrap_or(if self.privacy.mechanism.dp_sgd() {
                Norm::Group
            } else {
                Norm::Batch
            }),
        }
    }

    /// Checks ranges.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.strategy.validate(self.privacy.mechanism, false)?;
        let plan_err = |e: String| anyhow::anyhow!("plan.{e}");
        // The ranges every site checks on the plan it receives.
        self.plan(1).validate().map_err(plan_err)?;
        // Every table is checked, also those of objectives the plan does not use.
        for checked in [
            self.clip.validate(),
            self.vicreg.validate(),
            self.byol.validate(),
            self.masked.validate(),
            self.denoising.validate(),
            self.cpc.validate(),
            self.reorder.validate(),
        ] {
            checked.map_err(plan_err)?;
        }
        let spec = self.model_spec();
        spec.encoder
            .check(self.data)
            .map_err(|e| anyhow::anyhow!("plan.encoder: {e}"))?;
        spec.objective
            .fits(self.data)
            .map_err(|e| anyhow::anyhow!("plan.objective: {e}"))?;
        spec.towers()
            .map_err(|e| anyhow::anyhow!("plan.clip.split: {e}"))?;
        if let Federation::FedU { .. } = self.federation {
            if !spec.objective.uses_predictor()
                || self.parts.predictor != fedssl_ml::model::Placement::Global
            {
                bail!("plan.federation: FedU updates a global predictor; use an objective with a predictor (simsiam, byol) and set plan.parts.predictor = \"global\"");
            }
        }
        if self.clip_norm.is_some() || self.noise_multiplier.is_some() {
            bail!("plan.clip_norm and plan.noise_multiplier moved to [plan.privacy]: clip_norm and noise_multiplier there are DP-SGD's (per record); [plan.privacy.client] holds the client-level ones (mechanism = \"client-level\")");
        }
        if self.privacy.mechanism.dp_sgd() {
            if spec.norm == Norm::Batch {
                bail!("plan.norm: BatchNorm normalizes each record with statistics of the whole batch, so one record's gradient depends on the others and DP-SGD cannot bound it; use norm = \"group\" (the default under DP-SGD)");
            }
            spec.objective.dp_sgd().map_err(|e| {
                let usable: Vec<&str> = fedssl_ml::ssl::ALL_OBJECTIVES
                    .iter()
                    .filter(|o| o.with_defaults().dp_sgd().is_ok())
                    .map(|o| o.name())
                    .collect();
                anyhow::anyhow!(
                    "plan.objective: {e}; under DP-SGD use {}, or use [plan.privacy] mechanism = \"client-level\"",
                    usable.join(", ")
                )
            })?;
        }
        Ok(())
    }
}

/// The server's configuration (`fedssl server --config server.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Run directory: database, models, metrics.
    pub run_dir: PathBuf,
    /// CA, server certificate and key.
    pub tls: TlsFiles,
    /// Rounds to run.
    #[serde(default = "d_rounds")]
    pub rounds: u64,
    /// Clients that must be connected before a round starts.
    #[serde(default = "d_min_clients")]
    pub min_clients: usize,
    /// Fraction of connected clients sampled per round (at least `min_clients`).
    #[serde(default = "d_fraction")]
    pub sample_fraction: f64,
    /// Seconds a round waits for updates before closing with what arrived.
    #[serde(default = "d_deadline")]
    pub round_deadline_secs: f64,
    /// Seconds to wait for `min_clients` before giving up.
    #[serde(default = "d_wait")]
    pub wait_for_clients_secs: f64,
    /// Seconds of silence after which a connection is dead.
    #[serde(default = "d_idle")]
    pub idle_timeout_secs: f64,
    /// Largest accepted frame in bytes.
    #[serde(default = "d_frame")]
    pub max_frame_bytes: usize,
    /// Largest number of simultaneous connections.
    #[serde(default = "d_conns")]
    pub max_connections: usize,
    /// Round hyper-parameters.
    #[serde(default)]
    pub plan: PlanConfig,
    /// δ at which clients report ε (for the summary).
    #[serde(default = "d_delta")]
    pub delta: f64,
    /// Evaluation of the global encoder on a labeled set the server holds (optional).
    #[serde(default)]
    pub eval: Option<ServerEvalConfig>,
    /// Ask sites holding labels to evaluate the global model every this many rounds
    /// (federated evaluation; 0 = never).
    #[serde(default)]
    pub federated_eval_every: u64,
    /// Central DP at the server (DP-FedAvg), for deployments that trust the server but
    /// publish the model; absent = off.
    #[serde(default)]
    pub central_dp: Option<CentralDpConfig>,
    /// Fewest accepted updates a round needs to commit. Below it at the deadline the
    /// round is extended (see `max_round_extensions`), then recorded as failed with the
    /// reason, and the model version does not advance. Default 1; 0 under `[central_dp]`,
    /// whose release must not depend on how many sites answered.
    #[serde(default)]
    pub min_updates: Option<usize>,
    /// How many times a round short of `min_updates` at its deadline is extended by another
    /// `round_deadline_secs` (topped up with connected sites not yet selected) before it fails.
    #[serde(default = "d_extensions")]
    pub max_round_extensions: u32,
    /// Prometheus `/metrics` and `/healthz` over HTTP (`[metrics] listen = "127.0.0.1:9100"`);
    /// absent: none.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
}

impl ServerConfig {
    /// A server on `listen` with `run_dir` and `tls`, every other field at the default a
    /// config file gets when it leaves the key out.
    pub fn new(listen: SocketAddr, run_dir: PathBuf, tls: TlsFiles) -> Self {
        Self {
            listen,
            run_dir,
            tls,
            rounds: d_rounds(),
            min_clients: d_min_clients(),
            sample_fraction: d_fraction(),
            round_deadline_secs: d_deadline(),
            wait_for_clients_secs: d_wait(),
            idle_timeout_secs: d_idle(),
            max_frame_bytes: d_frame(),
            max_connections: d_conns(),
            plan: PlanConfig::default(),
            delta: d_delta(),
            eval: None,
            federated_eval_every: 0,
            central_dp: None,
            min_updates: None,
            max_round_extensions: d_extensions(),
            metrics: None,
        }
    }
}

/// The HTTP listener for Prometheus and health checks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// TCP address of the HTTP listener. It has no authentication: bind it to loopback or
    /// a monitoring network, not to the sites' network.
    pub listen: SocketAddr,
}

/// `[central_dp]` in server.toml: DP-FedAvg (McMahan et al. 2018). Each round the server
/// selects each connected site independently with probability `sample_rate` (from an
/// OS-seeded generator), clips each accepted update to `clip_norm`, sums them with equal
/// weights, adds Gaussian noise of standard deviation `noise_multiplier · clip_norm`, and
/// divides by the expected number of sites. The ε it reports is per site, and holds only if
/// the server is honest: the sites' raw updates reach it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralDpConfig {
    /// Noise multiplier z of the sum of clipped updates.
    pub noise_multiplier: f64,
    /// The (initial, with `adaptive`) L2 bound C of one site's update.
    pub clip_norm: f64,
    /// Poisson rate q at which each connected site is selected per round.
    #[serde(default = "d_central_rate")]
    pub sample_rate: f64,
    /// Adaptive clipping (absent = a fixed `clip_norm`).
    #[serde(default)]
    pub adaptive: Option<AdaptiveClipConfig>,
}

fn d_central_rate() -> f64 {
    1.0
}

pub use fedssl_privacy::plan::AdaptiveClipConfig;

impl CentralDpConfig {
    /// Checks ranges, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        let pos = |v: f64| v.is_finite() && v > 0.0;
        if !pos(self.noise_multiplier) {
            bail!(
                "central_dp.noise_multiplier must be positive (zero noise is no DP), got {}",
                self.noise_multiplier
            );
        }
        if !pos(self.clip_norm) {
            bail!(
                "central_dp.clip_norm must be positive, got {}",
                self.clip_norm
            );
        }
        if !(pos(self.sample_rate) && self.sample_rate <= 1.0) {
            bail!(
                "central_dp.sample_rate must be in (0, 1], got {}",
                self.sample_rate
            );
        }
        if let Some(a) = self.adaptive {
            a.validate("central_dp.adaptive")
                .map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }
}

/// A labeled evaluation set on the server, and how often to use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEvalConfig {
    /// IDX folder or CSV source of the plan's shape; absent = the generated default data.
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// Labeled samples (from the dataset's training split) that fit the probe and form
    /// the kNN memory bank.
    #[serde(default = "d_eval_train")]
    pub train_samples: usize,
    /// Samples (from the test split) the probe and kNN are scored on; collapse monitors
    /// use them too.
    #[serde(default = "d_eval_test")]
    pub test_samples: usize,
    /// Probe and kNN every this many rounds and after the last (0 = only after the last);
    /// collapse monitors run every round.
    #[serde(default = "d_eval_every")]
    pub every: u64,
}

fn d_eval_train() -> usize {
    2000
}
fn d_eval_test() -> usize {
    1000
}
fn d_eval_every() -> u64 {
    1
}

fn d_rounds() -> u64 {
    5
}
fn d_min_clients() -> usize {
    2
}
fn d_fraction() -> f64 {
    1.0
}
fn d_deadline() -> f64 {
    300.0
}
fn d_wait() -> f64 {
    600.0
}
fn d_idle() -> f64 {
    30.0
}
fn d_frame() -> usize {
    DEFAULT_MAX_FRAME
}
fn d_conns() -> usize {
    1024
}
fn d_delta() -> f64 {
    1e-5
}
fn d_extensions() -> u32 {
    1
}

impl ServerConfig {
    /// Makes the relative paths (run folder, TLS files, evaluation data) relative to
    /// `base`, the config file's folder.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        use fedssl_core::resolve_path;
        resolve_path(base, &mut self.run_dir);
        resolve_path(base, &mut self.tls.ca);
        resolve_path(base, &mut self.tls.cert);
        resolve_path(base, &mut self.tls.key);
        if let Some(c) = &mut self.tls.crl {
            resolve_path(base, c);
        }
        if let Some(d) = self.eval.as_mut().and_then(|e| e.data.as_mut()) {
            resolve_path(base, d);
        }
    }

    /// The fewest accepted updates a round needs (see `min_updates`).
    pub fn effective_min_updates(&self) -> usize {
        self.min_updates
            .unwrap_or(if self.central_dp.is_some() { 0 } else { 1 })
    }

    /// Checks ranges, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(c) = &self.central_dp {
            c.validate()?;
        }
        if self.rounds == 0 {
            bail!("rounds must be at least 1");
        }
        if self.min_clients == 0 {
            bail!("min_clients must be at least 1");
        }
        match (self.min_updates, &self.central_dp) {
            (Some(m), Some(_)) if m > 0 => bail!(
                "min_updates = {m} cannot be used with [central_dp]: central DP releases a noised \
                 sum every round whatever the number of sites that answered, and holding a round \
                 back for lack of updates would make the release depend on that number; remove \
                 min_updates"
            ),
            (Some(m), None) if m > self.min_clients => bail!(
                "min_updates = {m} exceeds min_clients = {}: a round could never commit; \
                 lower min_updates or raise min_clients",
                self.min_clients
            ),
            _ => {}
        }
        if !(self.sample_fraction > 0.0 && self.sample_fraction <= 1.0) {
            bail!(
                "sample_fraction must be in (0, 1], got {}",
                self.sample_fraction
            );
        }
        if !(self.round_deadline_secs.is_finite() && self.round_deadline_secs > 0.0) {
            bail!("round_deadline_secs must be positive");
        }
        if !(self.idle_timeout_secs.is_finite() && self.idle_timeout_secs >= 1.0) {
            bail!("idle_timeout_secs must be at least 1");
        }
        if self.max_frame_bytes < 1024 {
            bail!("max_frame_bytes must be at least 1024");
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            bail!("delta must be in (0, 1), got {}", self.delta);
        }
        if let Some(e) = &self.eval {
            if e.train_samples < 10 || e.test_samples < 10 {
                bail!("eval.train_samples and eval.test_samples must be at least 10");
            }
        }
        self.plan
            .strategy
            .validate(self.plan.privacy.mechanism, self.central_dp.is_some())?;
        self.plan.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan from `toml_text` under client-level DP: these tests check how modality,
    /// encoder, objective and federation fit together, and every objective runs client-level
    /// (DP-SGD's refusals are tested in `dp::plan` and the trainer).
    fn plan(toml_text: &str) -> PlanConfig {
        toml::from_str(&format!(
            "{toml_text}\n[privacy]\nmechanism = \"client-level\"\n"
        ))
        .unwrap()
    }

    fn plan_error(toml_text: &str) -> String {
        plan(toml_text).validate().unwrap_err().to_string()
    }

    const SERIES: &str = "[data.series]\nchannels = 6\nlength = 64\n";

    #[test]
    fn modality_encoder_and_objective_combinations_are_checked_by_field() {
        let p = plan(&format!("objective = \"cpc\"\n{SERIES}"));
        p.validate().unwrap();
        assert_eq!(p.model_spec().encoder, EncoderConfig::Cnn1d { width: 32 });
        let p = plan(
            "objective = \"clip\"\n[data.tabular]\nfeatures = 16\n[encoder.mlp]\nhidden = 64\n",
        );
        p.validate().unwrap();
        assert_eq!(p.model_spec().split, 8);
        let e = plan_error(&format!("{SERIES}[encoder.mlp]\nhidden = 64\n"));
        assert!(e.contains("plan.encoder") && e.contains("cnn1d"), "{e}");
        let e = plan_error("objective = \"cpc\"");
        assert!(
            e.contains("plan.objective") && e.contains("time series"),
            "{e}"
        );
        let e = plan_error("objective = \"clip\"");
        assert!(e.contains("plan.objective"), "{e}");
        // The plan's settings, not the defaults, decide the fit, and the model builds with
        // them (24 steps in the default 8 segments would be too short; in 4 they are not).
        let p = plan(
            "objective = \"cpc\"\n[data.series]\nchannels = 6\nlength = 24\n[cpc]\nsegments = 4\n",
        );
        p.validate().unwrap();
        p.model_spec().initial_global(1).unwrap();
        let e = plan_error(&format!(
            "objective = \"cpc\"\n{SERIES}[cpc]\nsegments = 5\n"
        ));
        assert!(e.contains("plan.cpc.segments"), "{e}");
        let e = plan_error("objective = \"byol\"\n[federation.fedu]\nthreshold = 1.0\n");
        assert!(e.contains("plan.federation"), "{e}");
        plan("objective = \"byol\"\n[parts]\npredictor = \"global\"\n[federation.fedu]\nthreshold = 1.0\n")
            .validate()
            .unwrap();
        let e = plan_error("[federation.fedema]\ntau = 2.0\n");
        assert!(e.contains("plan.federation.tau"), "{e}");
        // Under the default DP-SGD, CPC's in-batch InfoNCE is refused with the reason.
        let p: PlanConfig = toml::from_str(&format!("objective = \"cpc\"\n{SERIES}")).unwrap();
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("DP-SGD") && e.contains("client-level"), "{e}");
    }

    #[test]
    fn every_plan_survives_the_wire_format() {
        // The round plan travels as bincode, which cannot carry serde's tagged enums.
        let texts = [
            format!("objective = \"cpc\"\n{SERIES}[federation.fedema]\ntau = 0.5\n"),
            "objective = \"byol\"\n[parts]\npredictor = \"global\"\nbatch_norm = \"local\"\n[federation.fedu]\nthreshold = 1.0\n".into(),
            "objective = \"denoising\"\n[data.tabular]\nfeatures = 16\n".into(),
        ];
        for t in texts {
            let rp = plan(&t).plan(3);
            let bytes = bincode::serde::encode_to_vec(&rp, bincode::config::standard()).unwrap();
            let (back, _): (RoundPlan, usize) =
                bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
            assert_eq!(back, rp);
        }
    }

    #[test]
    fn objective_and_vicreg_coefficients_parse_and_validate() {
        let p: PlanConfig = toml::from_str("objective = \"simsiam\"").unwrap();
        assert_eq!(p.objective, ObjectiveKind::SimSiam);
        assert!(p.validate().is_ok());
        let p: PlanConfig =
            toml::from_str("objective = \"vicreg\"\n[vicreg]\ninvariance = 10.0").unwrap();
        assert_eq!((p.vicreg.invariance, p.vicreg.variance), (10.0, 25.0));
        let bad: PlanConfig =
            toml::from_str("objective = \"vicreg\"\n[vicreg]\nvariance = -1.0").unwrap();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("plan.vicreg"), "{e}");
        let e = toml::from_str::<PlanConfig>("objective = \"bogus\"").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    const SERVER: &str = r#"
listen = "0.0.0.0:4433"
run_dir = "/var/lib/fedssl/run1"
rounds = 20
federated_eval_every = 5
[tls]
ca = "certs/ca.pem"
cert = "certs/server.pem"
key = "certs/server.key"
[eval]
train_samples = 500
every = 5
[plan.privacy]
noise_multiplier = 1.0
"#;

    #[test]
    fn the_readme_server_config_with_evaluation_parses_and_validates() {
        let cfg: ServerConfig = toml::from_str(SERVER).unwrap();
        cfg.validate().unwrap();
        let e = cfg.eval.as_ref().unwrap();
        assert_eq!((e.train_samples, e.test_samples, e.every), (500, 1000, 5));
        assert_eq!(e.data, None);
        assert_eq!(cfg.federated_eval_every, 5);
        assert_eq!(cfg.plan.privacy.noise_multiplier, Some(1.0));
        assert_eq!(cfg.plan.batch_size, 128, "unset plan fields take defaults");
    }

    #[test]
    fn invalid_or_unknown_fields_are_named() {
        let bad = SERVER.replace("train_samples = 500", "train_samples = 5");
        let err = toml::from_str::<ServerConfig>(&bad)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("eval.train_samples"), "{err}");
        let typo = SERVER.replace("every = 5", "evry = 5");
        let err = toml::from_str::<ServerConfig>(&typo).unwrap_err();
        assert!(err.to_string().contains("evry"), "{err}");
    }
}
