//! The generated captioned images: the default dataset's shapes ([`synthetic`]), each with a
//! caption that says what was drawn: the shape's name (one of two per class, or just
//! "shape" in one caption of ten), often its size and brightness, and where it sits.
//! Captions vary in wording (three templates), so a text encoder has to learn which words
//! matter. Zero-shot classification asks which class's captions ([`class_prompts`]) an
//! image is closest to.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::synthetic::{render, Drawn};
use super::tokens::tokenize;
use super::{Dataset, SampleShape, Splits};

/// Caption tokens per sample.
pub const TEXT: usize = 64;

/// 28×28 grayscale images with captions of [`TEXT`] bytes.
pub const SHAPE: SampleShape = SampleShape::Captioned {
    channels: 1,
    height: 28,
    width: 28,
    text: TEXT,
};

/// Default size of the generated pretraining split.
pub const DEFAULT_TRAIN: usize = 6000;
/// Default size of the test split.
pub const DEFAULT_TEST: usize = 2000;

/// Two names per class, in label order ([`synthetic::CLASS_NAMES`](super::synthetic::CLASS_NAMES)).
pub const NAMES: [[&str; 2]; 10] = [
    ["disk", "dot"],
    ["ring", "circle"],
    ["square", "block"],
    ["frame", "outline"],
    ["triangle", "wedge"],
    ["plus", "plus sign"],
    ["cross", "x mark"],
    ["horizontal bars", "stripes"],
    ["vertical bars", "columns"],
    ["checker", "chequerboard"],
];

/// Where a shape can sit, as a caption says it.
const PLACES: [&str; 9] = [
    "top left",
    "top",
    "top right",
    "left",
    "centre",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
];

/// Fraction of captions that do not name the shape ("a small shape at the top").
const UNNAMED: f64 = 0.1;

/// A caption from its parts in one of three wordings (`template` mod 3); a part that is
/// `None` is left out.
pub fn caption(
    name: &str,
    size: Option<&str>,
    tone: Option<&str>,
    place: &str,
    template: usize,
) -> String {
    let (size, tone) = (size.unwrap_or_default(), tone.unwrap_or_default());
    let words = match template % 3 {
        0 => vec!["a", size, tone, name, "at the", place],
        1 => vec![tone, size, name, "in the", place],
        _ => vec!["the", place, "shows a", size, tone, name],
    };
    let text = words
        .into_iter()
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if template % 3 == 1 {
        text.replacen(" in the", ", in the", 1)
    } else {
        text
    }
}

/// The place word of a shape centred at (`cx`, `cy`) on the 28×28 grid.
fn place(cx: f32, cy: f32) -> &'static str {
    let third = |v: f32| usize::from(v >= 12.0) + usize::from(v > 16.0);
    PLACES[3 * third(cy) + third(cx)]
}

/// The caption of an image of `class` with what [`render`] drew, its wording drawn from
/// `rng`.
fn describe(class: usize, drawn: Drawn, rng: &mut ChaCha8Rng) -> String {
    let name = if rng.gen_bool(UNNAMED) {
        "shape"
    } else {
        NAMES[class % NAMES.len()][rng.gen_range(0..2)]
    };
    let size = (drawn.size < 6.0)
        .then_some("small")
        .or((drawn.size > 7.5).then_some("large"));
    let tone = (drawn.fg > 0.85)
        .then_some("bright")
        .or((drawn.fg < 0.7).then_some("faint"));
    caption(
        name,
        size,
        tone,
        place(drawn.cx, drawn.cy),
        rng.gen_range(0..3),
    )
}

/// `n` labeled captioned images of `shape` (a [`SampleShape::Captioned`] of 1 or 3
/// channels), classes balanced round-robin, deterministic for `seed`; the captions alone,
/// as text, come second.
pub fn generate_with_captions(
    n: usize,
    shape: SampleShape,
    seed: u64,
) -> Result<(Dataset, Vec<String>), String> {
    let SampleShape::Captioned {
        channels: channels @ (1 | 3),
        height,
        width,
        text,
    } = shape
    else {
        return Err(format!(
            "generated captioned images are grayscale or RGB; {shape} are not"
        ));
    };
    let pixels = channels * height * width;
    let drawn: Vec<(Vec<f32>, String)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i as u64);
            let mut img = vec![0.0f32; pixels];
            let class = i % NAMES.len();
            let d = render(class as u8, &mut rng, [channels, height, width], &mut img);
            let caption = describe(class, d, &mut rng);
            (img, caption)
        })
        .collect();
    let mut samples = Vec::with_capacity(n * shape.len());
    for (img, caption) in &drawn {
        samples.extend_from_slice(img);
        samples.extend(tokenize([caption.as_bytes()], text));
    }
    let data = Dataset {
        samples,
        shape,
        labels: Some((0..n).map(|i| (i % NAMES.len()) as u8).collect()),
        num_classes: NAMES.len(),
    };
    Ok((data, drawn.into_iter().map(|(_, c)| c).collect()))
}

/// `n` labeled captioned images of `shape` ([`generate_with_captions`]).
pub fn generate(n: usize, shape: SampleShape, seed: u64) -> Result<Dataset, String> {
    generate_with_captions(n, shape, seed).map(|(d, _)| d)
}

/// The default train / test splits of captioned images of `shape`.
pub fn splits(shape: SampleShape, seed: u64) -> Result<Splits, String> {
    Ok(Splits {
        train: generate(DEFAULT_TRAIN, shape, seed)?,
        test: generate(DEFAULT_TEST, shape, seed ^ 0x5eed_7e57)?,
    })
}

/// Zero-shot prompts of each class, in label order: every name of the class in every
/// wording and place, without size or brightness (54 per class). A classifier averages
/// the text encoder's normalized representations of a class's prompts (prompt
/// ensembling, as CLIP does).
pub fn class_prompts() -> Vec<Vec<String>> {
    NAMES
        .iter()
        .map(|names| {
            let mut out = Vec::new();
            for name in names {
                for template in 0..3 {
                    for place in PLACES {
                        out.push(caption(name, None, None, place, template));
                    }
                }
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_say_what_was_drawn() {
        let (d, captions) = generate_with_captions(40, SHAPE, 3).unwrap();
        assert_eq!(d.dim(), 28 * 28 + TEXT);
        assert_eq!(captions.len(), 40);
        let labels = d.labels.as_ref().unwrap();
        let mut named = 0;
        for (i, c) in captions.iter().enumerate() {
            assert!(c.len() <= TEXT, "{c:?} is longer than {TEXT} bytes");
            let names = NAMES[labels[i] as usize];
            let other_class_named = NAMES
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != labels[i] as usize)
                .flat_map(|(_, n)| n.iter())
                .any(|n| c.split([' ', ',']).any(|w| w == *n));
            assert!(!other_class_named, "{c:?} names another class");
            if names.iter().any(|n| c.contains(n)) {
                named += 1;
            } else {
                assert!(c.contains("shape"), "{c:?} names nothing");
            }
            assert!(PLACES.iter().any(|p| c.contains(p)), "{c:?} has no place");
            // The caption's tokens follow the image's pixels, then padding.
            let s = d.sample(i);
            let bytes: Vec<u8> = s[28 * 28..28 * 28 + c.len()]
                .iter()
                .map(|&v| v as u8)
                .collect();
            assert_eq!(bytes, c.as_bytes());
            assert!(s[28 * 28 + c.len()..]
                .iter()
                .all(|&v| v as usize == crate::data::tokens::PAD));
            assert!(s[..28 * 28].iter().all(|v| (0.0..=1.0).contains(v)));
        }
        assert!(named >= 30, "only {named} of 40 captions name the shape");
        // The images are the default dataset's shapes, drawn the same way.
        assert_eq!(d, generate(40, SHAPE, 3).unwrap());
    }

    #[test]
    fn places_split_the_grid_in_thirds() {
        assert_eq!(place(8.0, 8.0), "top left");
        assert_eq!(place(14.0, 14.0), "centre");
        assert_eq!(place(19.0, 14.0), "right");
        assert_eq!(place(14.0, 19.0), "bottom");
        assert_eq!(place(19.5, 19.5), "bottom right");
    }

    #[test]
    fn every_class_has_its_prompts() {
        let p = class_prompts();
        assert_eq!(p.len(), 10);
        assert!(p.iter().all(|c| c.len() == 54));
        assert_eq!(p[1][0], "a ring at the top left");
        assert_eq!(p[1][9], "ring, in the top left");
        assert_eq!(p[1][18], "the top left shows a ring");
        assert!(p.iter().flatten().all(|c| c.len() <= TEXT));
        assert!(generate(4, SampleShape::GRAY_28, 1).is_err());
    }
}
