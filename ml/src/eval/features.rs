//! Frozen-encoder feature extraction on the CPU backend.

use crate::kernels::{Kernels, Ops};
use crate::prelude::*;
use burn::backend::Flex;
use burn::prelude::*;

use crate::data::Dataset;
use crate::model::{BnMode, ModelSpec, Weights};
use crate::ssl::objective::tensor2;
use crate::ssl::SslModel;

/// Samples `start..end` of `data` as a flat `[N, D]` tensor.
pub fn batch_tensor<B: Backend>(
    data: &Dataset,
    start: usize,
    end: usize,
    dev: &B::Device,
) -> Tensor<B, 2> {
    let d = data.dim();
    let v = data.samples[start * d..end * d].to_vec();
    tensor2(v, end - start, d, dev)
}

/// Sets every BatchNorm's running statistics of the encoder (both towers) to the mean over
/// batches of `data` (the encoder's owner does this on its own data; statistics never
/// travel).
pub fn calibrate_bn<B: Kernels>(
    model: &SslModel<B>,
    data: &Dataset,
    batch: usize,
    dev: &B::Device,
) {
    let n = data.len().min(4096);
    let mut t = 0usize;
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        if end - start >= 2 {
            let m = 1.0 / (t as f64 + 1.0);
            let _ = model.represent(
                batch_tensor::<B>(data, start, end, dev),
                BnMode::Calibrate(m),
                Ops::Kernels,
            );
            t += 1;
        }
        start = end;
    }
}

/// `[N × dim]` representations of `data` in evaluation mode.
pub fn extract_features<B: Kernels>(
    model: &SslModel<B>,
    data: &Dataset,
    batch: usize,
    dev: &B::Device,
) -> Vec<f32> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let end = (start + batch).min(data.len());
        let f = model.represent(
            batch_tensor::<B>(data, start, end, dev),
            BnMode::Eval,
            Ops::Kernels,
        );
        out.extend(f.into_data().to_vec::<f32>().unwrap_or_default());
        start = end;
    }
    out
}

/// A fresh model of `spec` on the CPU (initialized from `init_seed`), with `weights` (global
/// weights of `spec`'s model) loaded when given, and BatchNorm calibrated on `calibration`
/// when given.
pub fn model_with_weights(
    spec: &ModelSpec,
    weights: Option<&Weights>,
    init_seed: u64,
    calibration: Option<&Dataset>,
) -> anyhow::Result<SslModel<Flex>> {
    let dev = Default::default();
    let mut model = spec
        .init_seeded::<Flex>(&dev, init_seed)
        .map_err(anyhow::Error::msg)?;
    if let Some(w) = weights {
        model = w.load_into(model)?;
    }
    if let Some(c) = calibration {
        calibrate_bn(&model, c, 256, &dev);
    }
    Ok(model)
}

/// Loads `weights` (global weights of `spec`'s model) into a fresh model on the CPU,
/// calibrates BatchNorm on `calibration`, and returns the representations of each dataset
/// in `sets`.
pub fn encode_with_weights(
    spec: &ModelSpec,
    weights: Option<&Weights>,
    init_seed: u64,
    calibration: &Dataset,
    sets: &[&Dataset],
) -> anyhow::Result<Vec<Vec<f32>>> {
    let model = model_with_weights(spec, weights, init_seed, Some(calibration))?;
    let dev = Default::default();
    Ok(sets
        .iter()
        .map(|d| extract_features(&model, d, 256, &dev))
        .collect())
}
