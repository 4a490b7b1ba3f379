//! The kernels against burn's own ops (forward values and gradients, through burn's
//! autodiff) and against central finite differences on tiny shapes.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::{BnMode, ConvNetSConfig, ProjectorConfig};
use fedssl_kernels::*;

type A = Autodiff<Flex>;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn tensor<B: Backend, const D: usize>(v: Vec<f32>, shape: [usize; D]) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// max |a − b| / max |b|: the error relative to the tensor's scale.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    let e = rel_err(a, b);
    assert!(e <= tol, "{what}: relative error {e:.2e} > {tol:.0e}");
}

/// (n, cin, h, w, cout, k, stride, pad): odd sizes, strides 1–3, 1×1 and 5×5 kernels, no
/// padding, and batches large enough to take the grouped (several images per GEMM) paths,
/// both sequential and parallel over groups.
const GEOMETRIES: [[usize; 8]; 9] = [
    [2, 1, 7, 7, 3, 3, 1, 1],
    [3, 2, 8, 7, 4, 3, 2, 1],
    [2, 3, 5, 6, 2, 1, 1, 0],
    [2, 2, 9, 9, 3, 5, 2, 2],
    [2, 2, 6, 6, 3, 3, 1, 0],
    [1, 2, 5, 5, 2, 3, 3, 1],
    [70, 3, 4, 4, 5, 3, 1, 1],
    [200, 2, 4, 4, 3, 3, 1, 1],
    [40, 4, 7, 7, 6, 3, 2, 1],
];

fn case(g: [usize; 8], seed: u64) -> (Vec<f32>, [usize; 4], Vec<f32>, [usize; 4], ConvSpec) {
    let [n, cin, h, w, cout, k, s, p] = g;
    let spec = ConvSpec {
        stride: [s, s],
        padding: [p, p],
    };
    (
        random(n * cin * h * w, seed),
        [n, cin, h, w],
        random(cout * cin * k * k, seed + 1),
        [cout, cin, k, k],
        spec,
    )
}

#[test]
fn conv_forward_matches_burn() {
    for (i, g) in GEOMETRIES.into_iter().enumerate() {
        let (x, xs, w, ws, spec) = case(g, i as u64);
        let ours = Flex::kernel_conv2d(tensor(x.clone(), xs), tensor(w.clone(), ws), spec);
        let theirs = reference::conv2d::<Flex>(tensor(x, xs), tensor(w, ws), spec);
        assert_eq!(ours.dims(), theirs.dims(), "{g:?}");
        assert_close(
            &values(ours),
            &values(theirs),
            1e-5,
            &format!("forward {g:?}"),
        );
    }
}

#[test]
fn conv_gradients_match_burn() {
    for (i, g) in GEOMETRIES.into_iter().enumerate() {
        let (x, xs, w, ws, spec) = case(g, 10 + i as u64);
        let out = reference::conv2d::<Flex>(tensor(x.clone(), xs), tensor(w.clone(), ws), spec);
        let gy = random(out.dims().iter().product(), 99);
        let gs = out.dims();
        for need_x in [true, false] {
            let (dx, dw) = Flex::kernel_conv2d_backward(
                tensor(x.clone(), xs),
                tensor(w.clone(), ws),
                tensor(gy.clone(), gs),
                spec,
                need_x,
            );
            let (rdx, rdw) = reference::conv2d_backward::<Flex>(
                tensor(x.clone(), xs),
                tensor(w.clone(), ws),
                tensor(gy.clone(), gs),
                spec,
                true,
            );
            assert_close(&values(dw), &values(rdw), 1e-4, &format!("dw {g:?}"));
            match dx {
                Some(dx) => {
                    let rdx = rdx.unwrap();
                    assert_eq!(dx.dims(), rdx.dims());
                    assert_close(&values(dx), &values(rdx), 1e-4, &format!("dx {g:?}"));
                }
                None => assert!(!need_x, "dx missing"),
            }
        }
    }
}

/// Gradients of Σ out·r through burn's autodiff, our node against burn's ops.
#[test]
fn conv_autodiff_node_matches_burn_autodiff() {
    let (x, xs, w, ws, spec) = case([3, 2, 8, 7, 4, 3, 2, 1], 5);
    let grads = |ours: bool| {
        let xt = tensor::<A, 4>(x.clone(), xs).require_grad();
        let wt = tensor::<A, 4>(w.clone(), ws).require_grad();
        let out = if ours {
            A::kernel_conv2d(xt.clone(), wt.clone(), spec)
        } else {
            reference::conv2d(xt.clone(), wt.clone(), spec)
        };
        let r = tensor::<A, 4>(random(out.dims().iter().product(), 7), out.dims());
        let g = out.mul(r).sum().backward();
        (values(xt.grad(&g).unwrap()), values(wt.grad(&g).unwrap()))
    };
    let (ours, theirs) = (grads(true), grads(false));
    assert_close(&ours.0, &theirs.0, 1e-4, "dx");
    assert_close(&ours.1, &theirs.1, 1e-4, "dw");
}

/// Gradients of Σ f(·)·r at `at` by central differences (f evaluated in f32, summed in f64).
fn finite_differences(at: &[f32], h: f32, f: impl Fn(&[f32]) -> Vec<f32>, r: &[f32]) -> Vec<f32> {
    let loss = |v: &[f32]| -> f64 { f(v).iter().zip(r).map(|(a, b)| *a as f64 * *b as f64).sum() };
    (0..at.len())
        .map(|i| {
            let (mut up, mut down) = (at.to_vec(), at.to_vec());
            up[i] += h;
            down[i] -= h;
            ((loss(&up) - loss(&down)) / (2.0 * h as f64)) as f32
        })
        .collect()
}

#[test]
fn conv_gradients_match_finite_differences() {
    let (x, xs, w, ws, spec) = case([2, 2, 5, 5, 3, 3, 2, 1], 21);
    let out = Flex::kernel_conv2d(tensor(x.clone(), xs), tensor(w.clone(), ws), spec);
    let (os, r) = (out.dims(), random(out.dims().iter().product(), 22));
    let (dx, dw) = Flex::kernel_conv2d_backward(
        tensor(x.clone(), xs),
        tensor(w.clone(), ws),
        tensor(r.clone(), os),
        spec,
        true,
    );
    let fx = finite_differences(
        &x,
        1e-2,
        |v| {
            values(Flex::kernel_conv2d(
                tensor(v.to_vec(), xs),
                tensor(w.clone(), ws),
                spec,
            ))
        },
        &r,
    );
    let fw = finite_differences(
        &w,
        1e-2,
        |v| {
            values(Flex::kernel_conv2d(
                tensor(x.clone(), xs),
                tensor(v.to_vec(), ws),
                spec,
            ))
        },
        &r,
    );
    assert_close(&values(dx.unwrap()), &fx, 1e-3, "dx vs finite differences");
    assert_close(&values(dw), &fw, 1e-3, "dw vs finite differences");
}

/// Runs batch norm (`bn = true`) or the affine map on `Autodiff<Flex>`, ours or burn's, and
/// returns (output, dy, dgamma-or-dscale, dbeta-or-dshift, mean, var).
fn norm_run(bn: bool, relu: bool, ours: bool, dims: [usize; 4], seed: u64) -> [Vec<f32>; 6] {
    let c = dims[1];
    let n: usize = dims.iter().product();
    let y = tensor::<A, 4>(
        random(n, seed).iter().map(|v| 3.0 * v + 0.5).collect(),
        dims,
    )
    .require_grad();
    let a =
        tensor::<A, 1>(random(c, seed + 1).iter().map(|v| 1.0 + v).collect(), [c]).require_grad();
    let b = tensor::<A, 1>(random(c, seed + 2), [c]).require_grad();
    let (out, mean, var) = if bn {
        if ours {
            A::kernel_batch_norm(y.clone(), a.clone(), b.clone(), 1e-5, relu)
        } else {
            reference::batch_norm(y.clone(), a.clone(), b.clone(), 1e-5, relu)
        }
    } else {
        let out = if ours {
            A::kernel_affine(y.clone(), a.clone(), b.clone(), relu)
        } else {
            reference::affine(y.clone(), a.clone(), b.clone(), relu)
        };
        (out, a.clone(), b.clone())
    };
    let r = tensor::<A, 4>(random(n, seed + 3), dims);
    let g = out.clone().mul(r).sum().backward();
    [
        values(out),
        values(y.grad(&g).unwrap()),
        values(a.grad(&g).unwrap()),
        values(b.grad(&g).unwrap()),
        values(mean),
        values(var),
    ]
}

#[test]
fn normalization_matches_burn_forward_and_backward() {
    let names = ["out", "dy", "dscale", "dshift", "mean", "var"];
    for dims in [[4, 3, 5, 5], [64, 8, 2, 3], [3, 5, 1, 1]] {
        for bn in [true, false] {
            for relu in [false, true] {
                let ours = norm_run(bn, relu, true, dims, 3);
                let theirs = norm_run(bn, relu, false, dims, 3);
                for (k, name) in names.iter().enumerate() {
                    assert_close(
                        &ours[k],
                        &theirs[k],
                        1e-4,
                        &format!("{name} (bn {bn}, relu {relu}, {dims:?})"),
                    );
                }
            }
        }
    }
}

#[test]
fn batch_norm_gradients_match_finite_differences() {
    let dims = [3, 2, 3, 3];
    let [dy, dgamma, dbeta] = {
        let [_, dy, dg, db, _, _] = norm_run(true, false, true, dims, 11);
        [dy, dg, db]
    };
    let n: usize = dims.iter().product();
    let y: Vec<f32> = random(n, 11).iter().map(|v| 3.0 * v + 0.5).collect();
    let gamma: Vec<f32> = random(2, 12).iter().map(|v| 1.0 + v).collect();
    let beta = random(2, 13);
    let r = random(n, 14);
    let run = |y: &[f32], g: &[f32], b: &[f32]| {
        let (out, _, _) = Flex::kernel_batch_norm(
            tensor(y.to_vec(), dims),
            tensor(g.to_vec(), [2]),
            tensor(b.to_vec(), [2]),
            1e-5,
            false,
        );
        values(out)
    };
    let fy = finite_differences(&y, 1e-2, |v| run(v, &gamma, &beta), &r);
    let fg = finite_differences(&gamma, 1e-2, |v| run(&y, v, &beta), &r);
    let fb = finite_differences(&beta, 1e-2, |v| run(&y, &gamma, v), &r);
    assert_close(&dy, &fy, 1e-3, "dy vs finite differences");
    assert_close(&dgamma, &fg, 1e-3, "dgamma vs finite differences");
    assert_close(&dbeta, &fb, 1e-3, "dbeta vs finite differences");
}

/// The whole encoder + projector under the SimCLR loss: loss and every parameter gradient
/// with the kernels against the same model on burn's ops.
#[test]
fn encoder_gradients_match_burn_ops() {
    let dev = Default::default();
    <A as Backend>::seed(&dev, 3);
    let enc = ConvNetSConfig::default().init::<A>(&dev);
    let proj = ProjectorConfig::default().init::<A>(&dev);
    let x = tensor::<A, 4>(
        random(16 * 784, 4).iter().map(|v| v.abs()).collect(),
        [16, 1, 28, 28],
    );
    let run = |ops: Ops| {
        let z = proj.forward(enc.forward_with(x.clone(), BnMode::Train, ops));
        let loss = crate::ssl::nt_xent(z.clone().slice(0..8), z.slice(8..16), 0.2);
        let value = values(loss.clone())[0];
        let g = loss.backward();
        let mut grads = Vec::new();
        for b in &enc.blocks {
            grads.push(values(b.conv.weight.val().grad(&g).unwrap()));
            grads.push(values(b.bn.as_ref().unwrap().gamma.val().grad(&g).unwrap()));
            grads.push(values(b.bn.as_ref().unwrap().beta.val().grad(&g).unwrap()));
        }
        grads.push(values(proj.fc1.weight.val().grad(&g).unwrap()));
        (value, grads)
    };
    let (ours, theirs) = (run(Ops::Kernels), run(Ops::Burn));
    assert!(
        (ours.0 - theirs.0).abs() <= 1e-5 * theirs.0.abs(),
        "loss {} vs {}",
        ours.0,
        theirs.0
    );
    for (i, (a, b)) in ours.1.iter().zip(&theirs.1).enumerate() {
        assert_close(a, b, 1e-3, &format!("parameter gradient {i}"));
    }
    // Evaluation mode (running statistics) too.
    let a = values(enc.forward_with(x.clone(), BnMode::Eval, Ops::Kernels));
    let b = values(enc.forward_with(x, BnMode::Eval, Ops::Burn));
    assert_close(&a, &b, 1e-4, "eval-mode features");
}

#[test]
fn input_smaller_than_the_kernel_matches_burn() {
    // 2×2 images under a 3×3 kernel: every output pixel reads padding on some side.
    let x = tensor::<Flex, 4>(random(2 * 2 * 2, 1), [1, 2, 2, 2]);
    let w = tensor::<Flex, 4>(random(2 * 2 * 3 * 3, 2), [2, 2, 3, 3]);
    let spec = ConvSpec {
        stride: [1, 1],
        padding: [1, 1],
    };
    let ours = Flex::kernel_conv2d(x.clone(), w.clone(), spec);
    let theirs = reference::conv2d::<Flex>(x, w, spec);
    assert_close(&values(ours), &values(theirs), 1e-5, "small input");
}

#[test]
fn fused_stack_matches_layer_by_layer_burn_ops() {
    // Three layers: a 3-channel input, 3×3 stride 1, 5×5 stride 2, 1×1 without ReLU; enough
    // images for several groups.
    let (n, cin, h, w) = (37, 3, 11, 9);
    let plan = [(4, 3, 1, 1, true), (6, 5, 2, 2, true), (5, 1, 1, 0, false)];
    let x = random(n * cin * h * w, 40);
    let mut c = cin;
    let layers: Vec<_> = plan
        .iter()
        .enumerate()
        .map(|(i, &(cout, k, s, p, relu))| {
            let weight = random(cout * c * k * k, 41 + i as u64);
            let l = (
                weight,
                [cout, c, k, k],
                s,
                p,
                relu,
                random(cout, 50 + i as u64),
                random(cout, 60 + i as u64),
            );
            c = cout;
            l
        })
        .collect();
    let build = || -> Vec<StackLayer<Flex>> {
        layers
            .iter()
            .map(|(wv, ws, s, p, relu, a, b)| StackLayer {
                weight: tensor(wv.clone(), *ws),
                spec: ConvSpec {
                    stride: [*s, *s],
                    padding: [*p, *p],
                },
                scale: tensor(a.clone(), [a.len()]),
                shift: tensor(b.clone(), [b.len()]),
                relu: *relu,
            })
            .collect()
    };
    let fused = Flex::kernel_conv_stack(tensor::<Flex, 4>(x.clone(), [n, cin, h, w]), build());
    let reference = build()
        .into_iter()
        .fold(tensor::<Flex, 4>(x, [n, cin, h, w]), |t, l| {
            reference::affine(
                reference::conv2d(t, l.weight, l.spec),
                l.scale,
                l.shift,
                l.relu,
            )
        });
    assert_eq!(fused.dims(), reference.dims());
    assert_close(&values(fused), &values(reference), 1e-5, "fused stack");
}
