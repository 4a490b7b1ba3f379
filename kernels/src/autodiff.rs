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

use super::{per_example, reference, ConvSpec, GnSaved, Kernels, NormGrads, NormKind, NormSaved};

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
        if let (true, Some(nw)) = (per_example::active(), &node_w) {
            // DP-SGD: the input gradient now, the weight's per record (see per_example).
            if let Some(node) = node_x {
                let dx = B::kernel_conv2d_input_grad(
                    wrap(x.clone()),
                    wrap(w.clone()),
                    wrap(grad.clone()),
                    spec,
                );
                grads.register::<B>(node.id, unwrap(dx));
            }
            per_example::conv::<B>(nw.id, wrap(x), wrap(w), wrap(grad), spec);
            return;
        }
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
        if per_example::active() && (node_scale.is_some() || node_shift.is_some()) {
            per_example::fail(
                "BatchNorm mixes the records of a batch; DP-SGD needs group normalization (plan.norm = \"group\")".into(),
            );
        }
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

#[derive(Debug)]
struct GroupNormBackward;

impl<B: Kernels> Backward<B, 3> for GroupNormBackward {
    type State = GnSaved<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (dx, dgamma, dbeta) = B::kernel_group_norm_backward(ops.state, wrap(grad));
        if let Some(node) = node_x {
            grads.register::<B>(node.id, unwrap(dx));
        }
        let dp = per_example::active();
        for (node, per_image) in [(node_gamma, dgamma), (node_beta, dbeta)] {
            let Some(node) = node else { continue };
            if dp {
                per_example::per_image::<B>(node.id, per_image);
            } else {
                let c = per_image.dims()[1];
                grads.register::<B>(node.id, unwrap(per_image.sum_dim(0).reshape([c])));
            }
        }
    }
}

#[derive(Debug)]
struct LinearBackward;

impl<B: Kernels> Backward<B, 3> for LinearBackward {
    type State = (Prim<B>, Prim<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad: Tensor<B, 2> = wrap(grads.consume::<B>(&ops.node));
        let (x, w) = ops.state;
        let (x, w): (Tensor<B, 2>, Tensor<B, 2>) = (wrap(x), wrap(w));
        if let Some(node) = node_x {
            grads.register::<B>(node.id, unwrap(grad.clone().matmul(w.transpose())));
        }
        if per_example::active() {
            per_example::linear::<B>(node_w.map(|n| n.id), node_b.map(|n| n.id), x, grad);
            return;
        }
        if let Some(node) = node_w {
            grads.register::<B>(node.id, unwrap(x.transpose().matmul(grad.clone())));
        }
        if let Some(node) = node_b {
            let d = grad.dims()[1];
            grads.register::<B>(node.id, unwrap(grad.sum_dim(0).reshape([d])));
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

    fn kernel_group_norm(
        x: Tensor<Self, 4>,
        gamma: Tensor<Self, 1>,
        beta: Tensor<Self, 1>,
        groups: usize,
        eps: f64,
        relu: bool,
    ) -> Tensor<Self, 4> {
        if !B::OWN_KERNELS {
            return reference::group_norm(x, gamma, beta, groups, eps, relu).0;
        }
        let (xa, ga, ba) = (ad(x), ad(gamma), ad(beta));
        let (out, saved) = B::kernel_group_norm_saved(
            wrap(xa.primitive.clone()),
            wrap(ga.primitive.clone()),
            wrap(ba.primitive.clone()),
            groups,
            eps,
            relu,
        );
        let nodes = [xa.node.clone(), ga.node.clone(), ba.node.clone()];
        let out = unwrap(out);
        let node = match GroupNormBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(saved, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        from_ad(node)
    }

    fn kernel_linear(
        x: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
    ) -> Tensor<Self, 2> {
        if !B::OWN_KERNELS {
            return reference::linear(x, weight, bias);
        }
        // Without a bias, an untracked zero one: the node's third parent is then absent.
        let bias = bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[1]], &weight.device()));
        let (xa, wa, ba) = (ad(x), ad(weight), ad(bias));
        let out = unwrap(B::kernel_linear(
            wrap(xa.primitive.clone()),
            wrap(wa.primitive.clone()),
            Some(wrap(ba.primitive.clone())),
        ));
        let prep = LinearBackward
            .prepare::<C>([xa.node.clone(), wa.node.clone(), ba.node.clone()])
            .compute_bound()
            .stateful();
        from_ad(match prep {
            OpsKind::Tracked(prep) => prep.finish((xa.primitive, wa.primitive), out),
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
