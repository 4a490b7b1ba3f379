//! Slice-level CPU kernels: plain `&[f32]` in, `Vec<f32>` out, NCHW layout, parallel with
//! rayon, matrix products on the `gemm` crate (AVX-512 / AVX2 / portable kernels chosen at
//! run time). Nothing here knows about burn; `kernels/flex.rs` adapts them to the Flex backend.

pub mod conv;
pub mod group_norm;
pub mod norm;

pub mod matmul;
mod scratch;
mod vector;

/// How many rayon threads the kernels may use.
fn threads() -> usize {
    rayon::current_num_threads().max(1)
}
