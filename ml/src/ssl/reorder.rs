//! Reordering pretext tasks: cut each sample into pieces, shuffle them by one of a fixed set
//! of permutations, and train the encoder plus a classification head to tell which
//! permutation was applied (cross entropy per record).
//!
//! - Images: a jigsaw (Noroozi & Favaro, 2016) over a `grid × grid` tiling of the whole
//!   augmented image, which the encoder sees reassembled in the shuffled order (so the
//!   encoder keeps its input shape).
//! - Time series: segment-order prediction (in the spirit of Misra et al., 2016, and
//!   "shuffle and learn"): the window is cut into `segments` consecutive segments of all
//!   channels, shuffled the same way.
//!
//! With `pieces! ≤ permutations` every permutation is a class (2×2 tiles or 4 segments: 24);
//! otherwise a fixed, seeded set of `permutations` distinct ones, the identity first. Each
//! record's loss depends on that record alone, so DP-SGD clips per record.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rand::Rng;
use rayon::prelude::*;

use super::objective::{DpUnit, Heads, Inputs, LossContext, SslObjective};
use super::views::{stream_rng, ViewMaker};
use crate::data::{Dataset, SampleShape};
use crate::kernels::Kernels;
use crate::model::BnMode;
pub use fedssl_core::spec::{Reorder, MAX_PERMUTATIONS};

/// Cross entropy of each row of `logits` `[N, K]` against its class.
fn cross_entropy_rows<B: Backend>(logits: Tensor<B, 2>, classes: &[u32]) -> Tensor<B, 1> {
    let [n, k] = logits.dims();
    let mut onehot = vec![0.0f32; n * k];
    for (r, &c) in classes.iter().enumerate().take(n) {
        if let Some(v) = onehot.get_mut(r * k + c as usize) {
            *v = 1.0;
        }
    }
    let onehot = Tensor::<B, 2>::from_data(TensorData::new(onehot, [n, k]), &logits.device());
    log_softmax(logits, 1)
        .mul(onehot)
        .sum_dim(1)
        .neg()
        .reshape([n])
}

/// Cutting samples into pieces and scoring the permutation head.
trait ReorderPieces {
    /// Values of one encoded piece: a tile scaled up to the whole image (the encoder's
    /// input size), or one segment of every channel.
    fn piece_len(&self, shape: SampleShape) -> usize;

    /// Writes piece `piece` of `src` into `dst` ([`Reorder::piece_len`] values): an image
    /// tile repeated `grid × grid` times per pixel (nearest neighbour), so the encoder sees
    /// it at its input size; a segment of every channel as is (the 1-D CNN pools over time,
    /// as CPC's segments do).
    fn piece(&self, shape: SampleShape, src: &[f32], piece: usize, dst: &mut [f32]);

    /// The permutation logits `[records, classes]`: every piece encoded on its own, the
    /// representations concatenated in the order shown, then the head.
    fn logits<B: Kernels>(&self, cx: &LossContext<'_, B>, inputs: &Inputs) -> Tensor<B, 2>;
}

impl ReorderPieces for Reorder {
    fn piece_len(&self, shape: SampleShape) -> usize {
        match shape {
            SampleShape::Series { channels, length } => channels * (length / self.segments),
            s => s.len(),
        }
    }

    fn piece(&self, shape: SampleShape, src: &[f32], piece: usize, dst: &mut [f32]) {
        match shape {
            SampleShape::Image {
                channels,
                height,
                width,
            } => {
                let g = self.grid;
                let (th, tw) = (height / g, width / g);
                let (r0, c0) = ((piece / g) * th, (piece % g) * tw);
                for c in 0..channels {
                    for y in 0..height {
                        let srow = (c * height + r0 + y / g) * width + c0;
                        let drow = (c * height + y) * width;
                        for x in 0..width {
                            dst[drow + x] = src[srow + x / g];
                        }
                    }
                }
            }
            SampleShape::Series { channels, length } => {
                let s = length / self.segments;
                for c in 0..channels {
                    let from = c * length + piece * s;
                    dst[c * s..(c + 1) * s].copy_from_slice(&src[from..from + s]);
                }
            }
            _ => dst.copy_from_slice(src),
        }
    }

    fn logits<B: Kernels>(&self, cx: &LossContext<'_, B>, inputs: &Inputs) -> Tensor<B, 2> {
        let pieces = self.pieces(cx.spec.shape).max(1);
        let n = inputs.rows / pieces;
        let h =
            cx.model
                .encoder
                .forward_with(inputs.x_tensor::<B>(cx.device), BnMode::Train, cx.ops);
        let d = h.dims()[1];
        let joined = h
            .reshape([pieces, n, d])
            .swap_dims(0, 1)
            .reshape([n, pieces * d]);
        match cx.model.decoder.as_ref() {
            Some(head) => head.forward(joined),
            None => joined,
        }
    }
}

impl SslObjective for Reorder {
    fn heads(&self) -> Heads {
        Heads {
            decoder: true,
            ..Heads::default()
        }
    }

    fn fits(&self, shape: SampleShape) -> Result<(), String> {
        self.validate()?;
        self.check_shape(shape)
    }

    fn rows_per_record(&self, shape: SampleShape) -> usize {
        self.pieces(shape).max(1)
    }

    fn inputs(&self, data: &Dataset, idx: &[usize], views: &ViewMaker, seed: u64) -> Inputs {
        let (shape, d) = (data.shape, data.dim());
        let perms = self.permutation_set(shape);
        let (pieces, len) = (self.pieces(shape), self.piece_len(shape));
        let records: Vec<(Vec<f32>, u32)> = idx
            .par_iter()
            .map(|&i| {
                let mut view = vec![0.0f32; d];
                views.view(data, i, &mut view, seed, (i as u64) << 1);
                let class = stream_rng(seed, ((i as u64) << 1) | 1).gen_range(0..perms.len());
                // Position j shows piece perm[j].
                let mut out = vec![0.0f32; pieces * len];
                for (j, &p) in perms[class].iter().enumerate() {
                    self.piece(shape, &view, p, &mut out[j * len..(j + 1) * len]);
                }
                (out, class as u32)
            })
            .collect();
        // Position-major rows: row j·records + r is what record r shows at position j.
        let b = idx.len();
        let mut x = vec![0.0f32; pieces * b * len];
        for (r, (v, _)) in records.iter().enumerate() {
            for j in 0..pieces {
                x[(j * b + r) * len..(j * b + r + 1) * len]
                    .copy_from_slice(&v[j * len..(j + 1) * len]);
            }
        }
        Inputs {
            x,
            rows: pieces * b,
            dim: len,
            clean: None,
            mask: None,
            targets: Some(records.into_iter().map(|(_, c)| c).collect()),
        }
    }

    fn loss<B: Kernels>(&self, cx: &LossContext<'_, B>, inputs: Inputs) -> Tensor<B, 1> {
        let logits = self.logits(cx, &inputs);
        let classes = inputs.targets.unwrap_or_default();
        cross_entropy_rows(logits, &classes).mean().reshape([1])
    }

    fn dp_sgd(&self) -> Result<DpUnit, String> {
        Ok(DpUnit::Record)
    }

    fn record_losses<B: Kernels>(
        &self,
        cx: &LossContext<'_, B>,
        inputs: Inputs,
    ) -> Result<Tensor<B, 1>, String> {
        let logits = self.logits(cx, &inputs);
        let classes = inputs
            .targets
            .ok_or("reordering inputs carry no permutation classes")?;
        Ok(cross_entropy_rows(logits, &classes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn every_permutation_of_four_pieces_once_in_lexicographic_order() {
        let r = Reorder::default();
        let set = r.permutation_set(SampleShape::GRAY_28);
        assert_eq!(set.len(), 24);
        assert_eq!(set[0], vec![0, 1, 2, 3]);
        assert_eq!(set[1], vec![0, 1, 3, 2]);
        assert_eq!(set[23], vec![3, 2, 1, 0]);
        let distinct: std::collections::HashSet<_> = set.iter().collect();
        assert_eq!(distinct.len(), 24);
    }

    #[test]
    fn a_subset_of_nine_tile_permutations_is_distinct_and_fixed() {
        let r = Reorder {
            grid: 3,
            permutations: 30,
            ..Reorder::default()
        };
        let shape = SampleShape::Image {
            channels: 1,
            height: 27,
            width: 27,
        };
        let a = r.permutation_set(shape);
        assert_eq!(a, r.permutation_set(shape));
        assert_eq!(a.len(), 30);
        assert_eq!(a[0], (0..9).collect::<Vec<_>>());
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), 30);
        for p in &a {
            let mut s = p.clone();
            s.sort_unstable();
            assert_eq!(s, (0..9).collect::<Vec<_>>());
        }
    }

    #[test]
    fn each_position_shows_its_piece_whole() {
        // A 1×4×4 image with value = 10·row + col; 2×2 tiles, each scaled up to 4×4.
        let shape = SampleShape::Image {
            channels: 1,
            height: 4,
            width: 4,
        };
        let r = Reorder::default();
        let src: Vec<f32> = (0..16).map(|k| (10 * (k / 4) + k % 4) as f32).collect();
        let mut tile = vec![0.0; 16];
        r.piece(shape, &src, 3, &mut tile);
        // Tile 3 (bottom right: rows 2..4, cols 2..4), every pixel repeated 2×2.
        assert_eq!(&tile[0..4], &[22.0, 22.0, 23.0, 23.0]);
        assert_eq!(&tile[4..8], &[22.0, 22.0, 23.0, 23.0]);
        assert_eq!(&tile[12..16], &[32.0, 32.0, 33.0, 33.0]);

        // Two channels of 8 steps in 4 segments: segment 2 of each channel.
        let series = SampleShape::Series {
            channels: 2,
            length: 8,
        };
        let src: Vec<f32> = (0..16).map(|k| k as f32).collect();
        let mut seg = vec![0.0; 4];
        r.piece(series, &src, 2, &mut seg);
        assert_eq!(seg, vec![4.0, 5.0, 12.0, 13.0]);

        // Inputs: position-major rows, position j of record k shows piece perm[class][j].
        let data = Dataset {
            samples: (0..3 * 16).map(|k| k as f32).collect(),
            shape: series,
            labels: None,
            num_classes: 0,
        };
        let inputs = r.inputs(&data, &[2, 0], &ViewMaker::Identity, 9);
        assert_eq!((inputs.rows, inputs.dim), (8, 4));
        let perms = r.permutation_set(series);
        let targets = inputs.targets.clone().unwrap();
        for (k, &i) in [2usize, 0].iter().enumerate() {
            for (j, &piece) in perms[targets[k] as usize].iter().enumerate() {
                let mut want = vec![0.0; 4];
                r.piece(series, data.sample(i), piece, &mut want);
                let row = j * 2 + k;
                assert_eq!(&inputs.x[row * 4..(row + 1) * 4], &want[..]);
            }
        }
        assert_eq!(r.rows_per_record(series), 4);
    }

    #[test]
    fn refuses_what_it_cannot_cut_with_the_setting_to_change() {
        let r = Reorder::default();
        let e = r.fits(SampleShape::Tabular { features: 8 }).unwrap_err();
        assert!(e.contains("no order"), "{e}");
        let e = Reorder { grid: 3, ..r }
            .fits(SampleShape::GRAY_28)
            .unwrap_err();
        assert!(e.contains("plan.reorder.grid"), "{e}");
        let e = r
            .fits(SampleShape::Series {
                channels: 3,
                length: 30,
            })
            .unwrap_err();
        assert!(e.contains("plan.reorder.segments"), "{e}");
        assert!(Reorder {
            permutations: 1,
            ..r
        }
        .validate()
        .is_err());
        assert_eq!(r.classes(SampleShape::GRAY_28), 24);
        assert_eq!(
            Reorder { segments: 3, ..r }.classes(SampleShape::Series {
                channels: 1,
                length: 30
            }),
            6
        );
    }

    #[test]
    fn per_row_cross_entropy_matches_the_formula() {
        // logits (0, ln 3) with class 1: −log(3/4); class 0: −log(1/4).
        let dev = Default::default();
        let l = Tensor::<Flex, 2>::from_data(
            TensorData::new(vec![0.0f32, 3f32.ln(), 0.0, 3f32.ln()], [2, 2]),
            &dev,
        );
        let v: Vec<f32> = cross_entropy_rows(l, &[1, 0]).into_data().to_vec().unwrap();
        assert!((v[0] - (4.0f32 / 3.0).ln()).abs() < 1e-6, "{v:?}");
        assert!((v[1] - 4f32.ln()).abs() < 1e-6, "{v:?}");
    }
}
