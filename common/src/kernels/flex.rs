//! [`Kernels`] on burn's Flex backend: tensors are viewed as contiguous `f32` slices
//! (zero-copy when they already are) and handed to the [`cpu`](super::cpu) kernels.
//! Other dtypes, and shapes the kernels do not take, go to burn's ops.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::DType;

use super::cpu::conv::{self, ConvGeom, StackLayer as StackView};
use super::cpu::norm::{self, Nc};
use super::profile::{timed, Op};
use super::{compose_stack, reference, ConvSpec, Kernels, NormGrads, NormSaved, StackLayer};

/// The tensor's storage as one contiguous buffer (a copy only when it is a strided view).
fn contiguous<const D: usize>(t: Tensor<Flex, D>) -> FlexTensor {
    t.into_primitive().tensor().to_contiguous()
}

/// The tensor's values (`None` when they are not a contiguous f32 buffer).
fn values(t: &FlexTensor) -> Option<&[f32]> {
    t.as_slice::<f32>()
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<Flex, D> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn all_f32<const D: usize>(ts: &[&Tensor<Flex, D>]) -> bool {
    ts.iter().all(|t| t.dtype() == DType::F32)
}

fn geometry(x: [usize; 4], w: [usize; 4], spec: ConvSpec) -> Option<ConvGeom> {
    let g = ConvGeom {
        n: x[0],
        cin: x[1],
        h: x[2],
        w: x[3],
        cout: w[0],
        kh: w[2],
        kw: w[3],
        sh: spec.stride[0],
        sw: spec.stride[1],
        ph: spec.padding[0],
        pw: spec.padding[1],
    };
    (w[1] == x[1] && g.is_valid()).then_some(g)
}

fn nc(d: [usize; 4]) -> Nc {
    Nc {
        n: d[0],
        c: d[1],
        s: d[2] * d[3],
    }
}

fn vec1(t: Tensor<Flex, 1>) -> Option<Vec<f32>> {
    let p = contiguous(t);
    values(&p).map(<[f32]>::to_vec)
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
        let (Some(xs), Some(ws)) = (values(&xp), values(&wp)) else {
            unreachable_layout()
        };
        let out = timed(Op::ConvForward, || conv::forward(&g, xs, ws));
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
        let (Some(xs), Some(ws), Some(gs)) = (values(&xp), values(&wp), values(&gp)) else {
            unreachable_layout()
        };
        let (dx, dw) = timed(Op::ConvBackward, || conv::backward(&g, xs, ws, gs, need_x));
        (
            dx.map(|dx| tensor(dx, [g.n, g.cin, g.h, g.w])),
            tensor(dw, wdims),
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
        if !all_f32(&[&y])
            || !all_f32(&[&gamma, &beta])
            || gamma.dims() != [d.c]
            || beta.dims() != [d.c]
        {
            return reference::batch_norm(y, gamma, beta, eps, relu);
        }
        let yp = contiguous(y);
        let (Some(ys), Some(gv), Some(bv)) = (values(&yp), vec1(gamma), vec1(beta)) else {
            unreachable_layout()
        };
        let (out, mean, var) = timed(Op::NormForward, || {
            norm::bn_forward(d, ys, &gv, &bv, eps as f32, relu)
        });
        (tensor(out, dims), tensor(mean, [d.c]), tensor(var, [d.c]))
    }

    fn kernel_batch_norm_backward(
        saved: NormSaved<Self>,
        grad: Tensor<Self, 4>,
    ) -> NormGrads<Self> {
        let dims = grad.dims();
        let d = nc(dims);
        if !norm_inputs_ok(&saved, &grad) {
            return reference::batch_norm_backward(saved, grad);
        }
        let (yp, op, gp) = (contiguous(saved.y), contiguous(saved.out), contiguous(grad));
        let (Some(ys), Some(os), Some(gs)) = (values(&yp), values(&op), values(&gp)) else {
            unreachable_layout()
        };
        let (Some(mean), Some(var), Some(gamma)) =
            (vec1(saved.a), vec1(saved.b), vec1(saved.gamma))
        else {
            unreachable_layout()
        };
        let (dy, dgamma, dbeta) = timed(Op::NormBackward, || {
            norm::bn_backward(
                d,
                ys,
                os,
                gs,
                &gamma,
                &mean,
                &var,
                saved.eps as f32,
                saved.relu,
            )
        });
        (
            tensor(dy, dims),
            tensor(dgamma, [d.c]),
            tensor(dbeta, [d.c]),
        )
    }

    fn kernel_affine(
        y: Tensor<Self, 4>,
        scale: Tensor<Self, 1>,
        shift: Tensor<Self, 1>,
        relu: bool,
    ) -> Tensor<Self, 4> {
        let dims = y.dims();
        let d = nc(dims);
        if !all_f32(&[&y])
            || !all_f32(&[&scale, &shift])
            || scale.dims() != [d.c]
            || shift.dims() != [d.c]
        {
            return reference::affine(y, scale, shift, relu);
        }
        let yp = contiguous(y);
        let (Some(ys), Some(a), Some(b)) = (values(&yp), vec1(scale), vec1(shift)) else {
            unreachable_layout()
        };
        let out = timed(Op::NormForward, || {
            norm::affine_forward(d, ys, &a, &b, relu)
        });
        tensor(out, dims)
    }

    fn kernel_conv_stack(x: Tensor<Self, 4>, layers: Vec<StackLayer<Self>>) -> Tensor<Self, 4> {
        let [n, cin, h, w] = x.dims();
        let f32s = all_f32(&[&x]) && layers.iter().all(|l| all_f32(&[&l.weight]));
        let params: Option<Vec<_>> = layers
            .iter()
            .map(|l| {
                let wp = contiguous(l.weight.clone());
                let (a, b) = (vec1(l.scale.clone())?, vec1(l.shift.clone())?);
                Some((wp, a, b))
            })
            .collect();
        let (true, Some(params)) = (f32s, params) else {
            return compose_stack(x, layers);
        };
        let views: Option<Vec<StackView<'_>>> = layers
            .iter()
            .zip(&params)
            .map(|(l, (wp, a, b))| {
                let [cout, _, kh, kw] = l.weight.dims();
                Some(StackView {
                    w: values(wp)?,
                    cout,
                    kernel: [kh, kw],
                    stride: l.spec.stride,
                    padding: l.spec.padding,
                    scale: a,
                    shift: b,
                    relu: l.relu,
                })
            })
            .collect();
        let geoms = views
            .as_ref()
            .and_then(|v| conv::stack_geometries(n, cin, h, w, v));
        let (Some(views), Some(geoms)) = (views, geoms) else {
            return compose_stack(x, layers);
        };
        let Some(last) = geoms.last().copied() else {
            return x;
        };
        let xp = contiguous(x);
        let Some(xs) = values(&xp) else {
            unreachable_layout()
        };
        let out = timed(Op::ConvStack, || conv::stack_forward(&geoms, &views, xs));
        tensor(out, [n, last.cout, last.out_h(), last.out_w()])
    }

    fn kernel_affine_backward(saved: NormSaved<Self>, grad: Tensor<Self, 4>) -> NormGrads<Self> {
        let dims = grad.dims();
        let d = nc(dims);
        if !norm_inputs_ok(&saved, &grad) {
            return reference::affine_backward(saved, grad);
        }
        let (yp, op, gp) = (contiguous(saved.y), contiguous(saved.out), contiguous(grad));
        let (Some(ys), Some(os), Some(gs)) = (values(&yp), values(&op), values(&gp)) else {
            unreachable_layout()
        };
        let Some(scale) = vec1(saved.a) else {
            unreachable_layout()
        };
        let (dy, dscale, dshift) = timed(Op::NormBackward, || {
            norm::affine_backward(d, ys, os, gs, &scale, saved.relu)
        });
        (
            tensor(dy, dims),
            tensor(dscale, [d.c]),
            tensor(dshift, [d.c]),
        )
    }
}

fn norm_inputs_ok(saved: &NormSaved<Flex>, grad: &Tensor<Flex, 4>) -> bool {
    let dims = grad.dims();
    let c = dims[1];
    all_f32(&[&saved.y, &saved.out, grad])
        && all_f32(&[&saved.a, &saved.b, &saved.gamma])
        && saved.y.dims() == dims
        && saved.out.dims() == dims
        && [&saved.a, &saved.b, &saved.gamma]
            .iter()
            .all(|t| t.dims() == [c])
}

/// `to_contiguous` always yields a contiguous buffer and the dtype was checked to be f32.
fn unreachable_layout() -> ! {
    unreachable!("a contiguous f32 Flex tensor has an f32 slice")
}
