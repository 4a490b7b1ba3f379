//! Evaluation of an encoder on a labeled set the evaluator holds: linear probe and weighted
//! kNN on frozen features, collapse monitors, optional baselines (random-init encoder, raw
//! pixels) and optional label-efficiency rows (probe / fine-tune / supervised from scratch
//! on class-balanced fractions of the labels).

use fedssl_ml::prelude::*;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use fedssl_ml::data::{captions, Dataset, SampleShape};
use fedssl_ml::eval::zero_shot::zero_shot_with_weights;
use fedssl_ml::eval::{
    collapse_metrics, encode_with_weights, finetune, linear_probe, CollapseMetrics, FinetuneConfig,
    KnnConfig, Labels, ProbeConfig, Scorer,
};
use fedssl_ml::model::{ModelSpec, Weights};

/// What to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalOptions {
    /// Linear probe settings.
    pub probe: ProbeConfig,
    /// kNN settings.
    pub knn: KnnConfig,
    /// Also probe a random-init encoder and raw pixels.
    pub baselines: bool,
    /// Label fractions for label-efficiency rows (e.g. 0.01, 0.1, 1.0); empty = none.
    pub label_fractions: Vec<f64>,
    /// Fine-tune and train from scratch on each fraction (`None` = probe only).
    pub finetune: Option<FinetuneConfig>,
    /// Seed of initializations and subsets.
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            probe: ProbeConfig::default(),
            knn: KnnConfig::default(),
            baselines: true,
            label_fractions: Vec::new(),
            finetune: None,
            seed: 0,
        }
    }
}

/// Figures for one label fraction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelEfficiency {
    /// Fraction of the labeled pool used.
    pub fraction: f64,
    /// Labeled samples in the subset.
    pub labeled: usize,
    /// Linear probe on the frozen encoder.
    pub probe_accuracy: f64,
    /// Encoder + head fine-tuned end to end.
    pub finetune_accuracy: Option<f64>,
    /// Same architecture trained from scratch on the same subset.
    pub supervised_accuracy: Option<f64>,
}

/// An evaluation of one encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Linear probe on the trained encoder.
    pub linear_probe_accuracy: f64,
    /// Macro-averaged F1 of that probe on the test set.
    #[serde(default)]
    pub linear_probe_macro_f1: f64,
    /// L2 penalty the probe chose on its validation split.
    pub probe_weight_decay: f32,
    /// Weighted kNN on the trained encoder.
    pub knn_accuracy: f64,
    /// Collapse monitors on the test features.
    pub collapse: CollapseMetrics,
    /// Linear probe on a random-init encoder of the same architecture.
    pub random_init_linear_probe_accuracy: Option<f64>,
    /// kNN on a random-init encoder.
    pub random_init_knn_accuracy: Option<f64>,
    /// Logistic regression on the raw input values (pixels, channels or features).
    pub raw_pixel_linear_probe_accuracy: Option<f64>,
    /// Macro-F1 of the random-init encoder's probe.
    #[serde(default)]
    pub random_init_linear_probe_macro_f1: Option<f64>,
    /// Macro-F1 of the raw-input probe.
    #[serde(default)]
    pub raw_pixel_linear_probe_macro_f1: Option<f64>,
    /// Zero-shot classification by caption (image–text models): accuracy of assigning each
    /// test image to the class whose captions it is closest to, with no label used.
    #[serde(default)]
    pub zero_shot_accuracy: Option<f64>,
    /// The same for the random-init image–text model.
    #[serde(default)]
    pub random_init_zero_shot_accuracy: Option<f64>,
    /// Label-efficiency rows.
    pub label_efficiency: Vec<LabelEfficiency>,
    /// Labeled training samples used by the probe.
    pub probe_train_samples: usize,
    /// Test samples.
    pub probe_test_samples: usize,
    /// Wall-clock seconds of the evaluation.
    pub seconds: f64,
}

fn labels(d: &Dataset, what: &str) -> anyhow::Result<Vec<u8>> {
    d.labels
        .clone()
        .ok_or_else(|| anyhow::anyhow!("evaluation needs a labeled {what} set"))
}

/// Evaluates `encoder` with the labeled `train` set (probe fitting, kNN memory bank,
/// BatchNorm calibration) and the `test` set.
pub fn evaluate(
    spec: &ModelSpec,
    encoder: &Weights,
    train: &Dataset,
    test: &Dataset,
    opts: &EvalOptions,
) -> anyhow::Result<EvalReport> {
    let started = Instant::now();
    let (ytr, yte) = (labels(train, "training")?, labels(test, "test")?);
    let labels = Labels {
        train: &ytr,
        test: &yte,
        classes: train.num_classes.max(test.num_classes),
    };
    let scorer = Scorer {
        probe: ProbeConfig {
            seed: opts.seed,
            ..opts.probe.clone()
        },
        knn: opts.knn,
    };
    let feats = encode_with_weights(spec, Some(encoder), opts.seed, train, &[train, test])?;
    let dim = feats[0].len() / train.len().max(1);
    let trained = scorer.score(&feats[0], &feats[1], dim, labels, &opts.label_fractions);
    let mut collapse = collapse_metrics(&feats[1], dim);
    // Image–text models: zero-shot by caption on the test images' representations.
    let captioned =
        matches!(spec.shape, SampleShape::Captioned { .. }) && spec.objective.heads().partner;
    let prompts = captioned.then(captions::class_prompts);
    let zero_shot = |weights, seed, images: &[f32]| -> anyhow::Result<Option<f64>> {
        prompts
            .as_ref()
            .map(|p| zero_shot_with_weights(spec, weights, seed, images, labels.test, p))
            .transpose()
    };
    let zero_shot_accuracy = zero_shot(Some(encoder), opts.seed, &feats[1])?;
    let mut random_zero_shot = None;

    let (mut random_probe, mut random_knn, mut raw) = (None, None, None);
    let (mut random_f1, mut raw_f1) = (None, None);
    if opts.baselines {
        let r = encode_with_weights(spec, None, opts.seed ^ 0xA5A5, train, &[train, test])?;
        collapse = collapse.with_reference(collapse_metrics(&r[1], dim).effective_rank);
        random_zero_shot = zero_shot(None, opts.seed ^ 0xA5A5, &r[1])?;
        let random = scorer.score(&r[0], &r[1], dim, labels, &[]);
        random_probe = Some(random.probe.test_accuracy);
        random_f1 = Some(random.probe.test_macro_f1);
        random_knn = Some(random.knn);
        // Captions name the class: the raw baseline sees the images alone, as the encoder.
        let (train_raw, test_raw) = (train.image_part(), test.image_part());
        let r = linear_probe(
            &train_raw.samples,
            labels.train,
            &test_raw.samples,
            labels.test,
            train_raw.dim(),
            labels.classes,
            &scorer.probe,
        );
        raw = Some(r.test_accuracy);
        raw_f1 = Some(r.test_macro_f1);
    }

    let mut label_efficiency = Vec::new();
    for f in &trained.fractions {
        let (mut finetune_accuracy, mut supervised_accuracy) = (None, None);
        if let Some(ft) = &opts.finetune {
            let sub = train.subset(&f.subset);
            let ft = FinetuneConfig {
                seed: opts.seed,
                ..*ft
            };
            finetune_accuracy = Some(finetune(spec, Some(encoder), &sub, test, &ft)?.test_accuracy);
            supervised_accuracy = Some(finetune(spec, None, &sub, test, &ft)?.test_accuracy);
        }
        label_efficiency.push(LabelEfficiency {
            fraction: f.fraction,
            labeled: f.subset.len(),
            probe_accuracy: f.accuracy,
            finetune_accuracy,
            supervised_accuracy,
        });
    }

    Ok(EvalReport {
        linear_probe_accuracy: trained.probe.test_accuracy,
        linear_probe_macro_f1: trained.probe.test_macro_f1,
        probe_weight_decay: trained.probe.weight_decay,
        knn_accuracy: trained.knn,
        collapse,
        random_init_linear_probe_accuracy: random_probe,
        random_init_knn_accuracy: random_knn,
        raw_pixel_linear_probe_accuracy: raw,
        random_init_linear_probe_macro_f1: random_f1,
        raw_pixel_linear_probe_macro_f1: raw_f1,
        zero_shot_accuracy,
        random_init_zero_shot_accuracy: random_zero_shot,
        label_efficiency,
        probe_train_samples: train.len(),
        probe_test_samples: test.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A readable table of a report.
pub fn render_eval(r: &EvalReport) -> String {
    let pct = |v: f64| format!("{:>6.2}%", 100.0 * v);
    let opt = |v: Option<f64>| v.map(pct).unwrap_or_else(|| "     -".into());
    let f1 = |v: Option<f64>| {
        v.filter(|x| x.is_finite())
            .map(|x| format!("{x:>8.4}"))
            .unwrap_or_else(|| "       -".into())
    };
    let mut out = format!(
        "representation ({} labeled train / {} test):\n                      linear probe  macro-F1      kNN\n  trained encoder        {}  {}   {}\n",
        r.probe_train_samples,
        r.probe_test_samples,
        pct(r.linear_probe_accuracy),
        f1(Some(r.linear_probe_macro_f1)),
        pct(r.knn_accuracy)
    );
    if r.random_init_linear_probe_accuracy.is_some() {
        out.push_str(&format!(
            "  random-init encoder    {}  {}   {}\n  raw input values       {}  {}        -\n",
            opt(r.random_init_linear_probe_accuracy),
            f1(r.random_init_linear_probe_macro_f1),
            opt(r.random_init_knn_accuracy),
            opt(r.raw_pixel_linear_probe_accuracy),
            f1(r.raw_pixel_linear_probe_macro_f1),
        ));
    }
    out.push_str(&format!(
        "  collapse: std of normalized embeddings {:.4} ({:.2}/√d), effective rank {:.1} of {}{}\n",
        r.collapse.embedding_std,
        r.collapse.std_ratio,
        r.collapse.effective_rank,
        r.collapse.dim,
        r.collapse
            .reference_rank
            .map(|x| format!(" (random init {x:.1})"))
            .unwrap_or_default()
    ));
    if let Some(z) = r.zero_shot_accuracy {
        out.push_str(&format!(
            "  zero-shot by caption   {} (random init {}; no labels used)\n",
            pct(z),
            opt(r.random_init_zero_shot_accuracy)
        ));
    }
    for w in r.collapse.warnings() {
        out.push_str(&format!("  WARNING: {w}\n"));
    }
    if !r.label_efficiency.is_empty() {
        out.push_str("label efficiency:\n  labels          probe  fine-tune  supervised\n");
        for l in &r.label_efficiency {
            out.push_str(&format!(
                "  {:>5.1}% {:>6}  {}    {}     {}\n",
                100.0 * l.fraction,
                l.labeled,
                pct(l.probe_accuracy),
                opt(l.finetune_accuracy),
                opt(l.supervised_accuracy)
            ));
        }
    }
    out
}
