//! Class-balanced, seeded label subsets for label-efficiency experiments.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Indices of a class-balanced subset holding `fraction` of each class's samples
/// (at least one per class present), in increasing order. The same seed gives the same
/// subset, and a smaller fraction's subset is contained in a larger one's.
pub fn balanced_subset(labels: &[u8], fraction: f64, seed: u64) -> Vec<usize> {
    let fraction = fraction.clamp(0.0, 1.0);
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut out = Vec::new();
    for (c, idx) in by_class.iter_mut().enumerate() {
        if idx.is_empty() {
            continue;
        }
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(
            seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ));
        let take = ((idx.len() as f64 * fraction).round() as usize).clamp(1, idx.len());
        out.extend_from_slice(&idx[..take]);
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_are_balanced_seeded_and_nested() {
        // 3 classes with 100, 200 and 50 samples.
        let labels: Vec<u8> = (0..350)
            .map(|i| {
                if i < 100 {
                    0
                } else if i < 300 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let ten = balanced_subset(&labels, 0.1, 7);
        let count = |s: &[usize], c: u8| s.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!(
            (count(&ten, 0), count(&ten, 1), count(&ten, 2)),
            (10, 20, 5)
        );
        assert_eq!(ten, balanced_subset(&labels, 0.1, 7));
        assert_ne!(ten, balanced_subset(&labels, 0.1, 8));
        let one = balanced_subset(&labels, 0.01, 7);
        assert_eq!((count(&one, 0), count(&one, 1), count(&one, 2)), (1, 2, 1));
        assert!(one.iter().all(|i| ten.contains(i)));
        assert_eq!(balanced_subset(&labels, 1.0, 7).len(), 350);
    }
}
