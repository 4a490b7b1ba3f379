//! Per-example gradients for DP-SGD, in the book-keeping style (Bu et al. 2023): one
//! forward and one backward pass over the whole batch.
//!
//! While [`collect`] runs a backward pass, the autodiff nodes of fedssl's parameterized
//! layers (convolution, linear, group normalization; `kernels/autodiff.rs`) do three things
//! instead of summing their weight gradient over the batch:
//! - propagate the input gradient as usual;
//! - add each record's squared gradient norm for their parameters to the context, computed
//!   exactly without materializing what does not fit: per record, the cheaper of its
//!   `[out, in]` gradient or the ghost norm `Σ_{t,u} (a_t·a_u)(g_t·g_u)` over its rows
//!   (Goodfellow 2015; Li et al. 2022);
//! - keep what the weighted gradient `Σ_r c_r·g_r` needs (the layer's input and output
//!   gradient), to be formed once the clip factors `c_r = min(1, C/‖g_r‖)` are known: for a
//!   convolution, the batched weight-gradient kernel on the output gradient scaled per image.
//!
//! Rows belong to records through an owner table: image `i` of the batch belongs to record
//! `owner[i]` (two views of one record are two images of the same record); a layer whose
//! batch has `s` rows per image (a decoder on the cells of a feature map) maps row `j` to
//! image `j / s`, and one with one row per record (a head on a record's views joined side
//! by side, as reordering's) maps row `j` to image `j`, the first view of record `j`. A parameter used by two operations in one pass would need the norm of the
//! sum of its two contributions: that is refused, as is any parameter that received a
//! gradient outside these nodes (checked by the trainer after the pass).

use std::cell::RefCell;
use std::collections::HashSet;

use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::NodeId;
use burn::prelude::*;

use super::cpu::conv::{self, ConvGeom};
use super::{ConvSpec, Kernels};

/// Forms a parameter's weighted gradient from per-record factors and registers it.
type Finish = Box<dyn FnOnce(&[f32], &mut Gradients)>;

struct Ctx {
    owner: Vec<u32>,
    records: usize,
    sq_norms: Vec<f64>,
    finish: Vec<Finish>,
    params: HashSet<NodeId>,
    error: Option<String>,
}

thread_local! {
    static CTX: RefCell<Option<Ctx>> = const { RefCell::new(None) };
}

/// What a backward pass under [`collect`] gathered.
pub struct PerExample {
    /// Squared L2 norm of each record's gradient over every parameter covered.
    pub sq_norms: Vec<f64>,
    /// The parameters covered (their autodiff node ids).
    pub params: HashSet<NodeId>,
    finish: Vec<Finish>,
    error: Option<String>,
}

impl PerExample {
    /// Registers, for every covered parameter, `Σ_r factors[r]·g_r` into `grads` (the
    /// gradients of burn's autodiff backend, as `loss.backward()` returned them).
    pub fn finish<G: 'static>(self, factors: &[f32], grads: &mut G) -> Result<(), String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let Some(grads) = (grads as &mut dyn std::any::Any).downcast_mut::<Gradients>() else {
            return Err("per-example gradients need burn's autodiff backend".into());
        };
        if factors.len() != self.sq_norms.len() {
            return Err(format!(
                "{} clip factors for {} records",
                factors.len(),
                self.sq_norms.len()
            ));
        }
        for f in self.finish {
            f(factors, grads);
        }
        Ok(())
    }
}

/// Runs `backward` with per-example bookkeeping for `records` records, batch image `i`
/// belonging to record `owner[i]`.
pub fn collect<T>(
    owner: Vec<u32>,
    records: usize,
    backward: impl FnOnce() -> T,
) -> (T, PerExample) {
    CTX.with(|c| {
        *c.borrow_mut() = Some(Ctx {
            owner,
            records,
            sq_norms: vec![0.0; records],
            finish: Vec::new(),
            params: HashSet::new(),
            error: None,
        })
    });
    let out = backward();
    let ctx = CTX.with(|c| c.borrow_mut().take());
    let ctx = ctx.unwrap_or_else(|| unreachable!("the context set above is still there"));
    (
        out,
        PerExample {
            sq_norms: ctx.sq_norms,
            params: ctx.params,
            finish: ctx.finish,
            error: ctx.error,
        },
    )
}

/// Whether a backward pass is collecting per-example gradients on this thread.
pub(crate) fn active() -> bool {
    CTX.with(|c| c.borrow().is_some())
}

/// Records a failure the trainer reports after the pass.
pub(crate) fn fail(message: String) {
    CTX.with(|c| {
        if let Some(ctx) = c.borrow_mut().as_mut() {
            ctx.error.get_or_insert(message);
        }
    });
}

/// The record of each of `rows` rows (`None`: rows and the batch's images do not divide
/// into each other). `s` rows per image map row `j` to image `j / s`; fewer rows than
/// images (a head on every record's views joined side by side: images are laid out
/// view-major, `n / rows` per record) map row `j` to image `j`, the first view of record `j`.
fn row_owner(rows: usize) -> Option<(Vec<u32>, usize)> {
    CTX.with(|c| {
        let c = c.borrow();
        let ctx = c.as_ref()?;
        let n = ctx.owner.len();
        if n == 0 || rows == 0 {
            return None;
        }
        if rows < n {
            return n
                .is_multiple_of(rows)
                .then(|| (ctx.owner[..rows].to_vec(), ctx.records));
        }
        if !rows.is_multiple_of(n) {
            return None;
        }
        let per = rows / n;
        Some(((0..rows).map(|j| ctx.owner[j / per]).collect(), ctx.records))
    })
}

/// Adds a parameter's per-record squared norms and how to finish its gradient.
fn add(node: NodeId, sq: &[f64], finish: Finish) {
    CTX.with(|c| {
        let mut c = c.borrow_mut();
        let Some(ctx) = c.as_mut() else {
            return;
        };
        if !ctx.params.insert(node) {
            ctx.error.get_or_insert(
                "a parameter is used by two operations in one step; per-example gradients need one use per step".into(),
            );
            return;
        }
        for (t, s) in ctx.sq_norms.iter_mut().zip(sq) {
            *t += s;
        }
        ctx.finish.push(finish);
    });
}

fn values<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Vec<f32> {
    t.clone()
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
}

fn factors_tensor<B: Backend>(f: Vec<f32>, dev: &B::Device) -> Tensor<B, 1> {
    let n = f.len();
    Tensor::from_data(TensorData::new(f, [n]), dev)
}

/// A convolution's weight (node `node`): per-record norms now, the weighted gradient later.
pub(crate) fn conv<B: Kernels>(
    node: NodeId,
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    grad: Tensor<B, 4>,
    spec: ConvSpec,
) {
    let [n, cin, h, w] = x.dims();
    let [cout, _, kh, kw] = weight.dims();
    let Some((owner, records)) = row_owner(n) else {
        return fail(format!("a convolution saw {n} images, not the batch's"));
    };
    let g = ConvGeom::new([n, cin, h, w], cout, [kh, kw], spec.stride, spec.padding);
    let sq = conv::record_sq_norms(&g, &values(&x), &values(&grad), &owner, records);
    add(
        node,
        &sq,
        Box::new(move |c: &[f32], grads: &mut Gradients| {
            let per_image: Vec<f32> = owner.iter().map(|&r| c[r as usize]).collect();
            let scale = factors_tensor::<B>(per_image, &grad.device()).reshape([n, 1, 1, 1]);
            let (_, dw) = B::kernel_conv2d_backward(x, weight, grad.mul(scale), spec, false);
            grads.register::<B>(node, dw.into_primitive().tensor());
        }),
    );
}

/// A linear layer's weight and bias: per-record norms (ghost or materialized, whichever
/// is cheaper per record), the weighted gradients later.
pub(crate) fn linear<B: Kernels>(
    weight_node: Option<NodeId>,
    bias_node: Option<NodeId>,
    x: Tensor<B, 2>,
    grad: Tensor<B, 2>,
) {
    let [m, din] = x.dims();
    let dout = grad.dims()[1];
    let Some((owner, records)) = row_owner(m) else {
        return fail(format!(
            "a linear layer saw {m} rows, which do not divide into the batch's images"
        ));
    };
    let (xv, gv) = (values(&x), values(&grad));
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); records];
    for (j, &r) in owner.iter().enumerate() {
        rows[r as usize].push(j);
    }
    let dot = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(&p, &q)| p as f64 * q as f64)
            .sum::<f64>()
    };
    let xr = |j: usize| &xv[j * din..(j + 1) * din];
    let gr = |j: usize| &gv[j * dout..(j + 1) * dout];
    if let Some(node) = weight_node {
        let sq: Vec<f64> = rows
            .iter()
            .map(|js| {
                let k = js.len();
                if k * k * (din + dout) <= k * din * dout {
                    // Ghost norm over the record's rows.
                    js.iter()
                        .flat_map(|&t| js.iter().map(move |&u| (t, u)))
                        .map(|(t, u)| dot(xr(t), xr(u)) * dot(gr(t), gr(u)))
                        .sum()
                } else {
                    let mut gw = vec![0.0f64; din * dout];
                    for &t in js {
                        for (i, &a) in xr(t).iter().enumerate() {
                            for (o, &b) in gr(t).iter().enumerate() {
                                gw[i * dout + o] += a as f64 * b as f64;
                            }
                        }
                    }
                    gw.iter().map(|v| v * v).sum()
                }
            })
            .collect();
        let (x, grad, owner) = (x.clone(), grad.clone(), owner.clone());
        add(
            node,
            &sq,
            Box::new(move |c: &[f32], grads: &mut Gradients| {
                let per_row: Vec<f32> = owner.iter().map(|&r| c[r as usize]).collect();
                let scale = factors_tensor::<B>(per_row, &grad.device()).reshape([m, 1]);
                let dw = x.transpose().matmul(grad.mul(scale));
                grads.register::<B>(node, dw.into_primitive().tensor());
            }),
        );
    }
    if let Some(node) = bias_node {
        let sq: Vec<f64> = rows
            .iter()
            .map(|js| {
                (0..dout)
                    .map(|o| {
                        js.iter()
                            .map(|&t| gv[t * dout + o] as f64)
                            .sum::<f64>()
                            .powi(2)
                    })
                    .sum()
            })
            .collect();
        add(
            node,
            &sq,
            Box::new(move |c: &[f32], grads: &mut Gradients| {
                let per_row: Vec<f32> = owner.iter().map(|&r| c[r as usize]).collect();
                let scale = factors_tensor::<B>(per_row, &grad.device()).reshape([m, 1]);
                let db = grad.mul(scale).sum_dim(0).reshape([dout]);
                grads.register::<B>(node, db.into_primitive().tensor());
            }),
        );
    }
}

/// A per-channel parameter (γ or β of a group normalization) whose gradient is given per
/// image (`[n, c]`).
pub(crate) fn per_image<B: Kernels>(node: NodeId, per_image: Tensor<B, 2>) {
    let [n, ch] = per_image.dims();
    let Some((owner, records)) = row_owner(n) else {
        return fail(format!("a normalization saw {n} images, not the batch's"));
    };
    let v = values(&per_image);
    let mut sums = vec![0.0f64; records * ch];
    for (i, &r) in owner.iter().enumerate() {
        for c in 0..ch {
            sums[r as usize * ch + c] += v[i * ch + c] as f64;
        }
    }
    let sq: Vec<f64> = sums
        .chunks(ch)
        .map(|s| s.iter().map(|v| v * v).sum())
        .collect();
    add(
        node,
        &sq,
        Box::new(move |c: &[f32], grads: &mut Gradients| {
            let w: Vec<f32> = owner.iter().map(|&r| c[r as usize]).collect();
            let scale = factors_tensor::<B>(w, &per_image.device()).reshape([n, 1]);
            let g = per_image.mul(scale).sum_dim(0).reshape([ch]);
            grads.register::<B>(node, g.into_primitive().tensor());
        }),
    );
}
