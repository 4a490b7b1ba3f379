//! Measuring representations: feature extraction, linear probe, weighted kNN,
//! label-efficiency subsets, fine-tuning / supervised baselines, collapse monitors and
//! zero-shot classification by caption;
//! [`scores`] bundles probe, kNN and fraction probes for every evaluator.

pub mod collapse;
pub mod features;
pub mod finetune;
pub mod knn;
pub mod linalg;
pub mod linear_probe;
pub mod scores;
pub mod subsets;
pub mod zero_shot;

pub use collapse::{collapse_metrics, init_rank, CollapseMetrics};
pub use features::{encode_with_weights, extract_features, model_with_weights};
pub use finetune::{finetune, FinetuneConfig, FinetuneResult};
pub use knn::{knn_accuracy, KnnConfig};
pub use linear_probe::{linear_probe, ProbeConfig, ProbeResult};
pub use scores::{FeatureScores, Labels, Scorer};
pub use subsets::balanced_subset;
