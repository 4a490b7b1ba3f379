//! BatchNorm over NCHW tensors on [`Kernels`]: fused with the
//! following ReLU, one autodiff node per layer, fedssl's own kernels on the CPU and burn's
//! ops elsewhere. The math is PyTorch's BatchNorm2d (biased variance for normalization);
//! the running variance is updated with the biased batch variance.

use burn::module::{Module, Param, RunningState};
use burn::prelude::*;

use crate::kernels::{reference, Kernels, Ops};

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
    pub fn forward(&self, x: Tensor<B, 4>, mode: BnMode) -> Tensor<B, 4>
    where
        B: Kernels,
    {
        self.forward_fused(x, mode, false)
    }

    /// Normalizes `x` (`[N, C, H, W]`), then applies ReLU when `relu`, in one fused kernel
    /// on backends with [`Kernels`] of their own.
    pub fn forward_fused(&self, x: Tensor<B, 4>, mode: BnMode, relu: bool) -> Tensor<B, 4>
    where
        B: Kernels,
    {
        self.forward_with(x, mode, relu, Ops::Kernels)
    }

    /// The per-channel `(scale, shift)` evaluation mode applies:
    /// `γ / √(running var + ε)` and `β − running mean · scale`.
    pub fn eval_affine(&self) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let rm = self.running_mean.value_sync();
        let rv = self.running_var.value_sync();
        let scale = self.gamma.val().div(rv.add_scalar(self.epsilon).sqrt());
        let shift = self.beta.val().sub(rm.mul(scale.clone()));
        (scale, shift)
    }

    /// [`BatchNorm2d::forward_fused`] with the chosen implementation of the operations.
    pub fn forward_with(&self, x: Tensor<B, 4>, mode: BnMode, relu: bool, ops: Ops) -> Tensor<B, 4>
    where
        B: Kernels,
    {
        match mode {
            BnMode::Eval => {
                let (scale, shift) = self.eval_affine();
                match ops {
                    Ops::Kernels => B::kernel_affine(x, scale, shift, relu),
                    Ops::Burn => reference::affine(x, scale, shift, relu),
                }
            }
            BnMode::Train | BnMode::Calibrate(_) => {
                let (gamma, beta, eps) = (self.gamma.val(), self.beta.val(), self.epsilon);
                let (out, mean, var) = match ops {
                    Ops::Kernels => B::kernel_batch_norm(x, gamma, beta, eps, relu),
                    Ops::Burn => reference::batch_norm(x, gamma, beta, eps, relu),
                };
                let momentum = match mode {
                    BnMode::Calibrate(m) => m,
                    _ => self.momentum,
                };
                let rm = self.running_mean.value_sync();
                let rv = self.running_var.value_sync();
                let device = rm.device();
                let bm = mean.detach().to_device(&device);
                let bv = var.detach().to_device(&device);
                self.running_mean
                    .update(rm.mul_scalar(1.0 - momentum).add(bm.mul_scalar(momentum)));
                self.running_var
                    .update(rv.mul_scalar(1.0 - momentum).add(bv.mul_scalar(momentum)));
                out
            }
        }
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
