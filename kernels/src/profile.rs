//! Where the kernels spend their time: wall-clock totals per operation, collected only
//! while [`enable`]d (one relaxed atomic load per call otherwise). `fedssl bench train`
//! prints them as its profile summary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// The timed operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Convolution forward.
    ConvForward,
    /// Convolution input and weight gradients.
    ConvBackward,
    /// BatchNorm / affine (+ ReLU) forward.
    NormForward,
    /// BatchNorm / affine (+ ReLU) gradients.
    NormBackward,
    /// A fused evaluation-mode stack of conv → affine → ReLU layers.
    ConvStack,
}

impl Op {
    /// All operations, in report order.
    pub const ALL: [Op; 5] = [
        Op::ConvForward,
        Op::ConvBackward,
        Op::NormForward,
        Op::NormBackward,
        Op::ConvStack,
    ];

    /// A short label.
    pub fn label(self) -> &'static str {
        match self {
            Op::ConvForward => "conv forward",
            Op::ConvBackward => "conv backward (input + weight)",
            Op::NormForward => "BatchNorm+ReLU forward",
            Op::NormBackward => "BatchNorm+ReLU backward",
            Op::ConvStack => "fused conv+BN+ReLU stack",
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; Op::ALL.len()] = [const { AtomicU64::new(0) }; Op::ALL.len()];
static CALLS: [AtomicU64; Op::ALL.len()] = [const { AtomicU64::new(0) }; Op::ALL.len()];

/// Starts (or stops) collecting, and clears the totals.
pub fn enable(on: bool) {
    for i in 0..Op::ALL.len() {
        NANOS[i].store(0, Ordering::Relaxed);
        CALLS[i].store(0, Ordering::Relaxed);
    }
    ENABLED.store(on, Ordering::Relaxed);
}

/// `(operation, seconds, calls)` since [`enable`].
pub fn totals() -> Vec<(Op, f64, u64)> {
    Op::ALL
        .iter()
        .enumerate()
        .map(|(i, &op)| {
            (
                op,
                NANOS[i].load(Ordering::Relaxed) as f64 * 1e-9,
                CALLS[i].load(Ordering::Relaxed),
            )
        })
        .collect()
}

/// Times `f` under `op` when collecting.
pub(crate) fn timed<R>(op: Op, f: impl FnOnce() -> R) -> R {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let start = Instant::now();
    let r = f();
    let i = op as usize;
    NANOS[i].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    CALLS[i].fetch_add(1, Ordering::Relaxed);
    r
}
