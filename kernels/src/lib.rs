//! Fast CPU kernels for the layers the encoders use, plugged into burn as a backend
//! extension ([`Kernels`]).
//!
//! Model code calls the methods of [`Kernels`] (`B::kernel_conv2d`, `kernel_batch_norm`,
//! `kernel_affine`, `kernel_conv_stack`) and stays generic over the backend:
//! - on **Flex** (the pure-Rust CPU backend) they run this crate's kernels ([`cpu`]):
//!   convolution forward, input gradient and weight gradient as batched im2col GEMMs,
//!   BatchNorm fused with ReLU in both directions;
//! - on **`Autodiff<B>`** each is one autodiff node whose backward calls `B`'s gradient
//!   kernels, so the graph holds one node per layer instead of a dozen elementwise ones;
//! - on **every other backend** (CUDA) the provided methods fall back to burn's own ops
//!   ([`reference`](mod@reference)), which burn's autodiff differentiates as usual.

mod autodiff;
pub mod cpu;
mod flex;
pub mod per_example;
pub mod profile;
pub mod reference;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Which implementation of the layer operations a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ops {
    /// [`Kernels`]: fedssl's own on Flex, burn's elsewhere.
    #[default]
    Kernels,
    /// burn's own tensor ops everywhere ([`reference`](mod@reference)).
    Burn,
}

/// Convolution hyper-parameters the kernels support: any kernel size, stride and
/// symmetric zero padding; no dilation, no groups, no bias (a BatchNorm follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Zero padding on each side (height, width).
    pub padding: [usize; 2],
}

/// What the backward pass of a normalization needs from its forward pass.
#[derive(Debug, Clone)]
pub struct NormSaved<B: Backend> {
    /// The normalized input `[n, c, h, w]`.
    pub y: Tensor<B, 4>,
    /// The output (its sign gives the ReLU mask).
    pub out: Tensor<B, 4>,
    /// Whether a ReLU follows.
    pub relu: bool,
    /// Which normalization, with its per-channel values.
    pub kind: NormKind<B>,
}

/// The normalization a [`NormSaved`] belongs to.
#[derive(Debug, Clone)]
pub enum NormKind<B: Backend> {
    /// Training-mode batch normalization with these batch statistics.
    BatchNorm {
        /// Batch mean `[c]`.
        mean: Tensor<B, 1>,
        /// Biased batch variance `[c]`.
        var: Tensor<B, 1>,
        /// γ `[c]`.
        gamma: Tensor<B, 1>,
        /// ε added to the variance.
        eps: f64,
    },
    /// `y·scale + shift` per channel.
    Affine {
        /// The scale `[c]`.
        scale: Tensor<B, 1>,
    },
}

/// Gradients of a per-channel normalization: input, scale-like and shift-like parameters.
pub type NormGrads<B> = (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>);

/// What the backward pass of a group normalization needs from its forward pass.
#[derive(Debug, Clone)]
pub struct GnSaved<B: Backend> {
    /// The normalized input `[n, c, h, w]` (before scale and shift).
    pub y: Tensor<B, 4>,
    /// The output (its sign gives the ReLU mask).
    pub out: Tensor<B, 4>,
    /// 1/√(var + ε) per image and group, `[n, groups]`.
    pub rstd: Tensor<B, 2>,
    /// γ `[c]`.
    pub gamma: Tensor<B, 1>,
    /// Groups of channels.
    pub groups: usize,
    /// Whether a ReLU follows.
    pub relu: bool,
}

/// Gradients of a group normalization: the input, and γ and β per image (`[n, c]` each;
/// DP-SGD clips them per record, plain training sums them).
pub type GnGrads<B> = (Tensor<B, 4>, Tensor<B, 2>, Tensor<B, 2>);

/// One layer of an evaluation-mode convolution stack ([`Kernels::kernel_conv_stack`]): convolution, then
/// `y·scale + shift` per channel (a folded BatchNorm), then ReLU when `relu`.
#[derive(Debug, Clone)]
pub struct StackLayer<B: Backend> {
    /// Weight `[cout, cin, kh, kw]`.
    pub weight: Tensor<B, 4>,
    /// Convolution settings.
    pub spec: ConvSpec,
    /// Per-channel scale `[cout]`.
    pub scale: Tensor<B, 1>,
    /// Per-channel shift `[cout]`.
    pub shift: Tensor<B, 1>,
    /// ReLU at the end.
    pub relu: bool,
}

/// A backend with the operations fedssl's encoders are built from. Every method has a
/// provided implementation on burn's ops; Flex and `Autodiff<_>` override them.
pub trait Kernels: Backend {
    /// Whether the backend runs this crate's own kernels (Flex, and `Autodiff` over it).
    const OWN_KERNELS: bool = false;

    /// Convolution of `x` (`[n, cin, h, w]`) with `weight` (`[cout, cin, kh, kw]`).
    fn kernel_conv2d(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        spec: ConvSpec,
    ) -> Tensor<Self, 4> {
        reference::conv2d(x, weight, spec)
    }

    /// Gradients of [`Kernels::kernel_conv2d`] with respect to the input (when `need_x`)
    /// and the weight.
    fn kernel_conv2d_backward(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        grad: Tensor<Self, 4>,
        spec: ConvSpec,
        need_x: bool,
    ) -> (Option<Tensor<Self, 4>>, Tensor<Self, 4>) {
        reference::conv2d_backward(x, weight, grad, spec, need_x)
    }

    /// The input gradient of [`Kernels::kernel_conv2d`] alone.
    fn kernel_conv2d_input_grad(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        grad: Tensor<Self, 4>,
        spec: ConvSpec,
    ) -> Tensor<Self, 4> {
        reference::conv2d_input_grad(x, weight, grad, spec)
    }

    /// Group normalization of `[n, c, h, w]` over `groups` groups of channels per image,
    /// scale and shift per channel, then ReLU when `relu`.
    fn kernel_group_norm(
        x: Tensor<Self, 4>,
        gamma: Tensor<Self, 1>,
        beta: Tensor<Self, 1>,
        groups: usize,
        eps: f64,
        relu: bool,
    ) -> Tensor<Self, 4> {
        Self::kernel_group_norm_saved(x, gamma, beta, groups, eps, relu).0
    }

    /// [`Kernels::kernel_group_norm`] with what its backward pass needs.
    fn kernel_group_norm_saved(
        x: Tensor<Self, 4>,
        gamma: Tensor<Self, 1>,
        beta: Tensor<Self, 1>,
        groups: usize,
        eps: f64,
        relu: bool,
    ) -> (Tensor<Self, 4>, GnSaved<Self>) {
        reference::group_norm(x, gamma, beta, groups, eps, relu)
    }

    /// Gradients of [`Kernels::kernel_group_norm`].
    fn kernel_group_norm_backward(saved: GnSaved<Self>, grad: Tensor<Self, 4>) -> GnGrads<Self> {
        reference::group_norm_backward(saved, grad)
    }

    /// `x · w + b` for `x` `[m, d_in]`, `w` `[d_in, d_out]` (burn's layout), `b` `[d_out]`.
    fn kernel_linear(
        x: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
    ) -> Tensor<Self, 2> {
        reference::linear(x, weight, bias)
    }

    /// Training-mode batch normalization of `[n, c, h, w]` with batch statistics, then
    /// ReLU when `relu`: `(out, batch mean, biased batch variance)`.
    fn kernel_batch_norm(
        y: Tensor<Self, 4>,
        gamma: Tensor<Self, 1>,
        beta: Tensor<Self, 1>,
        eps: f64,
        relu: bool,
    ) -> (Tensor<Self, 4>, Tensor<Self, 1>, Tensor<Self, 1>) {
        reference::batch_norm(y, gamma, beta, eps, relu)
    }

    /// Gradients of [`Kernels::kernel_batch_norm`] (`(dy, dgamma, dbeta)`) or of
    /// [`Kernels::kernel_affine`] (`(dy, dscale, dshift)`), as `saved.kind` says.
    fn kernel_norm_backward(saved: NormSaved<Self>, grad: Tensor<Self, 4>) -> NormGrads<Self> {
        reference::norm_backward(saved, grad)
    }

    /// Per-channel `y·scale + shift`, then ReLU when `relu` (evaluation-mode BatchNorm).
    fn kernel_affine(
        y: Tensor<Self, 4>,
        scale: Tensor<Self, 1>,
        shift: Tensor<Self, 1>,
        relu: bool,
    ) -> Tensor<Self, 4> {
        reference::affine(y, scale, shift, relu)
    }

    /// A stack of conv → affine → ReLU layers (evaluation-mode encoders). Provided: one
    /// [`Kernels::kernel_conv2d`] and one [`Kernels::kernel_affine`] per layer (so autodiff
    /// backends differentiate it); Flex runs the whole stack per group of images in cache.
    fn kernel_conv_stack(x: Tensor<Self, 4>, layers: Vec<StackLayer<Self>>) -> Tensor<Self, 4> {
        compose_stack(x, layers)
    }
}

/// A conv stack layer by layer: [`Kernels::kernel_conv2d`] then [`Kernels::kernel_affine`].
pub(crate) fn compose_stack<B: Kernels>(
    x: Tensor<B, 4>,
    layers: Vec<StackLayer<B>>,
) -> Tensor<B, 4> {
    layers.into_iter().fold(x, |h, l| {
        B::kernel_affine(
            B::kernel_conv2d(h, l.weight, l.spec),
            l.scale,
            l.shift,
            l.relu,
        )
    })
}

#[cfg(feature = "cuda")]
impl Kernels for burn::backend::Cuda {}

/// An autodiff backend with [`Kernels`] whose inner backend (what `.valid()` models run on)
/// has them too.
pub trait AutodiffKernels: AutodiffBackend<InnerBackend: Kernels> + Kernels {}

impl<B> AutodiffKernels for B
where
    B: AutodiffBackend + Kernels,
    B::InnerBackend: Kernels,
{
}

/// Keeps freed tensor buffers inside the process instead of returning them to the
/// operating system after every step.
///
/// Training allocates and frees the same large activation buffers every step; glibc's
/// defaults give blocks above a few MiB back to the kernel at once and fault them in again
/// next step (measured: 1 M page faults and 11 % of the CPU time of `bench train` in the
/// kernel). Raising the mmap and trim thresholds keeps them in the heap. Call once at start
/// of a binary; does nothing outside glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before heavy allocation.
    unsafe {
        // 32 MiB is the largest mmap threshold glibc accepts on 64-bit targets.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
