//! `fedssl export --format torch` for ConvNet-S (BatchNorm), the ResNet (BatchNorm) and the
//! 1-D CNN (GroupNorm): the state dict has PyTorch's names and layouts, and PyTorch (in
//! the venv `.ci/run` makes; the Python part is skipped, saying so, when no Python with
//! torch is found) loads it with `load_state_dict(strict=True)` and computes fedssl's
//! features on 64 samples to 1e-4 (`tests/python/check_torch_export.py`).

use std::path::{Path, PathBuf};

use fedssl_core::spec::EncoderConfig;
use fedssl_ml::data::SampleShape;
use fedssl_ml::model::{Norm, Weights};
use fedssl_ml::prelude::*;
use fedssl_server::config::PlanConfig;

/// A Python that imports torch and safetensors: `FEDSSL_TORCH_PYTHON`, else the venv
/// `.ci/run` makes.
fn torch_python() -> Option<PathBuf> {
    let candidates = std::env::var_os("FEDSSL_TORCH_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/python")]);
    candidates.into_iter().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import torch, safetensors"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A checkpoint of `plan`'s model that describes itself, with every tensor moved off its
/// initial value (so a swapped γ/β or a transposed matrix cannot pass unnoticed).
fn checkpoint(dir: &Path, plan: &PlanConfig) -> PathBuf {
    let spec = plan.model_spec();
    let mut w: Weights = spec.initial_global(7).unwrap();
    for (i, t) in w.tensors.iter_mut().enumerate() {
        for (j, v) in t.values.iter_mut().enumerate() {
            *v += 0.05 * (((i * 7919 + j * 104_729) % 1000) as f32 / 1000.0 - 0.5);
        }
    }
    let mut meta = std::collections::BTreeMap::new();
    meta.insert(
        "fedssl.spec".to_string(),
        serde_json::to_string(&spec).unwrap(),
    );
    let path = dir.join("model.safetensors");
    w.save_described(&path, &meta).unwrap();
    path
}

#[test]
fn exported_encoders_load_strictly_in_pytorch_and_match_fedssl_features() {
    let python = torch_python();
    if python.is_none() {
        eprintln!(
            "skipping the PyTorch check: no Python with torch and safetensors (set \
             FEDSSL_TORCH_PYTHON, or run .ci/run, which makes .ci/venv)"
        );
    }
    let base = PlanConfig {
        norm: Some(Norm::Batch),
        ..PlanConfig::default()
    };
    let cases = [
        ("convnet-s", PlanConfig { ..base.clone() }),
        (
            "resnet",
            PlanConfig {
                data: SampleShape::Image {
                    channels: 3,
                    height: 32,
                    width: 32,
                },
                encoder: Some(EncoderConfig::Resnet { width: 8 }),
                ..base.clone()
            },
        ),
        (
            "cnn1d",
            PlanConfig {
                data: SampleShape::Series {
                    channels: 6,
                    length: 64,
                },
                encoder: Some(EncoderConfig::Cnn1d { width: 16 }),
                norm: Some(Norm::Group),
                ..base.clone()
            },
        ),
    ];
    for (name, plan) in cases {
        let dir = tempfile::tempdir().unwrap();
        let model = checkpoint(dir.path(), &plan);
        let out = dir.path().join("torch");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_fedssl"))
            .args([
                "export",
                "--format",
                "torch",
                "--calibration-samples",
                "512",
                "--model",
            ])
            .arg(&model)
            .arg("--out")
            .arg(&out)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // PyTorch's names and layouts, read back with an independent reader.
        let bytes = std::fs::read(out.join("encoder.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let names: Vec<String> = st.names().into_iter().map(String::from).collect();
        assert!(
            !names
                .iter()
                .any(|n| n.contains("gamma") || n.contains("beta")),
            "{names:?}"
        );
        match name {
            "convnet-s" => {
                assert_eq!(
                    st.tensor("blocks.0.conv.weight").unwrap().shape(),
                    [32, 1, 3, 3]
                );
                let rv = st.tensor("blocks.3.bn.running_var").unwrap();
                let rv: Vec<f32> = rv
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                assert!(
                    rv.iter().any(|v| (v - 1.0).abs() > 1e-3),
                    "BatchNorm was not calibrated"
                );
                assert_eq!(
                    st.tensor("blocks.3.bn.num_batches_tracked")
                        .unwrap()
                        .dtype(),
                    safetensors::Dtype::I64
                );
            }
            "resnet" => {
                assert_eq!(st.tensor("head.weight").unwrap().shape(), [128, 64]);
                assert!(names.iter().any(|n| n == "blocks.2.shortcut.conv.weight"));
            }
            _ => {
                assert_eq!(
                    st.tensor("blocks.0.conv.weight").unwrap().shape(),
                    [16, 6, 5]
                );
                assert!(!names.iter().any(|n| n.contains("running_")));
            }
        }
        if let Some(py) = &python {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/check_torch_export.py");
            let o = std::process::Command::new(py)
                .arg(&script)
                .arg(&out)
                .arg("1e-4")
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            eprintln!("{name}: {said}");
            assert!(o.status.success(), "{name}: PyTorch disagrees: {said}");
        }
    }
}
