//! [`Kernels`] on burn's Flex backend: tensors are viewed as contiguous `f32` slices
//! (zero-copy when they already are) and handed to the [`cpu`](super::cpu) kernels.
//! Other dtypes, and shapes the kernels do not take, go to burn's ops.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::DType;

use super::cpu::conv::{self, ConvGeom, StackLayer as StackView};
use super::cpu::group_norm;
use super::cpu::norm::{self, Nc};
use super::profile::{timed, Op};
use super::{
    compose_stack, reference, ConvSpec, GnGrads, GnSaved, Kernels, NormGrads, NormKind, NormSaved,
    StackLayer,
};

/// The tensor's storage as one contiguous buffer (a copy only when it is a strided view).
fn contiguous<const D: usize>(t: Tensor<Flex, D>) -> FlexTensor {
    t.into_primitive().tensor().to_contiguous()
}

/// The values of a contiguous tensor whose dtype the caller checked to be f32.
fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .unwrap_or_else(|| unreachable!("a contiguous f32 Flex tensor has an f32 slice"))
}

/// A small per-channel vector's values.
fn vec1(t: Tensor<Flex, 1>) -> Vec<f32> {
    f32s(&contiguous(t)).to_vec()
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<Flex, D> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn all_f32<const D: usize>(ts: &[&Tensor<Flex, D>]) -> bool {
    ts.iter().all(|t| t.dtype() == DType::F32)
}

/// Whether `vs` are f32 vectors of `c` values.
fn channel_vectors(vs: &[&Tensor<Flex, 1>], c: usize) -> bool {
    all_f32(vs) && vs.iter().all(|v| v.dims() == [c])
}

fn geometry(x: [usize; 4], w: [usize; 4], spec: ConvSpec) -> Option<ConvGeom> {
    let g = ConvGeom::new(x, w[0], [w[2], w[3]], spec.stride, spec.padding);
    (w[1] == x[1] && g.is_valid()).then_some(g)
}

fn nc(d: [usize; 4]) -> Nc {
    Nc {
        n: d[0],
        c: d[1],
        s: d[2] * d[3],
    }
}

impl Kernels for Flex {
    const OWN_KERNELS: bool = true;

    fn kernel_conv2d(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        spec: ConvSpec,
    ) -> Tensor<Self, 4> {
        let geom = geometry(x.dims(), weight.dims(), spec);
        let Some(g) = geom.filter(|_| all_f32(&[&x, &weight])) else {
            return reference::conv2d(x, weight, spec);
        };
        let (xp, wp) = (contiguous(x), contiguous(weight));
        let out = timed(Op::ConvForward, || conv::forward(&g, f32s(&xp), f32s(&wp)));
        tensor(out, [g.n, g.cout, g.out_h(), g.out_w()])
    }

    fn kernel_conv2d_backward(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        grad: Tensor<Self, 4>,
        spec: ConvSpec,
        need_x: bool,
    ) -> (Option<Tensor<Self, 4>>, Tensor<Self, 4>) {
        let geom = geometry(x.dims(), weight.dims(), spec)
            .filter(|g| grad.dims() == [g.n, g.cout, g.out_h(), g.out_w()]);
        let Some(g) = geom.filter(|_| all_f32(&[&x, &weight, &grad])) else {
            return reference::conv2d_backward(x, weight, grad, spec, need_x);
        };
        let wdims = weight.dims();
        let (xp, wp, gp) = (contiguous(x), contiguous(weight), contiguous(grad));
        let (dx, dw) = timed(Op::ConvBackward, || {
            conv::backward(&g, f32s(&xp), f32s(&wp), f32s(&gp), need_x, true)
        });
        (
            dx.map(|dx| tensor(dx, [g.n, g.cin, g.h, g.w])),
            tensor(dw, wdims),
        )
    }

    fn kernel_conv2d_input_grad(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        grad: Tensor<Self, 4>,
        spec: ConvSpec,
    ) -> Tensor<Self, 4> {
        let geom = geometry(x.dims(), weight.dims(), spec)
            .filter(|g| grad.dims() == [g.n, g.cout, g.out_h(), g.out_w()]);
        let Some(g) = geom.filter(|_| all_f32(&[&x, &weight, &grad])) else {
            return reference::conv2d_input_grad(x, weight, grad, spec);
        };
        let (xp, wp, gp) = (contiguous(x), contiguous(weight), contiguous(grad));
        let (dx, _) = timed(Op::ConvBackward, || {
            conv::backward(&g, f32s(&xp), f32s(&wp), f32s(&gp), true, false)
        });
        let dx = dx.unwrap_or_else(|| unreachable!("conv::backward returns dx when asked"));
        tensor(dx, [g.n, g.cin, g.h, g.w])
    }

    fn kernel_group_norm_saved(
        x: Tensor<Self, 4>,
        gamma: Tensor<Self, 1>,
        beta: Tensor<Self, 1>,
        groups: usize,
        eps: f64,
        relu: bool,
    ) -> (Tensor<Self, 4>, GnSaved<Self>) {
        let dims = x.dims();
        let d = nc(dims);
        if !all_f32(&[&x])
            || !channel_vectors(&[&gamma, &beta], d.c)
            || groups == 0
            || !d.c.is_multiple_of(groups)
        {
            return reference::group_norm(x, gamma, beta, groups, eps, relu);
        }
        let xp = contiguous(x);
        let (gv, bv) = (vec1(gamma.clone()), vec1(beta));
        let (out, saved) = timed(Op::NormForward, || {
            group_norm::forward(d, groups, f32s(&xp), &gv, &bv, eps as f32, relu)
        });
        let out = tensor(out, dims);
        (
            out.clone(),
            GnSaved {
                y: tensor(saved.y, dims),
                out,
                rstd: tensor(saved.rstd, [d.n, groups]),
                gamma,
                groups,
                relu,
            },
        )
    }

    fn kernel_group_norm_backward(saved: GnSaved<Self>, grad: Tensor<Self, 4>) -> GnGrads<Self> {
        let dims = grad.dims();
        let d = nc(dims);
        let ok = all_f32(&[&saved.y, &saved.out, &grad])
            && saved.y.dims() == dims
            && saved.out.dims() == dims
            && channel_vectors(&[&saved.gamma], d.c)
            && saved.rstd.dims() == [d.n, saved.groups];
        if !ok {
            return reference::group_norm_backward(saved, grad);
        }
        let (yp, op, gp, rp) = (
            contiguous(saved.y),
            contiguous(saved.out),
            contiguous(grad),
            contiguous(saved.rstd),
        );
        let gamma = vec1(saved.gamma);
        let (dx, dg, db) = timed(Op::NormBackward, || {
            group_norm::backward(
                d,
                saved.groups,
                f32s(&yp),
                f32s(&rp),
                f32s(&op),
                &gamma,
                f32s(&gp),
                saved.relu,
            )
        });
        (
            tensor(dx, dims),
            tensor(dg, [d.n, d.c]),
            tensor(db, [d.n, d.c]),
        )
    }

    fn kernel_batch_norm(
        y: Tensor<Self, 4>,
        gamma: Tensor<Self, 1>,
        beta: Tensor<Self, 1>,
        eps: f64,
        relu: bool,
    ) -> (Tensor<Self, 4>, Tensor<Self, 1>, Tensor<Self, 1>) {
        let dims = y.dims();
        let d = nc(dims);
        if !all_f32(&[&y]) || !channel_vectors(&[&gamma, &beta], d.c) {
            return reference::batch_norm(y, gamma, beta, eps, relu);
        }
        let yp = contiguous(y);
        let (gv, bv) = (vec1(gamma), vec1(beta));
        let (out, mean, var) = timed(Op::NormForward, || {
            norm::bn_forward(d, f32s(&yp), &gv, &bv, eps as f32, relu)
        });
        (tensor(out, dims), tensor(mean, [d.c]), tensor(var, [d.c]))
    }

    fn kernel_affine(
        y: Tensor<Self, 4>,
        scale: Tensor<Self, 1>,
        shift: Tensor<Self, 1>,
        relu: bool,
    ) -> Tensor<Self, 4> {
        let dims = y.dims();
        let d = nc(dims);
        if !all_f32(&[&y]) || !channel_vectors(&[&scale, &shift], d.c) {
            return reference::affine(y, scale, shift, relu);
        }
        let yp = contiguous(y);
        let (a, b) = (vec1(scale), vec1(shift));
        let out = timed(Op::NormForward, || {
            norm::affine_forward(d, f32s(&yp), &a, &b, relu)
        });
        tensor(out, dims)
    }

    fn kernel_norm_backward(saved: NormSaved<Self>, grad: Tensor<Self, 4>) -> NormGrads<Self> {
        let dims = grad.dims();
        let d = nc(dims);
        let vectors_ok = match &saved.kind {
            NormKind::BatchNorm {
                mean, var, gamma, ..
            } => channel_vectors(&[mean, var, gamma], d.c),
            NormKind::Affine { scale } => channel_vectors(&[scale], d.c),
        };
        let tensors_ok = all_f32(&[&saved.y, &saved.out, &grad])
            && saved.y.dims() == dims
            && saved.out.dims() == dims;
        if !(vectors_ok && tensors_ok) {
            return reference::norm_backward(saved, grad);
        }
        let (yp, op, gp) = (contiguous(saved.y), contiguous(saved.out), contiguous(grad));
        let (ys, os, gs) = (f32s(&yp), f32s(&op), f32s(&gp));
        let relu = saved.relu;
        let (dy, da, db) = match saved.kind {
            NormKind::BatchNorm {
                mean,
                var,
                gamma,
                eps,
            } => {
                let (mean, var, gamma) = (vec1(mean), vec1(var), vec1(gamma));
                timed(Op::NormBackward, || {
                    norm::bn_backward(d, ys, os, gs, &gamma, &mean, &var, eps as f32, relu)
                })
            }
            NormKind::Affine { scale } => {
                let scale = vec1(scale);
                timed(Op::NormBackward, || {
                    norm::affine_backward(d, ys, os, gs, &scale, relu)
                })
            }
        };
        (tensor(dy, dims), tensor(da, [d.c]), tensor(db, [d.c]))
    }

    fn kernel_conv_stack(x: Tensor<Self, 4>, layers: Vec<StackLayer<Self>>) -> Tensor<Self, 4> {
        let dims = x.dims();
        let supported = all_f32(&[&x])
            && layers.iter().all(|l| {
                let c = l.weight.dims()[0];
                all_f32(&[&l.weight]) && channel_vectors(&[&l.scale, &l.shift], c)
            });
        if !supported {
            return compose_stack(x, layers);
        }
        let params: Vec<_> = layers
            .iter()
            .map(|l| {
                (
                    contiguous(l.weight.clone()),
                    vec1(l.scale.clone()),
                    vec1(l.shift.clone()),
                )
            })
            .collect();
        let views: Vec<StackView<'_>> = layers
            .iter()
            .zip(&params)
            .map(|(l, (wp, a, b))| {
                let [cout, _, kh, kw] = l.weight.dims();
                StackView {
                    w: f32s(wp),
                    cout,
                    kernel: [kh, kw],
                    stride: l.spec.stride,
                    padding: l.spec.padding,
                    scale: a,
                    shift: b,
                    relu: l.relu,
                }
            })
            .collect();
        let [n, cin, h, w] = dims;
        let Some(geoms) = conv::stack_geometries(n, cin, h, w, &views) else {
            return compose_stack(x, layers);
        };
        let Some(last) = geoms.last().copied() else {
            return x;
        };
        let xp = contiguous(x);
        let out = timed(Op::ConvStack, || {
            conv::stack_forward(&geoms, &views, f32s(&xp))
        });
        tensor(out, [n, last.cout, last.out_h(), last.out_w()])
    }
}
