//! Dense row-major matrix products for the evaluation code, on the `gemm` crate
//! (the same kernels burn's CPU backend uses), parallel over rayon's threads.

use crate::kernels::cpu::matmul::{sgemm, View};

/// A row-major matrix view: `rows × cols` values, optionally read transposed.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    transposed: bool,
}

impl<'a> MatRef<'a> {
    /// `data` holds `rows × cols` values row by row.
    ///
    /// # Panics
    /// When `data.len() != rows * cols` (a programming error, never input-dependent).
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix buffer of the wrong length");
        Self {
            data,
            rows,
            cols,
            transposed: false,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            transposed: !self.transposed,
            ..self
        }
    }

    /// Rows of the (possibly transposed) matrix.
    pub fn nrows(&self) -> usize {
        if self.transposed {
            self.cols
        } else {
            self.rows
        }
    }

    /// Columns of the (possibly transposed) matrix.
    pub fn ncols(&self) -> usize {
        if self.transposed {
            self.rows
        } else {
            self.cols
        }
    }

    /// (column stride, row stride) of the logical matrix.
    /// The strided view the GEMM wrapper takes.
    fn view(&self) -> View<'a> {
        if self.transposed {
            View::transposed(self.data, self.cols)
        } else {
            View::rows(self.data, self.cols)
        }
    }
}

/// `a · b` as a new row-major `a.nrows() × b.ncols()` buffer.
///
/// # Panics
/// When the inner dimensions differ (a programming error).
pub fn matmul(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
    let mut out = vec![0.0f32; a.nrows() * b.ncols()];
    matmul_into(a, b, &mut out);
    out
}

/// Writes `a · b` into `out` (row-major, `a.nrows() × b.ncols()`).
///
/// # Panics
/// When the shapes do not agree (a programming error).
pub fn matmul_into(a: MatRef<'_>, b: MatRef<'_>, out: &mut [f32]) {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    assert_eq!(k, b.nrows(), "inner dimensions differ");
    assert_eq!(out.len(), m * n, "output buffer of the wrong length");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.fill(0.0);
        return;
    }
    // Small products on one thread; larger ones split across the pool.
    let parallel = m * n * k >= 1 << 16;
    sgemm(m, n, k, out, n, a.view(), b.view(), false, parallel);
}

/// The rows `idx` of `x` (`n × dim`, row-major), in that order.
pub fn gather_rows(x: &[f32], dim: usize, idx: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() * dim);
    for &i in idx {
        out.extend_from_slice(&x[i * dim..(i + 1) * dim]);
    }
    out
}

/// Per-column mean and (population) variance of `x` (`n × dim`, row-major), in f64.
pub fn column_moments(x: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (x.len() / dim.max(1)).max(1) as f64;
    let mut mean = vec![0.0f64; dim];
    let mut var = vec![0.0f64; dim];
    for row in x.chunks_exact(dim.max(1)) {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n);
    for row in x.chunks_exact(dim.max(1)) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (v as f64 - m).powi(2);
        }
    }
    var.iter_mut().for_each(|s| *s /= n);
    (mean, var)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn products_and_transposes_match_the_definition() {
        let (m, k, n) = (37, 53, 11);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        let want = naive(&a, &b, m, k, n);
        assert_eq!(matmul(MatRef::new(&a, m, k), MatRef::new(&b, k, n)), want);
        // (Bᵀ)ᵀ and Aᵀᵀ: transpose copies, then read them transposed.
        let mut at = vec![0.0; m * k];
        for i in 0..m {
            for p in 0..k {
                at[p * m + i] = a[i * k + p];
            }
        }
        let mut bt = vec![0.0; k * n];
        for p in 0..k {
            for j in 0..n {
                bt[j * k + p] = b[p * n + j];
            }
        }
        let got = matmul(MatRef::new(&at, k, m).t(), MatRef::new(&bt, n, k).t());
        assert_eq!(got, want);
    }
}
