//! Linear probe: multinomial logistic regression on standardized frozen features.
//!
//! Full-batch Adam with a cosine learning-rate schedule, started from zero weights, so a
//! probe is deterministic. The L2 penalty is chosen from a grid on a seeded validation
//! split of the labeled training set, then the probe is refitted on all of it.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::linalg::{column_moments, gather_rows, matmul, matmul_into, MatRef};

/// Settings of the probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeConfig {
    /// Full-batch optimizer steps per fit.
    pub steps: usize,
    /// Peak Adam learning rate (cosine-decayed to zero).
    pub learning_rate: f32,
    /// Candidate L2 penalties; the best on the validation split wins.
    pub weight_decays: Vec<f32>,
    /// Share of the labeled training set held out to choose the penalty.
    pub validation_fraction: f64,
    /// Seed of the validation split.
    pub seed: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            steps: 300,
            learning_rate: 0.05,
            weight_decays: vec![1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
            validation_fraction: 0.2,
            seed: 0,
        }
    }
}

/// What a probe reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Accuracy on the probe's (whole) training set.
    pub train_accuracy: f64,
    /// Accuracy on the test set.
    pub test_accuracy: f64,
    /// The L2 penalty chosen on the validation split.
    pub weight_decay: f32,
    /// Validation accuracy of that penalty (NaN when the set was too small to split).
    pub validation_accuracy: f64,
    /// Macro-averaged F1 on the test set: the unweighted mean over classes of each class's
    /// F1 (a class absent from both labels and predictions is skipped).
    #[serde(default)]
    pub test_macro_f1: f64,
}

/// Per-feature mean and standard deviation of a training set.
#[derive(Debug, Clone)]
pub struct Standardizer {
    mean: Vec<f32>,
    sd: Vec<f32>,
}

impl Standardizer {
    /// Fits on `x` (`n × dim`).
    pub fn fit(x: &[f32], dim: usize) -> Self {
        let (mean, var) = column_moments(x, dim);
        Self {
            sd: var.iter().map(|s| (s.sqrt() + 1e-6) as f32).collect(),
            mean: mean.iter().map(|&m| m as f32).collect(),
        }
    }

    /// `(x − mean) / sd`, row by row.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        let dim = self.mean.len().max(1);
        let mut out = x.to_vec();
        for row in out.chunks_exact_mut(dim) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.sd) {
                *v = (*v - m) / s;
            }
        }
        out
    }
}

/// A trained softmax classifier on standardized features.
#[derive(Debug, Clone)]
pub struct LinearClassifier {
    /// `dim × classes`, row-major.
    pub weight: Vec<f32>,
    /// `classes`.
    pub bias: Vec<f32>,
    /// Feature dimension.
    pub dim: usize,
    /// Number of classes.
    pub classes: usize,
}

impl LinearClassifier {
    /// Logits of `x` (`n × dim`), row-major `n × classes`.
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        let n = x.len() / self.dim.max(1);
        let mut z = matmul(
            MatRef::new(x, n, self.dim),
            MatRef::new(&self.weight, self.dim, self.classes),
        );
        for row in z.chunks_exact_mut(self.classes) {
            row.iter_mut().zip(&self.bias).for_each(|(v, b)| *v += b);
        }
        z
    }

    /// The arg-max class of every row of `x`.
    pub fn predict(&self, x: &[f32]) -> Vec<usize> {
        self.logits(x)
            .chunks_exact(self.classes)
            .map(argmax)
            .collect()
    }

    /// Share of rows of `x` whose arg-max logit is the label.
    pub fn accuracy(&self, x: &[f32], y: &[u8]) -> f64 {
        if y.is_empty() {
            return f64::NAN;
        }
        let z = self.logits(x);
        let correct = z
            .chunks_exact(self.classes)
            .zip(y)
            .filter(|(row, &label)| argmax(row) == label as usize)
            .count();
        correct as f64 / y.len() as f64
    }
}

/// Macro-averaged F1 of `predicted` against `truth` over `classes` classes: for each class
/// `2·TP / (2·TP + FP + FN)`, averaged over the classes that occur in either (NaN when
/// there are none).
pub fn macro_f1(predicted: &[usize], truth: &[u8], classes: usize) -> f64 {
    let k = classes.max(1);
    let (mut tp, mut fp, mut fn_) = (vec![0u64; k], vec![0u64; k], vec![0u64; k]);
    for (&p, &t) in predicted.iter().zip(truth) {
        let t = t as usize;
        if p == t {
            if let Some(v) = tp.get_mut(t) {
                *v += 1;
            }
        } else {
            if let Some(v) = fp.get_mut(p) {
                *v += 1;
            }
            if let Some(v) = fn_.get_mut(t) {
                *v += 1;
            }
        }
    }
    let f1s: Vec<f64> = (0..k)
        .filter(|&c| tp[c] + fp[c] + fn_[c] > 0)
        .map(|c| 2.0 * tp[c] as f64 / (2 * tp[c] + fp[c] + fn_[c]) as f64)
        .collect();
    if f1s.is_empty() {
        f64::NAN
    } else {
        f1s.iter().sum::<f64>() / f1s.len() as f64
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Fits a softmax regression with L2 penalty `weight_decay` on standardized `x`.
pub fn fit_softmax(
    x: &[f32],
    y: &[u8],
    dim: usize,
    classes: usize,
    weight_decay: f32,
    steps: usize,
    learning_rate: f32,
) -> LinearClassifier {
    let k = classes.max(2);
    let n = y.len();
    let mut clf = LinearClassifier {
        weight: vec![0.0; dim * k],
        bias: vec![0.0; k],
        dim,
        classes: k,
    };
    if n == 0 {
        return clf;
    }
    let (mut mw, mut vw) = (vec![0.0f32; dim * k], vec![0.0f32; dim * k]);
    let (mut mb, mut vb) = (vec![0.0f32; k], vec![0.0f32; k]);
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let mut gw = vec![0.0f32; dim * k];
    let inv_n = 1.0 / n as f32;
    for step in 1..=steps {
        // Residuals P − Y, scaled by 1/n.
        let mut r = clf.logits(x);
        let mut gb = vec![0.0f32; k];
        for (row, &label) in r.chunks_exact_mut(k).zip(y) {
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            row.iter_mut().for_each(|v| {
                *v = (*v - max).exp();
                sum += *v;
            });
            row.iter_mut().for_each(|v| *v /= sum);
            if (label as usize) < k {
                row[label as usize] -= 1.0;
            }
            row.iter_mut().for_each(|v| *v *= inv_n);
            gb.iter_mut().zip(row.iter()).for_each(|(g, v)| *g += v);
        }
        matmul_into(MatRef::new(x, n, dim).t(), MatRef::new(&r, n, k), &mut gw);
        let progress = (step - 1) as f32 / steps.max(1) as f32;
        let lr = learning_rate * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos());
        let bc1 = 1.0 - b1.powi(step as i32);
        let bc2 = 1.0 - b2.powi(step as i32);
        let adam = |p: &mut f32, g: f32, m: &mut f32, v: &mut f32| {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= lr * (*m / bc1) / ((*v / bc2).sqrt() + eps);
        };
        for i in 0..clf.weight.len() {
            let g = gw[i] + weight_decay * clf.weight[i];
            adam(&mut clf.weight[i], g, &mut mw[i], &mut vw[i]);
        }
        for i in 0..k {
            adam(&mut clf.bias[i], gb[i], &mut mb[i], &mut vb[i]);
        }
    }
    clf
}

/// Trains a linear probe on `train_x` (`n × dim`, labels `train_y`) and tests it on `test_x`.
pub fn linear_probe(
    train_x: &[f32],
    train_y: &[u8],
    test_x: &[f32],
    test_y: &[u8],
    dim: usize,
    num_classes: usize,
    cfg: &ProbeConfig,
) -> ProbeResult {
    let n = train_y.len();
    let std = Standardizer::fit(train_x, dim);
    let tr = std.apply(train_x);
    let te = std.apply(test_x);

    // Choose the penalty on a seeded validation split (skipped when too small to split).
    let n_val = ((n as f64) * cfg.validation_fraction).round() as usize;
    let (mut weight_decay, mut validation_accuracy) = (
        cfg.weight_decays
            .get(cfg.weight_decays.len() / 2)
            .copied()
            .unwrap_or(1e-4),
        f64::NAN,
    );
    if cfg.weight_decays.len() > 1 && n_val >= 10 && n - n_val >= 10 {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed));
        let (val_idx, fit_idx) = order.split_at(n_val);
        // Standardize on the fitting part only, as the final probe does on the whole set.
        let fit_raw = gather_rows(train_x, dim, fit_idx);
        let s = Standardizer::fit(&fit_raw, dim);
        let fit_x = s.apply(&fit_raw);
        let val_x = s.apply(&gather_rows(train_x, dim, val_idx));
        let fit_y: Vec<u8> = fit_idx.iter().map(|&i| train_y[i]).collect();
        let val_y: Vec<u8> = val_idx.iter().map(|&i| train_y[i]).collect();
        for &wd in &cfg.weight_decays {
            let clf = fit_softmax(
                &fit_x,
                &fit_y,
                dim,
                num_classes,
                wd,
                cfg.steps,
                cfg.learning_rate,
            );
            let acc = clf.accuracy(&val_x, &val_y);
            // Strictly better only: ties keep the smaller penalty seen first.
            if validation_accuracy.is_nan() || acc > validation_accuracy {
                validation_accuracy = acc;
                weight_decay = wd;
            }
        }
    }
    let clf = fit_softmax(
        &tr,
        train_y,
        dim,
        num_classes,
        weight_decay,
        cfg.steps,
        cfg.learning_rate,
    );
    ProbeResult {
        train_accuracy: clf.accuracy(&tr, train_y),
        test_accuracy: clf.accuracy(&te, test_y),
        weight_decay,
        validation_accuracy,
        test_macro_f1: macro_f1(&clf.predict(&te), test_y, clf.classes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Class `c` sits at `5·e_c` plus a small deterministic wobble.
    fn separable(n: usize, dim: usize, k: usize, offset: usize) -> (Vec<f32>, Vec<u8>) {
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
    }

    #[test]
    fn macro_f1_matches_a_hand_computation() {
        // truth 0 0 0 1 1 2, predicted 0 0 1 1 2 2:
        // class 0: TP 2, FP 0, FN 1 → 4/5; class 1: TP 1, FP 1, FN 1 → 2/4;
        // class 2: TP 1, FP 1, FN 0 → 2/3; class 3 never occurs and is skipped.
        let f = macro_f1(&[0, 0, 1, 1, 2, 2], &[0, 0, 0, 1, 1, 2], 4);
        let want = (0.8 + 0.5 + 2.0 / 3.0) / 3.0;
        assert!((f - want).abs() < 1e-12, "{f} vs {want}");
        // Accuracy hides a class that is never predicted; macro-F1 does not.
        let majority = macro_f1(&[0; 10], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 2);
        assert!((majority - (18.0 / 19.0) / 2.0).abs() < 1e-12, "{majority}");
        assert!(macro_f1(&[], &[], 3).is_nan());
    }

    #[test]
    fn separable_features_are_classified_perfectly() {
        let (dim, k) = (6, 3);
        let (trx, tr_y) = separable(90, dim, k, 0);
        let (tex, te_y) = separable(60, dim, k, 1);
        let r = linear_probe(&trx, &tr_y, &tex, &te_y, dim, k, &ProbeConfig::default());
        assert_eq!(r.test_accuracy, 1.0);
        assert_eq!(r.train_accuracy, 1.0);
        assert_eq!(r.validation_accuracy, 1.0);
        assert_eq!(r.test_macro_f1, 1.0);
    }

    #[test]
    fn uninformative_features_give_chance() {
        let (dim, k, n) = (4, 2, 200);
        let x = vec![1.0f32; n * dim];
        let y: Vec<u8> = (0..n).map(|i| (i % 2) as u8).collect();
        let r = linear_probe(&x, &y, &x, &y, dim, k, &ProbeConfig::default());
        assert!((r.test_accuracy - 0.5).abs() < 1e-9);
    }

    #[test]
    fn the_fit_reaches_the_logistic_regression_optimum() {
        // One feature, two classes, labels drawn from P(y=1|x) = σ(2x − 1): the unpenalized
        // maximum-likelihood fit has w₁ − w₀ ≈ 2 and b₁ − b₀ ≈ −1 (computed independently
        // by Newton's method below on the same sample).
        let n = 4000;
        let mut x = Vec::with_capacity(n);
        let mut y = Vec::with_capacity(n);
        let mut s = 12345u64;
        let mut uniform = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..n {
            let xi = uniform() * 6.0 - 3.0;
            let p = 1.0 / (1.0 + (-(2.0 * xi - 1.0)).exp());
            x.push(xi as f32);
            y.push(u8::from(uniform() < p));
        }
        // Newton's method on the two-parameter logistic likelihood, in f64.
        let (mut w, mut b) = (0.0f64, 0.0f64);
        for _ in 0..50 {
            let (mut gw, mut gb, mut hww, mut hwb, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (&xi, &yi) in x.iter().zip(&y) {
                let xi = xi as f64;
                let p = 1.0 / (1.0 + (-(w * xi + b)).exp());
                let r = p - yi as f64;
                gw += r * xi;
                gb += r;
                let h = p * (1.0 - p);
                hww += h * xi * xi;
                hwb += h * xi;
                hbb += h;
            }
            let det = hww * hbb - hwb * hwb;
            w -= (hbb * gw - hwb * gb) / det;
            b -= (hww * gb - hwb * gw) / det;
        }
        let clf = fit_softmax(&x, &y, 1, 2, 0.0, 2000, 0.05);
        let fw = (clf.weight[1] - clf.weight[0]) as f64;
        let fb = (clf.bias[1] - clf.bias[0]) as f64;
        assert!((fw - w).abs() < 0.02 * w.abs(), "slope {fw} vs Newton {w}");
        assert!((fb - b).abs() < 0.03, "intercept {fb} vs Newton {b}");
    }

    #[test]
    fn the_probe_is_deterministic() {
        let (dim, k) = (5, 3);
        let (mut trx, tr_y) = separable(120, dim, k, 0);
        // Add label noise so the penalty search has something to choose.
        for i in (0..120).step_by(9) {
            trx[i * dim] += 4.0;
        }
        let (tex, te_y) = separable(60, dim, k, 2);
        let cfg = ProbeConfig::default();
        let a = linear_probe(&trx, &tr_y, &tex, &te_y, dim, k, &cfg);
        let b = linear_probe(&trx, &tr_y, &tex, &te_y, dim, k, &cfg);
        assert_eq!(a, b);
    }
}
