//! Measuring representations: feature extraction and the linear probe.

pub mod features;
pub mod linear_probe;

pub use features::{encode_with_weights, extract_features};
pub use linear_probe::{linear_probe, ProbeConfig, ProbeResult};
