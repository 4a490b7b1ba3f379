//! Small vector loops written so LLVM vectorizes them: fixed-width chunks (no bounds
//! checks in the loop body) and independent lane accumulators.

const LANES: usize = 16;

/// Σ v.
pub fn sum(v: &[f32]) -> f32 {
    let (chunks, rem) = v.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rem.iter().sum::<f32>()
}

/// Σ (v − m)².
pub fn sum_sq_dev(v: &[f32], m: f32) -> f32 {
    let (chunks, rem) = v.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for c in chunks {
        for i in 0..LANES {
            let d = c[i] - m;
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f32>() + rem.iter().map(|x| (x - m) * (x - m)).sum::<f32>()
}

#[inline(always)]
fn keep(g: f32, o: f32, relu: bool) -> f32 {
    if !relu || o > 0.0 {
        g
    } else {
        0.0
    }
}

/// (Σ dz, Σ dz·y) with dz = g·[o > 0] when `relu` (else dz = g).
pub fn masked_sums(g: &[f32], y: &[f32], o: &[f32], relu: bool) -> (f32, f32) {
    let n = g.len().min(y.len()).min(o.len());
    let (g, y, o) = (&g[..n], &y[..n], &o[..n]);
    let (gc, gr) = g.as_chunks::<LANES>();
    let (yc, yr) = y.as_chunks::<LANES>();
    let (oc, or) = o.as_chunks::<LANES>();
    let (mut s, mut sy) = ([0.0f32; LANES], [0.0f32; LANES]);
    for ((gg, yy), oo) in gc.iter().zip(yc).zip(oc) {
        for i in 0..LANES {
            let d = keep(gg[i], oo[i], relu);
            s[i] += d;
            sy[i] += d * yy[i];
        }
    }
    let (mut rs, mut rsy) = (0.0f32, 0.0f32);
    for ((&gg, &yy), &oo) in gr.iter().zip(yr).zip(or) {
        let d = keep(gg, oo, relu);
        rs += d;
        rsy += d * yy;
    }
    (s.iter().sum::<f32>() + rs, sy.iter().sum::<f32>() + rsy)
}

/// dst = a·dz + b·y + c with dz = g·[o > 0] when `relu` (else dz = g).
#[allow(clippy::too_many_arguments)]
pub fn combine_segment(
    dst: &mut [f32],
    g: &[f32],
    y: &[f32],
    o: &[f32],
    a: f32,
    b: f32,
    c: f32,
    relu: bool,
) {
    for (((d, &gg), &yy), &oo) in dst.iter_mut().zip(g).zip(y).zip(o) {
        *d = a * keep(gg, oo, relu) + b * yy + c;
    }
}

/// v = max(0, v·a + b) in place (or without the max when `relu` is false).
pub fn affine_in_place(v: &mut [f32], a: f32, b: f32, relu: bool) {
    if relu {
        for x in v.iter_mut() {
            *x = (*x * a + b).max(0.0);
        }
    } else {
        for x in v.iter_mut() {
            *x = *x * a + b;
        }
    }
}

/// dst += src.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += *s;
    }
}
