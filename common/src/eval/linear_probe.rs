//! Linear probe: multinomial logistic regression on standardized frozen features,
//! full-batch Adam with weight decay, deterministic.

use rayon::prelude::*;

/// Settings of the probe's optimizer.
#[derive(Debug, Clone, Copy)]
pub struct ProbeConfig {
    /// Full-batch steps.
    pub steps: usize,
    /// Adam learning rate.
    pub learning_rate: f32,
    /// L2 penalty on the weights.
    pub weight_decay: f32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            steps: 300,
            learning_rate: 0.05,
            weight_decay: 1e-4,
        }
    }
}

/// Accuracies of a trained probe.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ProbeResult {
    /// Accuracy on the probe's training split.
    pub train_accuracy: f64,
    /// Accuracy on the test split.
    pub test_accuracy: f64,
}

fn standardize(train: &mut [f32], test: &mut [f32], dim: usize) {
    let n = (train.len() / dim).max(1) as f64;
    let mut mean = vec![0.0f64; dim];
    let mut var = vec![0.0f64; dim];
    for row in train.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    for row in train.chunks_exact(dim) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (v as f64 - m).powi(2);
        }
    }
    let sd: Vec<f32> = var.iter().map(|s| ((s / n).sqrt() + 1e-6) as f32).collect();
    let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    for x in [train, test] {
        for row in x.chunks_exact_mut(dim) {
            for ((v, m), s) in row.iter_mut().zip(&mean).zip(&sd) {
                *v = (*v - m) / s;
            }
        }
    }
}

fn logits(w: &[f32], b: &[f32], x: &[f32], k: usize, out: &mut [f32]) {
    out.copy_from_slice(b);
    for (xi, wrow) in x.iter().zip(w.chunks_exact(k)) {
        for (o, wv) in out.iter_mut().zip(wrow) {
            *o += xi * wv;
        }
    }
}

fn accuracy(w: &[f32], b: &[f32], x: &[f32], y: &[u8], dim: usize, k: usize) -> f64 {
    let correct: usize = x
        .par_chunks_exact(dim)
        .zip(y.par_iter())
        .filter(|(row, &label)| {
            let mut z = vec![0.0f32; k];
            logits(w, b, row, k, &mut z);
            let arg = z
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |a, (i, &v)| if v > a.1 { (i, v) } else { a },
                )
                .0;
            arg == label as usize
        })
        .count();
    correct as f64 / y.len().max(1) as f64
}

/// Trains a linear classifier on `train_x` (`n × dim`) and reports accuracies.
pub fn linear_probe(
    train_x: &[f32],
    train_y: &[u8],
    test_x: &[f32],
    test_y: &[u8],
    dim: usize,
    num_classes: usize,
    cfg: ProbeConfig,
) -> ProbeResult {
    let k = num_classes.max(2);
    let mut tr = train_x.to_vec();
    let mut te = test_x.to_vec();
    standardize(&mut tr, &mut te, dim);
    let n = train_y.len().max(1);
    let mut w = vec![0.0f32; dim * k];
    let mut b = vec![0.0f32; k];
    let (mut mw, mut vw) = (vec![0.0f32; dim * k], vec![0.0f32; dim * k]);
    let (mut mb, mut vb) = (vec![0.0f32; k], vec![0.0f32; k]);
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    for step in 1..=cfg.steps {
        let (gw, gb) = tr
            .par_chunks_exact(dim)
            .zip(train_y.par_iter())
            .fold(
                || (vec![0.0f32; dim * k], vec![0.0f32; k], vec![0.0f32; k]),
                |(mut gw, mut gb, mut z), (row, &label)| {
                    logits(&w, &b, row, k, &mut z);
                    let max = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0.0;
                    z.iter_mut().for_each(|v| {
                        *v = (*v - max).exp();
                        sum += *v;
                    });
                    z.iter_mut().for_each(|v| *v /= sum);
                    if (label as usize) < k {
                        z[label as usize] -= 1.0;
                    }
                    for (xi, grow) in row.iter().zip(gw.chunks_exact_mut(k)) {
                        for (g, zv) in grow.iter_mut().zip(&z) {
                            *g += xi * zv;
                        }
                    }
                    gb.iter_mut().zip(&z).for_each(|(g, zv)| *g += zv);
                    (gw, gb, z)
                },
            )
            .map(|(gw, gb, _)| (gw, gb))
            .reduce(
                || (vec![0.0f32; dim * k], vec![0.0f32; k]),
                |(mut a, mut c), (x, y)| {
                    a.iter_mut().zip(&x).for_each(|(p, q)| *p += q);
                    c.iter_mut().zip(&y).for_each(|(p, q)| *p += q);
                    (a, c)
                },
            );
        let bc1 = 1.0 - b1.powi(step as i32);
        let bc2 = 1.0 - b2.powi(step as i32);
        let lr = cfg.learning_rate;
        for i in 0..w.len() {
            let g = gw[i] / n as f32 + cfg.weight_decay * w[i];
            mw[i] = b1 * mw[i] + (1.0 - b1) * g;
            vw[i] = b2 * vw[i] + (1.0 - b2) * g * g;
            w[i] -= lr * (mw[i] / bc1) / ((vw[i] / bc2).sqrt() + eps);
        }
        for i in 0..k {
            let g = gb[i] / n as f32;
            mb[i] = b1 * mb[i] + (1.0 - b1) * g;
            vb[i] = b2 * vb[i] + (1.0 - b2) * g * g;
            b[i] -= lr * (mb[i] / bc1) / ((vb[i] / bc2).sqrt() + eps);
        }
    }
    ProbeResult {
        train_accuracy: accuracy(&w, &b, &tr, train_y, dim, k),
        test_accuracy: accuracy(&w, &b, &te, test_y, dim, k),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_features_are_classified_perfectly() {
        // Class c sits at 5·e_c plus a small deterministic wobble.
        let (dim, k, n) = (6, 3, 90);
        let make = |offset: usize| {
            let mut x = vec![0.0f32; n * dim];
            let mut y = vec![0u8; n];
            for i in 0..n {
                let c = i % k;
                y[i] = c as u8;
                for d in 0..dim {
                    x[i * dim + d] = ((i * 7 + d * 3 + offset) % 5) as f32 * 0.1;
                }
                x[i * dim + c] += 5.0;
            }
            (x, y)
        };
        let (trx, tr_y) = make(0);
        let (tex, te_y) = make(1);
        let r = linear_probe(&trx, &tr_y, &tex, &te_y, dim, k, ProbeConfig::default());
        assert_eq!(r.test_accuracy, 1.0);
        assert_eq!(r.train_accuracy, 1.0);
    }

    #[test]
    fn uninformative_features_give_chance() {
        let (dim, k, n) = (4, 2, 200);
        let x = vec![1.0f32; n * dim];
        let y: Vec<u8> = (0..n).map(|i| (i % 2) as u8).collect();
        let r = linear_probe(&x, &y, &x, &y, dim, k, ProbeConfig::default());
        assert!((r.test_accuracy - 0.5).abs() < 1e-9);
    }
}
