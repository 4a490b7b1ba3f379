//! The whole model a site trains: the encoder plus the heads its objective uses, and which
//! of its tensors are global (averaged by the server) and which stay on the site.

use crate::prelude::*;
use burn::module::Module;
use burn::prelude::*;

use super::Objective;
use crate::data::SampleShape;
use crate::kernels::{Kernels, Ops};
use crate::model::batchnorm::BnMode;
use crate::model::context::{context_net, ContextNet};
use crate::model::decoder::{decoder, Decoder};
use crate::model::encoder::{Encoder, EncoderConfig, REPR_DIM};
use crate::model::predictor::{Predictor, PredictorConfig};
use crate::model::projector::{Projector, ProjectorConfig};
use crate::model::weights::{ModuleWeights, Weights};
pub use fedssl_core::spec::{BatchNormPlacement, ModelSpec, Parts, Placement};

/// What the ML crate builds from a [`ModelSpec`]: the model, its heads' sizes and its global weights.
pub trait ModelSpecExt {
    /// The input shapes of the first and (cross-modal objectives) second tower.
    fn towers(&self) -> Result<(SampleShape, Option<SampleShape>), String>;

    /// Builds a fresh model on `device` (deterministic for the backend's seed). Whether the
    /// objective, with the plan's settings, fits the data is the plan's check
    /// ([`Objective::fits`](super::SslObjective::fits)), not the model's.
    fn init<B: Backend>(&self, device: &B::Device) -> Result<SslModel<B>, String>;

    /// Width of what the decoder reads: a cell of the last feature map for masked image
    /// modeling, every piece's representation side by side for reordering, else the 128-d
    /// representation.
    fn decoder_input(&self) -> usize;

    /// Values the decoder predicts per input: one logit per permutation for reordering, one
    /// cell's patch for masked image modeling (SimMIM-style, from each cell of the feature
    /// map), one byte's logits for masked-token modeling (from each token), else the whole
    /// sample.
    fn decoder_output(&self) -> Result<usize, String>;

    /// A fresh model drawn from the backend's generator seeded with `seed`. The backend's
    /// generator is process-wide, so seeding and drawing (burn draws lazily, so this reads
    /// every parameter) happen under one lock: models
    /// built at the same time on other threads (simulated sites, tests) cannot take
    /// numbers from the middle of this one's stream.
    fn init_seeded<B: Backend>(&self, device: &B::Device, seed: u64)
        -> Result<SslModel<B>, String>;

    /// The global weights of a freshly initialized model (deterministic for `seed`).
    fn initial_global(&self, seed: u64) -> Result<Weights, String>;

    /// The global tensors of `model`.
    fn global<B: Backend>(&self, model: &SslModel<B>) -> Weights;

    /// Width of the representation evaluations see (both towers side by side for
    /// cross-modal objectives on one modality; the image tower alone for captioned images).
    fn repr_dim(&self) -> usize;
}

impl ModelSpecExt for ModelSpec {
    fn towers(&self) -> Result<(SampleShape, Option<SampleShape>), String> {
        if !self.objective.heads().partner {
            return Ok((self.shape, None));
        }
        let k = self.split;
        match self.shape {
            SampleShape::Captioned { text, .. } => Ok((
                self.shape.image_part(),
                Some(SampleShape::Text { length: text }),
            )),
            SampleShape::Series { channels, length } if k >= 1 && k < channels => Ok((
                SampleShape::Series {
                    channels: k,
                    length,
                },
                Some(SampleShape::Series {
                    channels: channels - k,
                    length,
                }),
            )),
            SampleShape::Tabular { features } if k >= 1 && k < features => Ok((
                SampleShape::Tabular { features: k },
                Some(SampleShape::Tabular {
                    features: features - k,
                }),
            )),
            SampleShape::Series { .. } | SampleShape::Tabular { .. } => Err(format!(
                "split = {k} must leave at least one channel or feature in each tower of {}",
                self.shape
            )),
            s => Err(format!(
                "cross-modal alignment needs two groups of channels or features; {s} have none"
            )),
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> Result<SslModel<B>, String> {
        let heads = self.objective.heads();
        let (first, second) = self.towers()?;
        let encoder = self.encoder.init::<B>(first, self.norm, device)?;
        let partner = match second {
            // Captions: the modality's own encoder (the byte-level Transformer).
            Some(s) if s.modality() != first.modality() => {
                Some(EncoderConfig::default_for(s).init::<B>(s, self.norm, device)?)
            }
            Some(s) => Some(self.encoder.init::<B>(s, self.norm, device)?),
            None => None,
        };
        Ok(SslModel {
            encoder,
            partner,
            projector: heads
                .projector
                .then(|| ProjectorConfig::default().init(device)),
            predictor: heads.predictor.then(|| {
                PredictorConfig {
                    norm: self.norm,
                    ..PredictorConfig::default()
                }
                .init(device)
            }),
            decoder: if heads.decoder {
                Some(decoder(
                    self.decoder_input(),
                    self.decoder_output()?,
                    device,
                ))
            } else {
                None
            },
            context: heads
                .context
                .then(|| context_net(REPR_DIM, self.cpc_steps.max(1), device)),
        })
    }

    fn decoder_input(&self) -> usize {
        match (self.objective, self.shape) {
            (Objective::Masked(_), SampleShape::Image { .. }) => self.encoder.feature_channels(),
            (Objective::Reorder(_), _) => self.pieces.max(1) * REPR_DIM,
            _ => REPR_DIM,
        }
    }

    fn decoder_output(&self) -> Result<usize, String> {
        match (self.objective, self.shape) {
            (Objective::Reorder(_), _) if self.classes >= 2 => Ok(self.classes),
            (Objective::Reorder(_), _) => Err(format!(
                "reordering needs at least 2 permutation classes, got {}",
                self.classes
            )),
            (_, SampleShape::Text { .. }) => Ok(crate::model::transformer::BYTES),
            (Objective::Masked(_), SampleShape::Image { channels, .. }) => {
                let [ph, pw] = self.encoder.cell(self.shape).ok_or_else(|| {
                    format!(
                        "masked image modeling needs {} whose sides divide into the {} encoder's feature grid",
                        self.shape,
                        self.encoder.name()
                    )
                })?;
                Ok(channels * ph * pw)
            }
            (_, s) => Ok(s.len()),
        }
    }

    fn init_seeded<B: Backend>(
        &self,
        device: &B::Device,
        seed: u64,
    ) -> Result<SslModel<B>, String> {
        static SEEDED_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = SEEDED_INIT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        B::seed(device, seed);
        let model = self.init::<B>(device)?;
        // burn draws parameters lazily, on first read: read them all while the lock is held.
        model.visit(&mut Materialize);
        Ok(model)
    }

    fn initial_global(&self, seed: u64) -> Result<Weights, String> {
        let dev = Default::default();
        let m = self.init_seeded::<burn::backend::Flex>(&dev, seed)?;
        Ok(self.global(&m))
    }

    fn global<B: Backend>(&self, model: &SslModel<B>) -> Weights {
        let parts = self.parts;
        Weights::from_module(model).filtered(|n| parts.is_global(n))
    }

    fn repr_dim(&self) -> usize {
        if self.objective.heads().partner && !matches!(self.shape, SampleShape::Captioned { .. }) {
            2 * REPR_DIM
        } else {
            REPR_DIM
        }
    }
}

/// Reads every float parameter once (burn initializes parameters on first read), without
/// copying anything off the device.
struct Materialize;

impl<B: Backend> burn::module::ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// The encoder and the heads of one objective, trained together.
#[derive(Module, Debug)]
pub struct SslModel<B: Backend> {
    /// The encoder (global).
    pub encoder: Encoder<B>,
    /// The second tower of cross-modal objectives (global).
    pub partner: Option<Encoder<B>>,
    /// Projection head.
    pub projector: Option<Projector<B>>,
    /// Prediction head (SimSiam, BYOL).
    pub predictor: Option<Predictor<B>>,
    /// Reconstruction head (masked modeling, denoising).
    pub decoder: Option<Decoder<B>>,
    /// Context network (CPC).
    pub context: Option<ContextNet<B>>,
}

impl<B: Backend> SslModel<B> {
    /// Whether the second tower is a text encoder next to a non-text encoder (captions).
    pub fn has_caption_tower(&self) -> bool {
        matches!(self.partner, Some(Encoder::Text(_))) && !matches!(self.encoder, Encoder::Text(_))
    }
}

impl<B: Kernels> SslModel<B> {
    /// Each tower's representation of flat samples `[N, D]`: the encoder's, and with a
    /// second tower, the second tower's of the values after the first tower's input.
    pub fn towers(
        &self,
        x: Tensor<B, 2>,
        mode: BnMode,
        ops: Ops,
    ) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
        match &self.partner {
            None => (self.encoder.forward_with(x, mode, ops), None),
            Some(p) => {
                let [n, d] = x.dims();
                let at = self.encoder.input_len();
                let a = self
                    .encoder
                    .forward_with(x.clone().slice([0..n, 0..at]), mode, ops);
                (a, Some(p.forward_with(x.slice([0..n, at..d]), mode, ops)))
            }
        }
    }

    /// Representations of flat samples `[N, D]`: the encoder's, or both towers' side by side.
    /// A caption tower (a text encoder next to an image encoder) is left out: a caption
    /// describes the sample, and what it says (the class's name) is not the image's
    /// representation.
    pub fn represent(&self, x: Tensor<B, 2>, mode: BnMode, ops: Ops) -> Tensor<B, 2> {
        if self.has_caption_tower() {
            let [n, _] = x.dims();
            let at = self.encoder.input_len();
            return self.encoder.forward_with(x.slice([0..n, 0..at]), mode, ops);
        }
        match self.towers(x, mode, ops) {
            (a, None) => a,
            (a, Some(b)) => Tensor::cat(vec![a, b], 1),
        }
    }

    /// Projections `[N, 128]` of flat samples (encoder → projector).
    pub fn project(&self, x: Tensor<B, 2>, mode: BnMode, ops: Ops) -> Tensor<B, 2> {
        let h = self.encoder.forward_with(x, mode, ops);
        match &self.projector {
            Some(p) => p.forward(h),
            None => h,
        }
    }
}
