//! Messages exchanged between clients and the server.

use fedssl_core::federation::Federation;
use fedssl_core::spec::ModelSpec;
use fedssl_core::spec::{AugmentSettings, Objective};
use serde::{Deserialize, Serialize};

use super::tensors::ModelPayload;

/// A request from a client. Each request opens its own bidirectional stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First message of every connection.
    Hello(Hello),
    /// Long poll: "give me work for a round after `after_round`".
    NextTask {
        /// The last round this client finished (0 if none).
        after_round: u64,
    },
    /// A clipped and noised model update for a round.
    Upload(Box<Upload>),
    /// The client will not take part in a round (e.g. its privacy budget would be exceeded).
    Decline {
        /// Round declined.
        round: u64,
        /// Nonce of the task declined.
        nonce: u64,
        /// Human-readable reason, recorded by the server.
        reason: String,
    },
    /// Ask for the latest global model.
    FetchModel,
}

/// The handshake a client opens every connection with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal [`crate::PROTOCOL_VERSION`] on both sides.
    pub protocol_version: u32,
    /// The client's software version (diagnostics only).
    pub software_version: String,
    /// Capabilities, e.g. `"simclr"`, `"dp-gaussian"`, `"cuda"`.
    pub capabilities: Vec<String>,
    /// The name the client says it has. Only informational: the server uses the name in
    /// the client certificate and refuses a claim that differs from it.
    pub claimed_name: String,
    /// Number of local training samples, when the site discloses it (`[report]
    /// sample_count`); the server weighs sites by it only without DP.
    pub num_samples: Option<u64>,
}

/// A client's update for one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    /// Round the update belongs to.
    pub round: u64,
    /// Nonce of the task it answers (guards against replays of older uploads).
    pub nonce: u64,
    /// Hash of the global model the update was computed from.
    pub base_model_hash: String,
    /// The update (local − global), privatized as the plan's mechanism says.
    pub update: ModelPayload,
    /// Plain figures the site chose to disclose next to its update (outside any ε; under
    /// a DP mechanism nothing unless the site opted in with `[report]`).
    pub report: SiteReport,
}

/// Figures computed on a site's private data that it chose to disclose in plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct SiteReport {
    /// Number of local training samples.
    pub num_samples: Option<u64>,
    /// Mean self-supervised loss over the local steps.
    pub mean_loss: Option<f32>,
    /// The site's ε per its budget's unit after this round (from its own ledger).
    pub epsilon: Option<f64>,
    /// Local wall-clock seconds for training and privatization.
    pub train_seconds: Option<f64>,
    /// Collapse monitors of the locally trained encoder on local samples.
    pub collapse: Option<LocalCollapse>,
    /// The site's evaluation of the task's global model on its own labels.
    pub site_eval: Option<SiteEval>,
    /// Client-level adaptive clipping: the site's indicator "my update was within the
    /// plan's C" plus its own Gaussian noise, charged to its ledger (so not an opt-in figure).
    pub clip_count: Option<f32>,
}

impl SiteReport {
    /// Names of the figures present (for reports that list what left a site outside ε).
    pub fn disclosed(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut add = |present: bool, name| {
            if present {
                v.push(name)
            }
        };
        add(self.num_samples.is_some(), "sample_count");
        add(self.mean_loss.is_some(), "loss");
        add(self.epsilon.is_some(), "epsilon");
        add(self.train_seconds.is_some(), "train_seconds");
        add(self.collapse.is_some(), "collapse");
        add(self.site_eval.is_some(), "site_eval");
        v
    }
}

/// Collapse monitors of a locally trained encoder.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LocalCollapse {
    /// `std · √d` of the L2-normalized embeddings of local samples (≈ 1 healthy, → 0 collapsed).
    pub std_ratio: f32,
    /// Effective rank of the embeddings' second-moment matrix (1 ..= d).
    pub effective_rank: f32,
}

/// Federated evaluation: a site probes the global model on its few local labels and reports
/// only the accuracies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SiteEval {
    /// Linear-probe test accuracy on the site's held-out labeled samples.
    pub probe_accuracy: f32,
    /// Weighted-kNN test accuracy on the same samples.
    pub knn_accuracy: f32,
    /// Labeled samples the probe trained on.
    pub train_samples: u32,
    /// Labeled samples it was tested on.
    pub test_samples: u32,
}

/// A response from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// Answer to [`ClientMsg::Hello`].
    Welcome(Welcome),
    /// Work for one round.
    Task(Box<Task>),
    /// Nothing to do yet; ask again.
    Wait {
        /// Suggested delay before the next poll.
        retry_after_ms: u64,
    },
    /// Training is over.
    Finished {
        /// Last round committed.
        last_round: u64,
        /// Hash of the final global model.
        model_hash: String,
    },
    /// The update is stored (durably) and will be aggregated.
    UploadAccepted {
        /// Round of the update.
        round: u64,
        /// True if this exact update had been accepted before (an idempotent resend).
        duplicate: bool,
    },
    /// A decline was recorded.
    DeclineNoted {
        /// Round declined.
        round: u64,
    },
    /// The latest global model.
    Model {
        /// Round that produced it (0 = initial model).
        version: u64,
        /// The weights.
        model: ModelPayload,
    },
    /// The request was refused.
    Error(ProtocolError),
}

/// The server's answer to a valid handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// Server protocol version.
    pub protocol_version: u32,
    /// Server software version.
    pub software_version: String,
    /// The client's identity, as read from its certificate.
    pub client_name: String,
    /// Last committed round.
    pub committed_round: u64,
    /// Total rounds of the run.
    pub total_rounds: u64,
}

/// One round's work for one client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Round id (1-based).
    pub round: u64,
    /// Random nonce the upload must echo.
    pub nonce: u64,
    /// Hyper-parameters of the round.
    pub plan: RoundPlan,
    /// The current global encoder.
    pub model: ModelPayload,
}

/// Hyper-parameters of a round, chosen by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundPlan {
    /// Local passes over the client's data.
    pub local_epochs: u32,
    /// Mini-batch size (pairs of views).
    pub batch_size: u32,
    /// Learning rate of the local optimizer.
    pub learning_rate: f64,
    /// NT-Xent temperature.
    pub temperature: f64,
    /// The privacy mechanism and its parameters.
    pub privacy: fedssl_privacy::plan::PrivacyPlan,
    /// Seed for the round's augmentations and shuffling (mixed with the client name).
    pub seed: u64,
    /// Sites holding labels evaluate the task's global model and report the accuracy.
    pub evaluate: bool,
    /// The model every site trains: data shape, encoder, objective with its settings,
    /// global and local parts.
    pub model: ModelSpec,
    /// The augmentations of every modality.
    pub augment: AugmentSettings,
    /// How sites merge the global model into their own.
    pub federation: Federation,
    /// FedProx: μ of the proximal term μ/2·‖w − w_global‖² the site adds to its local
    /// objective (0: none).
    pub proximal_mu: f64,
}

/// Largest `local_epochs` a plan may ask for.
pub const MAX_LOCAL_EPOCHS: u32 = 1000;
/// Largest `batch_size` a plan may ask for.
pub const MAX_BATCH_SIZE: u32 = 65_536;

impl RoundPlan {
    /// Checks every range a site relies on before it trains: epochs, batch, learning rate,
    /// temperature, FedProx μ, the objective's settings, the federation and the privacy
    /// plan. The server checks its configuration with it, and a site checks the plan of
    /// every task, so a plan no honest server sends is refused with the field it breaks.
    /// Errors name the field as it appears under `[plan]`.
    pub fn validate(&self) -> Result<(), String> {
        if self.local_epochs == 0 || self.local_epochs > MAX_LOCAL_EPOCHS {
            return Err(format!(
                "local_epochs must be in 1..={MAX_LOCAL_EPOCHS}, got {}",
                self.local_epochs
            ));
        }
        if self.batch_size < 2 || self.batch_size > MAX_BATCH_SIZE {
            return Err(format!(
                "batch_size must be in 2..={MAX_BATCH_SIZE} (contrastive learning needs pairs), got {}",
                self.batch_size
            ));
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate < 10.0)
        {
            return Err(format!(
                "learning_rate must be in (0, 10), got {}",
                self.learning_rate
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(format!(
                "temperature must be positive, got {}",
                self.temperature
            ));
        }
        if !(self.proximal_mu.is_finite() && self.proximal_mu >= 0.0) {
            return Err(format!(
                "strategy.mu (FedProx) must be finite and ≥ 0, got {}",
                self.proximal_mu
            ));
        }
        self.model.objective.validate()?;
        self.federation.validate()?;
        self.privacy.validate()
    }

    /// The self-supervised objective every site trains.
    pub fn objective(&self) -> Objective {
        self.model.objective
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtocolError {
    /// Machine-readable category.
    pub code: ErrorCode,
    /// What went wrong and what to do.
    pub message: String,
}

/// Categories of refusal.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    VersionMismatch,
    HelloRequired,
    NameMismatch,
    Malformed,
    Oversized,
    StaleRound,
    UnknownNonce,
    NotSelected,
    WrongBaseModel,
    ShapeMismatch,
    HashMismatch,
    NonFinite,
    NormTooLarge,
    Internal,
    /// A client-level update whose norm is below what its plan's noise alone gives.
    NoiseMissing,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl ServerMsg {
    /// Shorthand for an error response.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMsg::Error(ProtocolError {
            code,
            message: message.into(),
        })
    }
}
