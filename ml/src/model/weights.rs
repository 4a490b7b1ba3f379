//! Moving [`Weights`] in and out of burn modules. Names are the modules' parameter paths
//! (an enum variant adds no segment, so a model's names do not depend on how it is wrapped).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

pub use fedssl_core::weights::*;

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

/// Weights read from and written into burn modules.
pub trait ModuleWeights {
    /// All float tensors of a module, local state included.
    fn from_module<B: Backend, M: Module<B>>(module: &M) -> Self;
    /// The tensors of a module that are shared globally (BatchNorm statistics excluded).
    fn global_from_module<B: Backend, M: Module<B>>(module: &M) -> Self;
    /// Copies these tensors into `module`. Every tensor must match a parameter by name and
    /// shape; parameters not named here keep their values.
    fn load_into<B: Backend, M: Module<B>>(&self, module: M) -> Result<M, WeightsError>;
}

impl ModuleWeights for Weights {
    fn from_module<B: Backend, M: Module<B>>(module: &M) -> Self {
        // burn's `RunningState` (BatchNorm statistics) keeps each thread's last update apart
        // until it is synced, and `visit` reads the value without syncing: the statistics
        // would miss the last training or calibration batch. `into_record` syncs them, and
        // a clone shares their state, so this brings `module`'s own up to date.
        let _ = module.clone().into_record();
        let mut c = Collector {
            path: Vec::new(),
            out: Vec::new(),
        };
        module.visit(&mut c);
        Weights { tensors: c.out }
    }

    fn global_from_module<B: Backend, M: Module<B>>(module: &M) -> Self {
        let mut w = Self::from_module(module);
        w.tensors.retain(|t| !is_bn_statistic(&t.name));
        w
    }

    fn load_into<B: Backend, M: Module<B>>(&self, module: M) -> Result<M, WeightsError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BnMode, ConvNetSConfig};
    use burn::backend::Flex;
    use fedssl_core::weights::Weights;

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
