//! Models people can use elsewhere: what a checkpoint holds ([`checkpoint_spec`]) and
//! `fedssl export --format torch`, which writes the encoder for PyTorch:
//!
//! - `encoder.safetensors`: the encoder's tensors under PyTorch's names and layouts
//!   (`weight`/`bias` for BatchNorm's γ/β, `running_mean`/`running_var`/
//!   `num_batches_tracked` buffers, `[out, in, k]` kernels for the 1-D CNN, `[out, in]`
//!   linear weights), loadable with `load_state_dict(strict=True)`;
//! - `fedssl_encoder.py`: a small module that defines the same network (`Encoder()`), with
//!   its layer list embedded, and `load(folder)`;
//! - `reference.safetensors`: 64 inputs and the features fedssl computes for them, to check
//!   a port (`tests/python/check_torch_export.py` does);
//! - `README.md`: what the files are and the model they hold.
//!
//! BatchNorm statistics never leave a site, so a checkpoint holds none: the exporter
//! calibrates them on its own data (`--data`, or the modality's generated set) and writes
//! them where PyTorch keeps them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use fedssl_core::read_toml;
use fedssl_ml::model::{EncoderConfig, ModelSpec, Weights};
use fedssl_server::config::PlanConfig;

/// The model a checkpoint holds: the spec in its metadata (what every server checkpoint
/// carries), checked against `plan` when both are given; `plan` alone for a file that does
/// not describe itself; else the default model, with a warning.
pub fn checkpoint_spec(model: &Path, plan: Option<&Path>) -> anyhow::Result<ModelSpec> {
    spec_from(&fedssl_core::weights::read_metadata(model)?, model, plan)
}

/// [`checkpoint_spec`] from the metadata `meta` already read from `model`.
fn spec_from(
    meta: &std::collections::HashMap<String, String>,
    model: &Path,
    plan: Option<&Path>,
) -> anyhow::Result<ModelSpec> {
    let own = match meta.get("fedssl.spec") {
        Some(text) => Some(serde_json::from_str::<ModelSpec>(text).with_context(|| {
            format!(
                "{}: its fedssl.spec metadata cannot be read (written by another version?); \
                 pass --plan",
                model.display()
            )
        })?),
        None => None,
    };
    let given = match plan {
        Some(p) => Some(read_toml::<PlanConfig>(p, "plan")?.model_spec()),
        None => None,
    };
    Ok(match (given, own) {
        (Some(g), Some(o)) if g != o => anyhow::bail!(
            "--plan describes another model ({} on {:?}, objective {}) than {} holds ({} on \
             {:?}, objective {}); drop --plan to use the checkpoint's own description",
            g.encoder.name(),
            g.shape,
            g.objective,
            model.display(),
            o.encoder.name(),
            o.shape,
            o.objective
        ),
        (Some(g), _) => g,
        (None, Some(o)) => {
            tracing::info!(
                encoder = o.encoder.name(),
                objective = %o.objective,
                version = meta.get("fedssl.version").map(String::as_str).unwrap_or("?"),
                round = meta.get("fedssl.round").map(String::as_str).unwrap_or("?"),
                "model as the checkpoint describes it"
            );
            o
        }
        (None, None) => {
            tracing::warn!(
                file = %model.display(),
                "the checkpoint does not describe its model (not written by a fedssl \
                 server); assuming ConvNet-S on 28×28 images with SimCLR: pass --plan if it \
                 is another"
            );
            ModelSpec::default()
        }
    })
}

/// `(channels, height, width)` of images, `(channels, 1, length)` of series: the layouts the
/// exported convolutional encoders take.
fn chw(shape: fedssl_ml::data::SampleShape) -> anyhow::Result<(usize, usize, usize)> {
    use fedssl_ml::data::SampleShape;
    match shape {
        SampleShape::Image {
            channels,
            height,
            width,
        } => Ok((channels, height, width)),
        SampleShape::Series { channels, length } => Ok((channels, 1, length)),
        other => anyhow::bail!(
            "export --format torch writes image and time-series encoders; this model takes {}",
            other.modality()
        ),
    }
}

/// What `export` wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The output folder.
    pub out: PathBuf,
    /// Tensors in `encoder.safetensors`.
    pub tensors: usize,
    /// Parameters (BatchNorm buffers excluded).
    pub parameters: usize,
    /// Samples the BatchNorm statistics were calibrated on (0 without BatchNorm).
    pub calibrated_on: usize,
}

/// One tensor of the PyTorch state dict.
struct TorchTensor {
    name: String,
    shape: Vec<usize>,
    data: TorchData,
}

enum TorchData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl TorchTensor {
    fn bytes(&self) -> Vec<u8> {
        match &self.data {
            TorchData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TorchData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    fn dtype(&self) -> safetensors::Dtype {
        match self.data {
            TorchData::F32(_) => safetensors::Dtype::F32,
            TorchData::I64(_) => safetensors::Dtype::I64,
        }
    }
}

fn write_safetensors(path: &Path, tensors: &[TorchTensor]) -> anyhow::Result<()> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(TorchTensor::bytes).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            safetensors::tensor::TensorView::new(t.dtype(), t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let data = safetensors::serialize(views, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    fedssl_core::atomic_write(path, &data)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The encoder's tensors (BatchNorm statistics included) under PyTorch's names and layouts.
fn torch_state(full: &Weights, one_d: bool) -> Vec<TorchTensor> {
    let mut out = vec![];
    for t in &full.tensors {
        let Some(name) = t.name.strip_prefix("encoder.") else {
            continue;
        };
        let (mut name, mut shape, mut values) =
            (name.to_string(), t.shape.clone(), t.values.clone());
        if let Some(stem) = name.strip_suffix(".gamma") {
            name = format!("{stem}.weight");
        } else if let Some(stem) = name.strip_suffix(".beta") {
            name = format!("{stem}.bias");
        }
        if one_d && name.ends_with("conv.weight") && shape.len() == 4 && shape[2] == 1 {
            // [out, in, 1, k] → Conv1d's [out, in, k].
            shape = vec![shape[0], shape[1], shape[3]];
        }
        if name == "head.weight" && shape.len() == 2 {
            // burn's Linear keeps [in, out]; PyTorch's [out, in].
            let (i, o) = (shape[0], shape[1]);
            let mut tr = vec![0f32; values.len()];
            for r in 0..i {
                for c in 0..o {
                    tr[c * i + r] = values[r * o + c];
                }
            }
            values = tr;
            shape = vec![o, i];
        }
        let counter = name
            .strip_suffix(".running_var")
            .map(|stem| format!("{stem}.num_batches_tracked"));
        out.push(TorchTensor {
            name,
            shape,
            data: TorchData::F32(values),
        });
        if let Some(n) = counter {
            out.push(TorchTensor {
                name: n,
                shape: vec![],
                data: TorchData::I64(vec![0]),
            });
        }
    }
    out
}

fn shape_of<'a>(state: &'a [TorchTensor], name: &str) -> Option<&'a [usize]> {
    state
        .iter()
        .find(|t| t.name == name)
        .map(|t| t.shape.as_slice())
}

/// A conv → norm layer for the Python module: `{"cin", "cout", "k", "stride", "norm",
/// "groups"}`.
fn layer(state: &[TorchTensor], prefix: &str, stride: usize) -> anyhow::Result<serde_json::Value> {
    let w = shape_of(state, &format!("{prefix}.conv.weight"))
        .with_context(|| format!("the checkpoint has no {prefix}.conv.weight"))?;
    let norm = if shape_of(state, &format!("{prefix}.bn.weight")).is_some() {
        "batch"
    } else if shape_of(state, &format!("{prefix}.gn.weight")).is_some() {
        "group"
    } else {
        "none"
    };
    Ok(serde_json::json!({
        "cin": w[1],
        "cout": w[0],
        "k": w[w.len() - 1],
        "stride": stride,
        "norm": norm,
        "groups": fedssl_ml::model::groupnorm::groups_for(w[0]),
    }))
}

/// The layer list the Python module builds (see `fedssl_encoder.py`).
fn torch_config(spec: &ModelSpec, state: &[TorchTensor]) -> anyhow::Result<serde_json::Value> {
    let strides = fedssl_ml::model::convnet::CONVNET_STRIDES;
    let (c, h, w) = chw(spec.shape)?;
    Ok(match spec.encoder {
        EncoderConfig::ConvnetS | EncoderConfig::Cnn1d { .. } => {
            let one_d = matches!(spec.encoder, EncoderConfig::Cnn1d { .. });
            let blocks = (0..strides.len())
                .map(|i| layer(state, &format!("blocks.{i}"), strides[i]))
                .collect::<anyhow::Result<Vec<_>>>()?;
            serde_json::json!({
                "kind": "convnet",
                "dims": if one_d { 1 } else { 2 },
                "input": if one_d { vec![c, w] } else { vec![c, h, w] },
                "eps": 1e-5,
                "blocks": blocks,
            })
        }
        EncoderConfig::Resnet { .. } => {
            let stem_k = shape_of(state, "stem.conv.weight")
                .map(|s| s[3])
                .unwrap_or(3);
            let stem = layer(state, "stem", if stem_k == 7 { 2 } else { 1 })?;
            let mut blocks = vec![];
            for j in 0..8 {
                let stride = if j > 0 && j % 2 == 0 { 2 } else { 1 };
                let p = format!("blocks.{j}");
                let shortcut = if shape_of(state, &format!("{p}.shortcut.conv.weight")).is_some() {
                    layer(state, &format!("{p}.shortcut"), stride)?
                } else {
                    serde_json::Value::Null
                };
                blocks.push(serde_json::json!({
                    "conv1": layer(state, &format!("{p}.conv1"), stride)?,
                    "conv2": layer(state, &format!("{p}.conv2"), 1)?,
                    "shortcut": shortcut,
                }));
            }
            let head = shape_of(state, "head.weight").map(|s| vec![s[1], s[0]]);
            serde_json::json!({
                "kind": "resnet",
                "dims": 2,
                "input": [c, h, w],
                "eps": 1e-5,
                "stem": stem,
                "maxpool": stem_k == 7,
                "blocks": blocks,
                "head": head,
            })
        }
        other => anyhow::bail!(
            "export --format torch supports convnet-s, resnet and cnn1d encoders; this \
             checkpoint's encoder is {}",
            other.name()
        ),
    })
}

/// The PyTorch module (its layer list comes from `config.json`'s text, embedded).
const TORCH_MODULE: &str = r#""""The fedssl encoder in PyTorch, written by `fedssl export --format torch`.

    import fedssl_encoder
    model = fedssl_encoder.load("THIS_FOLDER")   # eval mode, weights and BatchNorm statistics
    features = model(x)   # x: [N, C, H, W] images (or [N, C, L] series) -> [N, 128]

Inputs are what fedssl feeds its encoder: images as values in [0, 1], channel-major.
"""
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = json.loads(r'''@CONFIG@''')


class ConvNorm(nn.Module):
    """A convolution without bias ("same" padding), then BatchNorm or GroupNorm."""

    def __init__(self, c, dims, eps):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        k = c["k"]
        self.conv = conv(c["cin"], c["cout"], k, stride=c["stride"], padding=k // 2, bias=False)
        if c["norm"] == "batch":
            bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
            self.bn = bn(c["cout"], eps=eps)
        elif c["norm"] == "group":
            self.gn = nn.GroupNorm(c["groups"], c["cout"], eps=eps)

    def forward(self, x, relu=True):
        y = self.conv(x)
        if hasattr(self, "bn"):
            y = self.bn(y)
        elif hasattr(self, "gn"):
            y = self.gn(y)
        return F.relu(y) if relu else y


class BasicBlock(nn.Module):
    def __init__(self, b, eps):
        super().__init__()
        self.conv1 = ConvNorm(b["conv1"], 2, eps)
        self.conv2 = ConvNorm(b["conv2"], 2, eps)
        if b["shortcut"] is not None:
            self.shortcut = ConvNorm(b["shortcut"], 2, eps)

    def forward(self, x):
        h = self.conv2(self.conv1(x), relu=False)
        skip = self.shortcut(x, relu=False) if hasattr(self, "shortcut") else x
        return F.relu(h + skip)


class Encoder(nn.Module):
    """Maps inputs to 128-d representations (global average pooling of the last stage)."""

    def __init__(self, config=CONFIG):
        super().__init__()
        self.config = config
        eps = config["eps"]
        if config["kind"] == "convnet":
            self.blocks = nn.ModuleList(ConvNorm(b, config["dims"], eps) for b in config["blocks"])
        else:
            self.stem = ConvNorm(config["stem"], 2, eps)
            self.blocks = nn.ModuleList(BasicBlock(b, eps) for b in config["blocks"])
            if config["head"] is not None:
                self.head = nn.Linear(config["head"][0], config["head"][1])

    def forward(self, x):
        x = x.reshape(x.shape[0], *self.config["input"])
        if self.config["kind"] == "convnet":
            for b in self.blocks:
                x = b(x)
            return x.flatten(2).mean(2)
        x = self.stem(x)
        if self.config["maxpool"]:
            x = F.max_pool2d(x, 3, 2, 1)
        for b in self.blocks:
            x = b(x)
        x = x.flatten(2).mean(2)
        return self.head(x) if hasattr(self, "head") else x


def load(folder=os.path.dirname(os.path.abspath(__file__))):
    """The encoder with the exported weights and BatchNorm statistics, in eval mode."""
    from safetensors.torch import load_file

    model = Encoder()
    model.load_state_dict(load_file(os.path.join(folder, "encoder.safetensors")), strict=True)
    return model.eval()
"#;

/// Writes the encoder of the checkpoint `model` for PyTorch into `out` (see the module
/// documentation). `data` calibrates BatchNorm (default: the modality's generated set).
pub fn export_torch(
    model: &Path,
    plan: Option<&Path>,
    data: Option<&Path>,
    calibration_samples: usize,
    out: &Path,
    seed: u64,
) -> anyhow::Result<Exported> {
    let meta = fedssl_core::weights::read_metadata(model)?;
    let spec = spec_from(&meta, model, plan)?;
    anyhow::ensure!(
        !matches!(spec.objective, fedssl_ml::ssl::Objective::Clip(_)),
        "export --format torch writes single-tower encoders; this checkpoint is cross-modal ({})",
        spec.objective
    );
    let weights = Weights::load(model)?;
    let splits = fedssl_ml::data::load_splits(data, spec.shape, seed)?;
    let calib = splits.train.take(calibration_samples.max(2));
    let m =
        fedssl_ml::eval::features::model_with_weights(&spec, Some(&weights), seed, Some(&calib))
            .with_context(|| format!("{} does not fit the model it describes", model.display()))?;
    use fedssl_ml::model::weights::ModuleWeights;
    let full = Weights::from_module(&m);
    let one_d = matches!(spec.encoder, EncoderConfig::Cnn1d { .. });
    let state = torch_state(&full, one_d);
    let config = torch_config(&spec, &state)?;
    let has_bn = state.iter().any(|t| t.name.ends_with("running_mean"));

    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_safetensors(&out.join("encoder.safetensors"), &state)?;
    let module = TORCH_MODULE.replace("@CONFIG@", &serde_json::to_string_pretty(&config)?);
    fedssl_core::atomic_write(&out.join("fedssl_encoder.py"), module.as_bytes())?;

    // 64 inputs (from the test split) and fedssl's features for them, in eval mode.
    let probe = splits.test.take(64);
    let dev = Default::default();
    let feats = fedssl_ml::eval::features::extract_features(&m, &probe, 64, &dev);
    let n = probe.len();
    let (c, h, w) = chw(spec.shape)?;
    let input_shape = if one_d {
        vec![n, c, w]
    } else {
        vec![n, c, h, w]
    };
    write_safetensors(
        &out.join("reference.safetensors"),
        &[
            TorchTensor {
                name: "inputs".into(),
                shape: input_shape,
                data: TorchData::F32(probe.samples.clone()),
            },
            TorchTensor {
                name: "features".into(),
                shape: vec![n, feats.len() / n.max(1)],
                data: TorchData::F32(feats),
            },
        ],
    )?;
    let parameters = state
        .iter()
        .filter(|t| !t.name.contains("running_") && !t.name.ends_with("num_batches_tracked"))
        .map(|t| t.shape.iter().product::<usize>())
        .sum();
    let readme = format!(
        "# fedssl encoder for PyTorch\n\nFrom `{}` (fedssl {}, round {}): encoder {}, objective {}, \
         input {:?}, {} parameters.\n\n```python\nimport fedssl_encoder\nmodel = fedssl_encoder.load()  \
         # eval mode\nfeatures = model(x)  # [N, 128]\n```\n\n- `encoder.safetensors`: the state dict \
         (`load_state_dict(strict=True)`).\n- `reference.safetensors`: `inputs` and the `features` \
         fedssl computed for them.\n- BatchNorm statistics: {}.\n",
        model.display(),
        meta.get("fedssl.version").map(String::as_str).unwrap_or("?"),
        meta.get("fedssl.round").map(String::as_str).unwrap_or("?"),
        spec.encoder.name(),
        spec.objective,
        spec.shape,
        parameters,
        if has_bn {
            format!(
                "calibrated by the exporter on {} samples of {} (they never travel in a checkpoint)",
                calib.len(),
                data.map(|d| d.display().to_string())
                    .unwrap_or_else(|| "the generated set".into())
            )
        } else {
            "none (GroupNorm)".to_string()
        }
    );
    fedssl_core::atomic_write(&out.join("README.md"), readme.as_bytes())?;
    Ok(Exported {
        out: out.to_path_buf(),
        tensors: state.len(),
        parameters,
        calibrated_on: if has_bn { calib.len() } else { 0 },
    })
}
