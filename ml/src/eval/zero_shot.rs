//! Zero-shot classification by caption, as CLIP evaluates (Radford et al., 2021): an
//! image-text model classifies an image with no labeled example by asking which class's
//! captions its representation is closest to. Each class is the mean of its prompts'
//! L2-normalized text representations (prompt ensembling), normalized again; an image
//! goes to the class of highest cosine similarity.

use super::features::{batch_tensor, model_with_weights};
use super::knn::l2_normalize_rows;
use crate::data::{Dataset, SampleShape};
use crate::kernels::Ops;
use crate::model::transformer::tokenize;
use crate::model::{BnMode, Encoder, ModelSpec, Weights, REPR_DIM};

/// One unit vector per class (`classes × dim`, row-major): the normalized mean of the
/// class's normalized prompt representations. `text` holds `counts[c]` rows of `dim`
/// values for class 0, then class 1's, and so on.
pub fn class_embeddings(text: &[f32], dim: usize, counts: &[usize]) -> Vec<f32> {
    let unit = l2_normalize_rows(text, dim);
    let mut out = vec![0.0f32; counts.len() * dim];
    let mut row = 0;
    for (c, &k) in counts.iter().enumerate() {
        let class = &mut out[c * dim..(c + 1) * dim];
        for r in row..row + k {
            for (o, v) in class.iter_mut().zip(&unit[r * dim..(r + 1) * dim]) {
                *o += v;
            }
        }
        row += k;
    }
    l2_normalize_rows(&out, dim)
}

/// The class (row of `classes`, unit vectors) of highest cosine similarity to each image
/// representation in `images` (`n × dim`); ties go to the lower class.
pub fn predict(images: &[f32], classes: &[f32], dim: usize) -> Vec<usize> {
    let unit = l2_normalize_rows(images, dim);
    unit.chunks_exact(dim.max(1))
        .map(|x| {
            let mut best = (0, f32::NEG_INFINITY);
            for (c, w) in classes.chunks_exact(dim.max(1)).enumerate() {
                let s: f32 = x.iter().zip(w).map(|(a, b)| a * b).sum();
                if s > best.1 {
                    best = (c, s);
                }
            }
            best.0
        })
        .collect()
}

/// Accuracy of [`predict`] against `labels`.
pub fn accuracy(images: &[f32], classes: &[f32], dim: usize, labels: &[u8]) -> f64 {
    let pred = predict(images, classes, dim);
    let hits = pred
        .iter()
        .zip(labels)
        .filter(|(p, &y)| **p == usize::from(y))
        .count();
    hits as f64 / labels.len().max(1) as f64
}

/// Zero-shot accuracy of the image representations `images` (`n × 128`, from the image
/// tower of the same model) against `labels`, classifying by `prompts` (each class's
/// captions, in label order) encoded by the text tower of a model of `spec` with `weights`
/// (`None`: the random-init model of `init_seed`). The test set's own captions are not read.
pub fn zero_shot_with_weights(
    spec: &ModelSpec,
    weights: Option<&Weights>,
    init_seed: u64,
    images: &[f32],
    labels: &[u8],
    prompts: &[Vec<String>],
) -> anyhow::Result<f64> {
    let SampleShape::Captioned { text, .. } = spec.shape else {
        anyhow::bail!(
            "zero-shot classification needs captioned images, not {}",
            spec.shape
        );
    };
    // The text tower has no BatchNorm: nothing to calibrate.
    let model = model_with_weights(spec, weights, init_seed, None)?;
    let Some(tower @ Encoder::Text(_)) = &model.partner else {
        anyhow::bail!("zero-shot classification needs a text tower (objective = \"clip\")");
    };
    let dev = Default::default();
    let counts: Vec<usize> = prompts.iter().map(Vec::len).collect();
    let captions = Dataset {
        samples: tokenize(prompts.iter().flatten().map(|p| p.as_bytes()), text),
        shape: SampleShape::Text { length: text },
        labels: None,
        num_classes: 0,
    };
    let mut texts = Vec::with_capacity(captions.len() * REPR_DIM);
    let mut start = 0;
    while start < captions.len() {
        let end = (start + 256).min(captions.len());
        let x = batch_tensor(&captions, start, end, &dev);
        let t = tower.forward_with(x, BnMode::Eval, Ops::Kernels);
        texts.extend(t.into_data().to_vec::<f32>().unwrap_or_default());
        start = end;
    }
    Ok(accuracy(
        images,
        &class_embeddings(&texts, REPR_DIM, &counts),
        REPR_DIM,
        labels,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_normalized_means_of_normalized_prompts() {
        // Class 0: prompts (3, 4) and (0, 2) → units (0.6, 0.8), (0, 1) → mean (0.3, 0.9)
        // → (0.3162, 0.9487). Class 1: one prompt (-5, 0) → (-1, 0).
        let text = [3.0, 4.0, 0.0, 2.0, -5.0, 0.0];
        let c = class_embeddings(&text, 2, &[2, 1]);
        let n = (0.3f32 * 0.3 + 0.9 * 0.9).sqrt();
        assert!((c[0] - 0.3 / n).abs() < 1e-6 && (c[1] - 0.9 / n).abs() < 1e-6);
        assert_eq!(&c[2..], &[-1.0, 0.0]);
    }

    #[test]
    fn images_go_to_the_class_of_highest_cosine() {
        let classes = [1.0, 0.0, 0.0, 1.0, -1.0, 0.0];
        // Scale does not matter, direction does: (10, 1) → 0, (0.1, 0.2) → 1, (-3, 2.9) → 2.
        let images = [10.0, 1.0, 0.1, 0.2, -3.0, 2.9];
        assert_eq!(predict(&images, &classes, 2), vec![0, 1, 2]);
        assert!((accuracy(&images, &classes, 2, &[0, 1, 1]) - 2.0 / 3.0).abs() < 1e-12);
    }
}
