//! Per-thread scratch buffers reused across calls (and so across training steps), so the
//! im2col and gradient staging buffers are allocated once per thread, not once per step.

use std::cell::RefCell;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of at least `len` floats taken from this thread's pool (contents unspecified).
/// Give it back with [`give`]. Re-entrant: a nested caller simply gets a fresh buffer.
pub fn take(len: usize) -> Vec<f32> {
    let mut buf = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    buf
}

/// Returns a buffer to this thread's pool.
pub fn give(buf: Vec<f32>) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < 8 {
            pool.push(buf);
        }
    });
}
