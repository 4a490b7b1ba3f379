//! BatchNorm over NCHW tensors that keeps its per-channel vectors contiguous.
//!
//! burn's `nn::BatchNorm` broadcasts `[1, C, 1, 1]` vectors, which on the Flex backend falls
//! into a scalar strided loop (see `shared/docs/dependency-notes.md`). Here the input is viewed
//! as `[N, C, H·W]` and per-channel vectors are repeated to `[N, C, 1]`, so every broadcast is
//! along the innermost axis. The math is the same as PyTorch's BatchNorm2d with biased
//! variance for normalization.

use burn::module::{Module, Param, RunningState};
use burn::prelude::*;

/// How a BatchNorm layer normalizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BnMode {
    /// Batch statistics; running statistics updated with the layer's momentum.
    Train,
    /// Running statistics.
    Eval,
    /// Batch statistics; running statistics updated with the given momentum
    /// (use `1/(t+1)` for batch `t` to get the exact mean over batches).
    Calibrate(f64),
}

/// Batch normalization for `[N, C, H, W]` inputs.
#[derive(Module, Debug)]
pub struct BatchNorm2d<B: Backend> {
    /// Scale γ.
    pub gamma: Param<Tensor<B, 1>>,
    /// Shift β.
    pub beta: Param<Tensor<B, 1>>,
    /// Running mean (local state, never sent).
    pub running_mean: RunningState<Tensor<B, 1>>,
    /// Running variance (local state, never sent).
    pub running_var: RunningState<Tensor<B, 1>>,
    /// Momentum of the running statistics.
    pub momentum: f64,
    /// Added to the variance for stability.
    pub epsilon: f64,
}

impl<B: Backend> BatchNorm2d<B> {
    /// A layer for `channels` channels with γ = 1, β = 0.
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::ones([channels], device)),
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
            momentum: 0.1,
            epsilon: 1e-5,
        }
    }

    /// Normalizes `x` (`[N, C, H, W]`).
    pub fn forward(&self, x: Tensor<B, 4>, mode: BnMode) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        let xr = x.reshape([n, c, h * w]);
        let gamma = self.gamma.val().reshape([1, c, 1]);
        let beta = self.beta.val().reshape([1, c, 1]);
        let out = match mode {
            BnMode::Eval => {
                let rm = self.running_mean.value_sync().reshape([1, c, 1]);
                let rv = self.running_var.value_sync().reshape([1, c, 1]);
                let scale = gamma.div(rv.add_scalar(self.epsilon).sqrt());
                let shift = beta.sub(rm.mul(scale.clone()));
                xr.mul(scale.repeat_dim(0, n)).add(shift.repeat_dim(0, n))
            }
            BnMode::Train | BnMode::Calibrate(_) => {
                let mean = xr.clone().mean_dim(2).mean_dim(0); // [1, C, 1]
                let centered = xr.sub(mean.clone().repeat_dim(0, n));
                let var = centered.clone().square().mean_dim(2).mean_dim(0); // [1, C, 1]
                let momentum = match mode {
                    BnMode::Calibrate(m) => m,
                    _ => self.momentum,
                };
                let rm = self.running_mean.value_sync();
                let rv = self.running_var.value_sync();
                let device = rm.device();
                let bm = mean.clone().detach().reshape([c]).to_device(&device);
                let bv = var.clone().detach().reshape([c]).to_device(&device);
                self.running_mean
                    .update(rm.mul_scalar(1.0 - momentum).add(bm.mul_scalar(momentum)));
                self.running_var
                    .update(rv.mul_scalar(1.0 - momentum).add(bv.mul_scalar(momentum)));
                let scale = gamma.div(var.add_scalar(self.epsilon).sqrt());
                centered
                    .mul(scale.repeat_dim(0, n))
                    .add(beta.repeat_dim(0, n))
            }
        };
        out.reshape([n, c, h, w])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn train_mode_matches_reference_math() {
        let dev = Default::default();
        let bn = BatchNorm2d::<Flex>::new(2, &dev);
        // N=2, C=2, H=1, W=2
        let vals = vec![1.0f32, 3.0, 10.0, 10.0, 5.0, 7.0, 20.0, 40.0];
        let x = Tensor::<Flex, 4>::from_data(TensorData::new(vals.clone(), [2, 2, 1, 2]), &dev);
        let y: Vec<f32> = bn.forward(x, BnMode::Train).into_data().to_vec().unwrap();
        // channel 0 values: 1,3,5,7 -> mean 4, biased var 5
        let ch0 = [1.0f32, 3.0, 5.0, 7.0].map(|v| (v - 4.0) / (5.0f32 + 1e-5).sqrt());
        assert!((y[0] - ch0[0]).abs() < 1e-5 && (y[1] - ch0[1]).abs() < 1e-5);
        assert!((y[4] - ch0[2]).abs() < 1e-5 && (y[5] - ch0[3]).abs() < 1e-5);
        // channel 1 values: 10,10,20,40 -> mean 20, var (100+100+0+400)/4 = 150
        let e = (10.0f32 - 20.0) / (150.0f32 + 1e-5).sqrt();
        assert!((y[2] - e).abs() < 1e-5);
        let rm: Vec<f32> = bn.running_mean.value_sync().into_data().to_vec().unwrap();
        assert!((rm[0] - 0.4).abs() < 1e-6 && (rm[1] - 2.0).abs() < 1e-6);
    }
}
