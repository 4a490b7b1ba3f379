//! The generated text set: lines of made-up words about one of four topics.
//!
//! Every word is three syllables from one shared inventory of sixteen. Each topic has
//! sixteen words, and in each of the three positions every syllable occurs in exactly one
//! of them, so every topic uses every syllable (and letter) equally often: letter and
//! syllable counts say nothing about the topic. What does is which syllables form words —
//! what a model that predicts masked bytes from their context learns. A line holds 70 %
//! words of its topic and 30 % of other topics.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::tokens::tokenize;
use super::{Dataset, SampleShape, Splits};

/// Number of topics (classes).
pub const TOPICS: usize = 4;
/// Default tokens per line.
pub const LENGTH: usize = 64;
/// Default sizes of the generated splits.
pub const DEFAULT_TRAIN: usize = 6000;
/// Default size of the test split.
pub const DEFAULT_TEST: usize = 2000;

const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ne", "ru", "ta", "so", "vi", "be", "du", "fa", "gi", "ho", "je", "pu", "ze",
];

/// The fraction of a line's words taken from its own topic.
const ON_TOPIC: f64 = 0.7;

/// Each topic's words: `WORDS` words of three syllables; in each position every
/// syllable of the shared inventory occurs exactly once per topic. Built once.
fn vocabulary() -> &'static [Vec<String>] {
    static VOCABULARY: std::sync::LazyLock<Vec<Vec<String>>> =
        std::sync::LazyLock::new(build_vocabulary);
    &VOCABULARY
}

fn build_vocabulary() -> Vec<Vec<String>> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x7091c5);
    (0..TOPICS)
        .map(|_| {
            let perms: Vec<Vec<usize>> = (0..3)
                .map(|_| {
                    let mut p: Vec<usize> = (0..WORDS).collect();
                    p.shuffle(&mut rng);
                    p
                })
                .collect();
            (0..WORDS)
                .map(|j| perms.iter().map(|p| SYLLABLES[p[j]]).collect())
                .collect()
        })
        .collect()
}

/// Words per topic.
const WORDS: usize = SYLLABLES.len();

/// One line of `topic`, about `length` bytes long.
pub fn line(topic: usize, length: usize, rng: &mut impl Rng) -> String {
    let vocab = vocabulary();
    let mut s = String::new();
    while s.len() < length {
        let t = if rng.gen_bool(ON_TOPIC) {
            topic
        } else {
            rng.gen_range(0..TOPICS)
        };
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&vocab[t % TOPICS][rng.gen_range(0..WORDS)]);
    }
    s
}

/// `n` labeled lines of `length` tokens, topics balanced round-robin, deterministic for
/// `seed`.
pub fn generate(n: usize, length: usize, seed: u64) -> Dataset {
    let lines: Vec<String> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i as u64);
            line(i % TOPICS, length, &mut rng)
        })
        .collect();
    Dataset {
        samples: tokenize(lines.iter().map(|l| l.as_bytes()), length),
        shape: SampleShape::Text { length },
        labels: Some((0..n).map(|i| (i % TOPICS) as u8).collect()),
        num_classes: TOPICS,
    }
}

/// The default train / test splits of `length`-token lines.
pub fn splits(length: usize, seed: u64) -> Splits {
    Splits {
        train: generate(DEFAULT_TRAIN, length, seed),
        test: generate(DEFAULT_TEST, length, seed ^ 0x5eed_7e57),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_share_their_letters_but_not_their_words() {
        let vocab = vocabulary();
        let letters = |words: &[String]| {
            let mut l: Vec<char> = words.concat().chars().collect();
            l.sort_unstable();
            l
        };
        for words in &vocab[1..] {
            assert_eq!(letters(words), letters(&vocab[0]), "same letters");
            let shared = words.iter().filter(|w| vocab[0].contains(w)).count();
            assert!(shared <= 2, "mostly other words: {shared} shared");
        }
        let d = generate(8, LENGTH, 1);
        assert_eq!(d, generate(8, LENGTH, 1));
        assert_eq!(d.dim(), LENGTH);
        assert_eq!(d.labels.as_ref().unwrap()[..4], [0, 1, 2, 3]);
        // Lines are full: 64 bytes of syllables and spaces, no padding.
        assert!(d
            .samples
            .iter()
            .all(|&v| v == 32.0 || (97.0..=122.0).contains(&v)));
    }
}
