//! Frozen-encoder feature extraction on the CPU backend.

use crate::kernels::Kernels;
use burn::backend::Flex;
use burn::prelude::*;

use crate::data::Dataset;
use crate::model::{BnMode, ConvNetS, ConvNetSConfig, Weights, IMAGE_PIXELS, IMAGE_SIDE};

/// Images `start..end` of `data` as a `[N, 1, 28, 28]` tensor.
pub fn batch_tensor<B: Backend>(
    data: &Dataset,
    start: usize,
    end: usize,
    dev: &B::Device,
) -> Tensor<B, 4> {
    let v = data.images[start * IMAGE_PIXELS..end * IMAGE_PIXELS].to_vec();
    Tensor::from_data(
        TensorData::new(v, [end - start, 1, IMAGE_SIDE, IMAGE_SIDE]),
        dev,
    )
}

/// Sets every BatchNorm's running statistics to the mean over batches of `data`
/// (the encoder's owner does this on its own data; statistics never travel).
pub fn calibrate_bn<B: Kernels>(enc: &ConvNetS<B>, data: &Dataset, batch: usize, dev: &B::Device) {
    let n = data.len().min(4096);
    let mut t = 0usize;
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        if end - start >= 2 {
            let m = 1.0 / (t as f64 + 1.0);
            let _ = enc.forward(
                batch_tensor::<B>(data, start, end, dev),
                BnMode::Calibrate(m),
            );
            t += 1;
        }
        start = end;
    }
}

/// `[N × dim]` features of `data` in evaluation mode.
pub fn extract_features<B: Kernels>(
    enc: &ConvNetS<B>,
    data: &Dataset,
    batch: usize,
    dev: &B::Device,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() * enc.output_dim());
    let mut start = 0;
    while start < data.len() {
        let end = (start + batch).min(data.len());
        let f = enc.forward(batch_tensor::<B>(data, start, end, dev), BnMode::Eval);
        out.extend(f.into_data().to_vec::<f32>().unwrap_or_default());
        start = end;
    }
    out
}

/// Loads `weights` into a fresh ConvNet-S on the CPU, calibrates BatchNorm on `calibration`,
/// and returns the features of each dataset in `sets`.
pub fn encode_with_weights(
    weights: Option<&Weights>,
    init_seed: u64,
    calibration: &Dataset,
    sets: &[&Dataset],
) -> anyhow::Result<Vec<Vec<f32>>> {
    let dev = Default::default();
    <Flex as Backend>::seed(&dev, init_seed);
    let mut enc = ConvNetSConfig::default().init::<Flex>(&dev);
    if let Some(w) = weights {
        enc = w.load_into(enc)?;
    }
    calibrate_bn(&enc, calibration, 256, &dev);
    Ok(sets
        .iter()
        .map(|d| extract_features(&enc, d, 256, &dev))
        .collect())
}
