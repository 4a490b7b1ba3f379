//! Exponential moving average of one module towards another of the same structure
//! (BYOL's momentum target), on the tensors' own device: `target ← τ·target + (1 − τ)·online`.
//!
//! The two modules are matched by parameter id, which a target made by cloning the online
//! module shares with it (and keeps through optimizer steps and weight loading).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

/// The online module's float tensors by parameter id, flattened and detached.
struct Values<B: Backend>(HashMap<ParamId, Tensor<B, 1>>);

impl<B: Backend> ModuleVisitor<B> for Values<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val().detach();
        let n = t.shape().num_elements();
        self.0.insert(param.id, t.reshape([n]));
    }
}

struct Mix<B: Backend> {
    online: HashMap<ParamId, Tensor<B, 1>>,
    tau: f64,
}

impl<B: Backend> ModuleMapper<B> for Mix<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, t, mapper) = param.consume();
        let t = match self.online.remove(&id) {
            Some(o) => {
                let o = o.reshape(t.shape());
                t.mul_scalar(self.tau).add(o.mul_scalar(1.0 - self.tau))
            }
            None => t,
        };
        Param::from_mapped_value(id, t.detach(), mapper)
    }
}

/// `target ← τ·target + (1 − τ)·online` for every tensor `online` shares with `target`
/// (by parameter id); the result is detached.
pub fn ema_update<B: Backend, M: Module<B>>(target: M, online: &M, tau: f64) -> M {
    let mut values = Values(HashMap::new());
    online.visit(&mut values);
    target.map(&mut Mix {
        online: values.0,
        tau,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::ModuleWeights;
    use crate::model::{ConvNetSConfig, Weights};
    use burn::backend::Flex;

    #[test]
    fn matches_the_mix_of_the_weights() {
        let dev = Default::default();
        let online = ConvNetSConfig::default().init::<Flex>(&dev);
        let target = online.clone();
        // Move the online model away from the target: reload it with other values.
        let shifted = {
            let mut w = Weights::from_module(&online);
            for t in &mut w.tensors {
                for v in &mut t.values {
                    *v += 0.5;
                }
            }
            w.load_into(online.clone()).unwrap()
        };
        let expect = Weights::from_module(&target)
            .mix(&Weights::from_module(&shifted), 0.9)
            .unwrap();
        let got = Weights::from_module(&ema_update(target, &shifted, 0.9));
        for (a, b) in got.tensors.iter().zip(&expect.tensors) {
            assert_eq!(a.name, b.name);
            for (x, y) in a.values.iter().zip(&b.values) {
                assert!((x - y).abs() < 1e-6, "{}: {x} vs {y}", a.name);
            }
        }
    }
}
