//! Model weights as plain named `f32` tensors: the form in which models are hashed, sent,
//! clipped, noised, aggregated and saved (as safetensors files).

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

use super::convnet::is_bn_statistic;

/// One named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightTensor {
    /// Parameter path, e.g. `blocks.0.conv.weight`.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// An ordered set of named tensors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Weights {
    /// Tensors in the model's canonical (visit) order.
    pub tensors: Vec<WeightTensor>,
}

/// Names and shapes a model's weights must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsSpec {
    /// `(name, shape)` in canonical order.
    pub entries: Vec<(String, Vec<usize>)>,
}

impl WeightsSpec {
    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.entries
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

/// Errors when moving weights into a module or a file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// A module parameter has no tensor of that name, or shapes differ.
    #[error("weights do not fit the model: {0}")]
    Mismatch(String),
    /// File I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file of f32 tensors.
    #[error("{path}: not a valid model file: {reason}")]
    Format {
        /// File involved.
        path: String,
        /// Cause.
        reason: String,
    },
}

struct Collector {
    path: Vec<String>,
    out: Vec<WeightTensor>,
}

/// The path segment a module adds to its parameters' names: none for an enum's variant, so
/// that a model's names do not depend on how it is wrapped.
fn segment(name: &str, container_type: &str) -> String {
    if container_type.starts_with("Enum:") {
        String::new()
    } else {
        name.to_string()
    }
}

/// `path` joined with dots, skipping empty segments.
fn join(path: &[String]) -> String {
    path.iter()
        .filter(|s| !s.is_empty())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(".")
}

impl<B: Backend> ModuleVisitor<B> for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(segment(name, container_type));
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        self.out.push(WeightTensor {
            name: join(&self.path),
            shape,
            values,
        });
    }
}

struct Loader<'a> {
    path: Vec<String>,
    by_name: HashMap<&'a str, &'a WeightTensor>,
    used: usize,
    errors: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(segment(name, container_type));
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let name = join(&self.path);
        let (id, tensor, mapper) = param.consume();
        let Some(src) = self.by_name.get(name.as_str()) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        self.used += 1;
        if src.shape.as_slice() != tensor.dims().as_slice() {
            self.errors.push(format!(
                "`{name}`: model has shape {:?}, weights have {:?}",
                tensor.dims(),
                src.shape
            ));
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let grad = tensor.is_require_grad();
        let device = tensor.device();
        let mut fresh = Tensor::<B, D>::from_data(
            TensorData::new(src.values.clone(), src.shape.clone()),
            &device,
        );
        if grad {
            fresh = fresh.require_grad();
        }
        Param::from_mapped_value(id, fresh, mapper)
    }
}

impl Weights {
    /// All float tensors of a module, local state included.
    pub fn from_module<B: Backend, M: Module<B>>(module: &M) -> Self {
        let mut c = Collector {
            path: Vec::new(),
            out: Vec::new(),
        };
        module.visit(&mut c);
        Self { tensors: c.out }
    }

    /// The tensors whose names satisfy `keep`.
    pub fn filtered(&self, keep: impl Fn(&str) -> bool) -> Weights {
        Weights {
            tensors: self
                .tensors
                .iter()
                .filter(|t| keep(&t.name))
                .cloned()
                .collect(),
        }
    }

    /// `a·self + (1 − a)·other`, tensor by tensor (both must have the same names and shapes).
    pub fn mix(&self, other: &Weights, a: f32) -> Result<Weights, WeightsError> {
        self.zip_with(other, |x, y| a * x + (1.0 - a) * y)
    }

    /// The tensors of a module that are shared globally (BatchNorm statistics excluded).
    pub fn global_from_module<B: Backend, M: Module<B>>(module: &M) -> Self {
        let mut w = Self::from_module(module);
        w.tensors.retain(|t| !is_bn_statistic(&t.name));
        w
    }

    /// Copies these tensors into `module`. Every tensor must match a parameter by name and
    /// shape; parameters not named here keep their values.
    pub fn load_into<B: Backend, M: Module<B>>(&self, module: M) -> Result<M, WeightsError> {
        let mut l = Loader {
            path: Vec::new(),
            by_name: self.tensors.iter().map(|t| (t.name.as_str(), t)).collect(),
            used: 0,
            errors: Vec::new(),
        };
        let m = module.map(&mut l);
        if !l.errors.is_empty() {
            return Err(WeightsError::Mismatch(l.errors.join("; ")));
        }
        if l.used != self.tensors.len() {
            return Err(WeightsError::Mismatch(format!(
                "{} of {} tensors matched no parameter of the model",
                self.tensors.len() - l.used,
                self.tensors.len()
            )));
        }
        Ok(m)
    }

    /// Names and shapes.
    pub fn spec(&self) -> WeightsSpec {
        WeightsSpec {
            entries: self
                .tensors
                .iter()
                .map(|t| (t.name.clone(), t.shape.clone()))
                .collect(),
        }
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.tensors.iter().map(|t| t.values.len()).sum()
    }

    /// Content hash (the same as the wire payload's).
    pub fn hash(&self) -> String {
        crate::protocol::ModelPayload::from_weights(self).hash
    }

    /// `self − base`, tensor by tensor. Both must have the same spec.
    pub fn sub(&self, base: &Weights) -> Result<Weights, WeightsError> {
        self.zip_with(base, |a, b| a - b)
    }

    /// `self + other`, tensor by tensor. Both must have the same spec.
    pub fn add(&self, other: &Weights) -> Result<Weights, WeightsError> {
        self.zip_with(other, |a, b| a + b)
    }

    fn zip_with(
        &self,
        other: &Weights,
        f: impl Fn(f32, f32) -> f32,
    ) -> Result<Weights, WeightsError> {
        if self.spec() != other.spec() {
            return Err(WeightsError::Mismatch(
                "the two sets of weights have different names or shapes".into(),
            ));
        }
        Ok(Weights {
            tensors: self
                .tensors
                .iter()
                .zip(&other.tensors)
                .map(|(a, b)| WeightTensor {
                    name: a.name.clone(),
                    shape: a.shape.clone(),
                    values: a
                        .values
                        .iter()
                        .zip(&b.values)
                        .map(|(x, y)| f(*x, *y))
                        .collect(),
                })
                .collect(),
        })
    }

    /// L2 norm over all values (accumulated in f64).
    pub fn l2_norm(&self) -> f64 {
        self.values()
            .map(|v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt()
    }

    /// True when no value is NaN or infinite.
    pub fn is_finite(&self) -> bool {
        self.values().all(f32::is_finite)
    }

    /// All values in canonical order.
    pub fn values(&self) -> impl Iterator<Item = f32> + '_ {
        self.tensors.iter().flat_map(|t| t.values.iter().copied())
    }

    /// Multiplies every value by `s`.
    pub fn scale(&mut self, s: f32) {
        for t in &mut self.tensors {
            for v in &mut t.values {
                *v *= s;
            }
        }
    }

    /// Writes a safetensors file atomically: temporary file, fsync, rename, fsync of the folder.
    pub fn save(&self, path: &Path) -> Result<(), WeightsError> {
        let io = |source| WeightsError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|t| {
                let mut b = Vec::with_capacity(t.values.len() * 4);
                for v in &t.values {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                (t.name.clone(), b, t.shape.clone())
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(n, b, s)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| WeightsError::Format {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let order: Vec<String> = self.tensors.iter().map(|t| t.name.clone()).collect();
        let mut meta = HashMap::new();
        meta.insert("fedssl.order".to_string(), order.join(","));
        meta.insert("fedssl.hash".to_string(), self.hash());
        let data = safetensors::serialize(views, Some(meta)).map_err(|e| WeightsError::Format {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        crate::atomic_write(path, &data).map_err(io)
    }

    /// Reads a safetensors file written by [`Weights::save`] (or any file of f32 tensors;
    /// tensors then come in name order).
    pub fn load(path: &Path) -> Result<Weights, WeightsError> {
        let data = std::fs::read(path).map_err(|source| WeightsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let fmt = |reason: String| WeightsError::Format {
            path: path.display().to_string(),
            reason,
        };
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&data).map_err(|e| fmt(e.to_string()))?;
        let st = safetensors::SafeTensors::deserialize(&data).map_err(|e| fmt(e.to_string()))?;
        let mut names: Vec<String> =
            match meta.metadata().as_ref().and_then(|m| m.get("fedssl.order")) {
                Some(o) if !o.is_empty() => o.split(',').map(str::to_string).collect(),
                _ => st.names().into_iter().map(|s| s.to_string()).collect(),
            };
        if names.len() != st.len() {
            names = st.names().into_iter().map(|s| s.to_string()).collect();
            names.sort();
        }
        let mut tensors = Vec::with_capacity(names.len());
        for name in names {
            let v = st.tensor(&name).map_err(|e| fmt(e.to_string()))?;
            if v.dtype() != safetensors::Dtype::F32 {
                return Err(fmt(format!("tensor `{name}` is {:?}, not F32", v.dtype())));
            }
            let values = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.push(WeightTensor {
                name,
                shape: v.shape().to_vec(),
                values,
            });
        }
        Ok(Weights { tensors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BnMode, ConvNetSConfig};
    use burn::backend::Flex;

    #[test]
    fn module_roundtrip_and_file_roundtrip() {
        let dev = Default::default();
        let a = ConvNetSConfig::default().init::<Flex>(&dev);
        let b = ConvNetSConfig::default().init::<Flex>(&dev);
        let wa = Weights::global_from_module(&a);
        assert_ne!(wa, Weights::global_from_module(&b));
        let b = wa.load_into(b).unwrap();
        assert_eq!(wa, Weights::global_from_module(&b));
        let x = Tensor::<Flex, 4>::ones([2, 1, 28, 28], &dev);
        let ya: Vec<f32> = a
            .forward(x.clone(), BnMode::Train)
            .into_data()
            .to_vec()
            .unwrap();
        let yb: Vec<f32> = b.forward(x, BnMode::Train).into_data().to_vec().unwrap();
        assert_eq!(ya, yb);

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        wa.save(&p).unwrap();
        let back = Weights::load(&p).unwrap();
        assert_eq!(back, wa);
        assert_eq!(back.hash(), wa.hash());
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let dev = Default::default();
        let a = ConvNetSConfig::default().init::<Flex>(&dev);
        let mut w = Weights::global_from_module(&a);
        w.tensors[0].shape = vec![1, 2, 3];
        assert!(w.load_into(a).is_err());
    }
}
