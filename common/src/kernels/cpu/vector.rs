//! Small vector loops written so LLVM vectorizes them (independent lane accumulators).

const LANES: usize = 16;

/// Σ v.
pub fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let rem: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rem
}

/// Σ (v − m)².
pub fn sum_sq_dev(v: &[f32], m: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let rem: f32 = chunks.remainder().iter().map(|x| (x - m) * (x - m)).sum();
    for c in chunks {
        for i in 0..LANES {
            let d = c[i] - m;
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f32>() + rem
}

/// (Σ g·[keep], Σ g·[keep]·y) where keep is `o > 0` when `relu` (else always).
pub fn masked_sums(g: &[f32], y: &[f32], o: &[f32], relu: bool) -> (f32, f32) {
    let (mut s, mut sy) = ([0.0f32; LANES], [0.0f32; LANES]);
    let n = g.len() / LANES * LANES;
    for base in (0..n).step_by(LANES) {
        for i in 0..LANES {
            let j = base + i;
            let d = if !relu || o[j] > 0.0 { g[j] } else { 0.0 };
            s[i] += d;
            sy[i] += d * y[j];
        }
    }
    let (mut rs, mut rsy) = (0.0f32, 0.0f32);
    for j in n..g.len() {
        let d = if !relu || o[j] > 0.0 { g[j] } else { 0.0 };
        rs += d;
        rsy += d * y[j];
    }
    (s.iter().sum::<f32>() + rs, sy.iter().sum::<f32>() + rsy)
}

/// out = max(0, y·a + b) (or without the max when `relu` is false).
pub fn affine(y: &[f32], out: &mut [f32], a: f32, b: f32, relu: bool) {
    if relu {
        for (o, &v) in out.iter_mut().zip(y) {
            *o = (v * a + b).max(0.0);
        }
    } else {
        for (o, &v) in out.iter_mut().zip(y) {
            *o = v * a + b;
        }
    }
}
