//! The same operations written with burn's own tensor ops: the fallback on backends
//! without fedssl kernels (CUDA), and the reference the kernels are tested against.

use burn::prelude::*;
use burn::tensor::module;
use burn::tensor::ops::ConvOptions;
use burn::tensor::TensorPrimitive;

use super::{ConvSpec, GnGrads, GnSaved, NormGrads, NormKind, NormSaved};

fn options(spec: ConvSpec) -> ConvOptions<2> {
    ConvOptions::new(spec.stride, spec.padding, [1, 1], 1)
}

/// Convolution with burn's `conv2d`.
pub fn conv2d<B: Backend>(x: Tensor<B, 4>, weight: Tensor<B, 4>, spec: ConvSpec) -> Tensor<B, 4> {
    module::conv2d(x, weight, None, options(spec))
}

/// Convolution gradients with the backend's `conv2d_x_backward` / `conv2d_weight_backward`.
pub fn conv2d_backward<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    grad: Tensor<B, 4>,
    spec: ConvSpec,
    need_x: bool,
) -> (Option<Tensor<B, 4>>, Tensor<B, 4>) {
    let (x, w, g) = (
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        grad.into_primitive().tensor(),
    );
    let dx = need_x.then(|| {
        Tensor::from_primitive(TensorPrimitive::Float(B::conv2d_x_backward(
            x.clone(),
            w.clone(),
            g.clone(),
            options(spec),
        )))
    });
    let dw = Tensor::from_primitive(TensorPrimitive::Float(B::conv2d_weight_backward(
        x,
        w,
        g,
        options(spec),
    )));
    (dx, dw)
}

/// The input gradient of a convolution with the backend's `conv2d_x_backward`.
pub fn conv2d_input_grad<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    grad: Tensor<B, 4>,
    spec: ConvSpec,
) -> Tensor<B, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(B::conv2d_x_backward(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        grad.into_primitive().tensor(),
        options(spec),
    )))
}

/// `x · w + b`.
pub fn linear<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, 2> {
    let y = x.matmul(weight);
    match bias {
        Some(b) => {
            let d = b.dims()[0];
            y.add(b.reshape([1, d]))
        }
        None => y,
    }
}

/// Group normalization with burn's ops (per image and group: mean, biased variance).
pub fn group_norm<B: Backend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    groups: usize,
    eps: f64,
    relu: bool,
) -> (Tensor<B, 4>, GnSaved<B>) {
    let [n, c, h, w] = x.dims();
    let m = c / groups * h * w;
    let g = x.reshape([n, groups, m]);
    let mean = g.clone().mean_dim(2);
    let centered = g.sub(mean);
    let var = centered.clone().powi_scalar(2).mean_dim(2);
    let rstd = var.add_scalar(eps).sqrt().recip();
    let y = centered.mul(rstd.clone()).reshape([n, c, h * w]);
    let out = y
        .clone()
        .mul(per_channel(gamma.clone(), n))
        .add(per_channel(beta, n))
        .reshape([n, c, h, w]);
    let out = relu_if(out, relu);
    (
        out.clone(),
        GnSaved {
            y: y.reshape([n, c, h, w]),
            out,
            rstd: rstd.reshape([n, groups]),
            gamma,
            groups,
            relu,
        },
    )
}

/// Gradients of [`group_norm`]: input, and γ and β per image.
pub fn group_norm_backward<B: Backend>(saved: GnSaved<B>, grad: Tensor<B, 4>) -> GnGrads<B> {
    let [n, c, h, w] = grad.dims();
    let (s, groups) = (h * w, saved.groups);
    let grad = if saved.relu {
        grad.mul(saved.out.greater_elem(0.0).float())
    } else {
        grad
    };
    let g3 = grad.reshape([n, c, s]);
    let y3 = saved.y.reshape([n, c, s]);
    let dgamma = g3.clone().mul(y3.clone()).sum_dim(2).reshape([n, c]);
    let dbeta = g3.clone().sum_dim(2).reshape([n, c]);
    let m = c / groups * s;
    let dyh = g3.mul(per_channel(saved.gamma, n)).reshape([n, groups, m]);
    let yg = y3.reshape([n, groups, m]);
    let m1 = dyh.clone().mean_dim(2);
    let m2 = dyh.clone().mul(yg.clone()).mean_dim(2);
    let dx = dyh
        .sub(m1)
        .sub(yg.mul(m2))
        .mul(saved.rstd.reshape([n, groups, 1]))
        .reshape([n, c, h, w]);
    (dx, dgamma, dbeta)
}

/// Repeats a per-channel vector to `[n, c, 1]`, so every broadcast runs along the innermost
/// axis (a `[1, c, 1, 1]` broadcast is a slow strided loop on Flex).
fn per_channel<B: Backend>(v: Tensor<B, 1>, n: usize) -> Tensor<B, 3> {
    let c = v.dims()[0];
    v.reshape([1, c, 1]).repeat_dim(0, n)
}

fn relu_if<B: Backend, const D: usize>(t: Tensor<B, D>, relu: bool) -> Tensor<B, D> {
    if relu {
        burn::tensor::activation::relu(t)
    } else {
        t
    }
}

/// Training-mode batch normalization (+ ReLU) with tensor ops.
pub fn batch_norm<B: Backend>(
    y: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    eps: f64,
    relu: bool,
) -> (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>) {
    let [n, c, h, w] = y.dims();
    let yr = y.reshape([n, c, h * w]);
    let mean = yr.clone().mean_dim(2).mean_dim(0); // [1, c, 1]
    let centered = yr.sub(mean.clone().repeat_dim(0, n));
    let var = centered.clone().square().mean_dim(2).mean_dim(0);
    let scale = gamma
        .reshape([1, c, 1])
        .div(var.clone().add_scalar(eps).sqrt());
    let out = centered
        .mul(scale.repeat_dim(0, n))
        .add(per_channel(beta, n));
    (
        relu_if(out, relu).reshape([n, c, h, w]),
        mean.detach().reshape([c]),
        var.detach().reshape([c]),
    )
}

/// Gradients of [`batch_norm`] or [`affine`] with tensor ops, as `saved.kind` says.
pub fn norm_backward<B: Backend>(saved: NormSaved<B>, grad: Tensor<B, 4>) -> NormGrads<B> {
    let dz = masked(&saved, grad);
    match saved.kind {
        NormKind::BatchNorm {
            mean,
            var,
            gamma,
            eps,
        } => batch_norm_backward(saved.y, dz, mean, var, gamma, eps),
        NormKind::Affine { scale } => affine_backward(saved.y, dz, scale),
    }
}

/// The ReLU-masked output gradient, as `[n, c, h·w]`.
fn masked<B: Backend>(saved: &NormSaved<B>, grad: Tensor<B, 4>) -> Tensor<B, 3> {
    let [n, c, h, w] = grad.dims();
    let g = grad.reshape([n, c, h * w]);
    if saved.relu {
        let keep = saved.out.clone().reshape([n, c, h * w]).greater_elem(0.0);
        g.mask_fill(keep.bool_not(), 0.0)
    } else {
        g
    }
}

/// Per-channel sum over images and pixels of `[n, c, s]`, as `[c]`.
fn channel_sum<B: Backend>(t: Tensor<B, 3>) -> Tensor<B, 1> {
    let c = t.dims()[1];
    t.sum_dim(2).sum_dim(0).reshape([c])
}

/// Batch-norm gradients from the masked output gradient `dz` (`[n, c, h·w]`).
fn batch_norm_backward<B: Backend>(
    y: Tensor<B, 4>,
    dz: Tensor<B, 3>,
    mean: Tensor<B, 1>,
    var: Tensor<B, 1>,
    gamma: Tensor<B, 1>,
    eps: f64,
) -> NormGrads<B> {
    let [n, c, h, w] = y.dims();
    let m = (n * h * w) as f64;
    let inv = var.add_scalar(eps).sqrt().recip();
    let xhat = y
        .reshape([n, c, h * w])
        .sub(per_channel(mean, n))
        .mul(per_channel(inv.clone(), n));
    let dbeta = channel_sum(dz.clone());
    let dgamma = channel_sum(dz.clone().mul(xhat.clone()));
    let dy = dz
        .sub(per_channel(dbeta.clone().div_scalar(m), n))
        .sub(xhat.mul(per_channel(dgamma.clone().div_scalar(m), n)))
        .mul(per_channel(gamma.mul(inv), n));
    (dy.reshape([n, c, h, w]), dgamma, dbeta)
}

/// Per-channel affine map (+ ReLU) with tensor ops.
pub fn affine<B: Backend>(
    y: Tensor<B, 4>,
    scale: Tensor<B, 1>,
    shift: Tensor<B, 1>,
    relu: bool,
) -> Tensor<B, 4> {
    let [n, c, h, w] = y.dims();
    let out = y
        .reshape([n, c, h * w])
        .mul(per_channel(scale, n))
        .add(per_channel(shift, n));
    relu_if(out, relu).reshape([n, c, h, w])
}

/// Affine-map gradients from the masked output gradient `dz` (`[n, c, h·w]`).
fn affine_backward<B: Backend>(
    y: Tensor<B, 4>,
    dz: Tensor<B, 3>,
    scale: Tensor<B, 1>,
) -> NormGrads<B> {
    let [n, c, h, w] = y.dims();
    let dshift = channel_sum(dz.clone());
    let dscale = channel_sum(dz.clone().mul(y.reshape([n, c, h * w])));
    let dy = dz.mul(per_channel(scale, n));
    (dy.reshape([n, c, h, w]), dscale, dshift)
}
