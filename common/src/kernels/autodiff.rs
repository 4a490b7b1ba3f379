//! [`Kernels`] on `Autodiff<B>`: each operation is one node of burn's autodiff graph whose
//! backward step calls `B`'s gradient kernels. When `B` has no own kernels the provided
//! implementations (burn's ops on the autodiff backend itself) are used instead, so burn
//! differentiates them as usual.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::prelude::*;
use burn::tensor::backend::BackendTypes;
use burn::tensor::TensorPrimitive;

use super::{reference, ConvSpec, Kernels, NormGrads, NormKind, NormSaved};

type Prim<B> = <B as BackendTypes>::FloatTensorPrimitive;
/// burn-autodiff's tensor (its type is not exported by name).
type AutodiffTensor<B> = <Autodiff<B> as BackendTypes>::FloatTensorPrimitive;

fn wrap<B: Backend, const D: usize>(p: Prim<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

fn unwrap<B: Backend, const D: usize>(t: Tensor<B, D>) -> Prim<B> {
    t.into_primitive().tensor()
}

fn ad<B: Backend, C: CheckpointStrategy, const D: usize>(
    t: Tensor<Autodiff<B, C>, D>,
) -> AutodiffTensor<B> {
    t.into_primitive().tensor()
}

fn from_ad<B: Backend, C: CheckpointStrategy, const D: usize>(
    t: AutodiffTensor<B>,
) -> Tensor<Autodiff<B, C>, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

#[derive(Debug)]
struct ConvBackward;

impl<B: Kernels> Backward<B, 2> for ConvBackward {
    type State = (Prim<B>, Prim<B>, ConvSpec);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, w, spec) = ops.state;
        let (dx, dw) =
            B::kernel_conv2d_backward(wrap(x), wrap(w), wrap(grad), spec, node_x.is_some());
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<B>(node.id, unwrap(dx));
        }
        if let Some(node) = node_w {
            grads.register::<B>(node.id, unwrap(dw));
        }
    }
}

#[derive(Debug)]
struct NormBackward;

impl<B: Kernels> Backward<B, 3> for NormBackward {
    type State = NormSaved<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_y, node_scale, node_shift] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (dy, dscale, dshift): NormGrads<B> = B::kernel_norm_backward(ops.state, wrap(grad));
        for (node, g) in [
            (node_y, unwrap(dy)),
            (node_scale, unwrap(dscale)),
            (node_shift, unwrap(dshift)),
        ] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// Registers a normalization node (or not, when nothing it reads is tracked).
fn norm_node<B: Kernels, C: CheckpointStrategy>(
    inputs: [&AutodiffTensor<B>; 3],
    out: Prim<B>,
    state: impl FnOnce() -> NormSaved<B>,
) -> AutodiffTensor<B> {
    let nodes = inputs.map(|t| t.node.clone());
    match NormBackward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state(), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

impl<B: Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
    const OWN_KERNELS: bool = B::OWN_KERNELS;

    fn kernel_conv2d(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        spec: ConvSpec,
    ) -> Tensor<Self, 4> {
        if !B::OWN_KERNELS {
            return reference::conv2d(x, weight, spec);
        }
        let (x, w) = (ad(x), ad(weight));
        let out = unwrap(B::kernel_conv2d(
            wrap(x.primitive.clone()),
            wrap(w.primitive.clone()),
            spec,
        ));
        let prep = ConvBackward
            .prepare::<C>([x.node.clone(), w.node.clone()])
            .compute_bound()
            .stateful();
        from_ad(match prep {
            OpsKind::Tracked(prep) => prep.finish((x.primitive, w.primitive, spec), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        })
    }

    fn kernel_batch_norm(
        y: Tensor<Self, 4>,
        gamma: Tensor<Self, 1>,
        beta: Tensor<Self, 1>,
        eps: f64,
        relu: bool,
    ) -> (Tensor<Self, 4>, Tensor<Self, 1>, Tensor<Self, 1>) {
        if !B::OWN_KERNELS {
            return reference::batch_norm(y, gamma, beta, eps, relu);
        }
        let (y, gamma, beta) = (ad(y), ad(gamma), ad(beta));
        let (out, mean, var) = B::kernel_batch_norm(
            wrap(y.primitive.clone()),
            wrap(gamma.primitive.clone()),
            wrap(beta.primitive.clone()),
            eps,
            relu,
        );
        let (out, mean, var) = (unwrap(out), unwrap(mean), unwrap(var));
        let node = norm_node::<B, C>([&y, &gamma, &beta], out.clone(), || NormSaved {
            y: wrap(y.primitive.clone()),
            out: wrap(out),
            relu,
            kind: NormKind::BatchNorm {
                mean: wrap(mean.clone()),
                var: wrap(var.clone()),
                gamma: wrap(gamma.primitive.clone()),
                eps,
            },
        });
        (
            from_ad(node),
            from_ad(AutodiffTensor::new(mean)),
            from_ad(AutodiffTensor::new(var)),
        )
    }

    fn kernel_affine(
        y: Tensor<Self, 4>,
        scale: Tensor<Self, 1>,
        shift: Tensor<Self, 1>,
        relu: bool,
    ) -> Tensor<Self, 4> {
        if !B::OWN_KERNELS {
            return reference::affine(y, scale, shift, relu);
        }
        let (y, scale, shift) = (ad(y), ad(scale), ad(shift));
        let out = unwrap(B::kernel_affine(
            wrap(y.primitive.clone()),
            wrap(scale.primitive.clone()),
            wrap(shift.primitive.clone()),
            relu,
        ));
        from_ad(norm_node::<B, C>([&y, &scale, &shift], out.clone(), || {
            NormSaved {
                y: wrap(y.primitive.clone()),
                out: wrap(out),
                relu,
                kind: NormKind::Affine {
                    scale: wrap(scale.primitive.clone()),
                },
            }
        }))
    }
}
