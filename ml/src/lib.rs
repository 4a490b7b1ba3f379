//! `fedssl-ml`: what trains and evaluates an encoder.
//!
//! - [`model`]: the encoders (ConvNet-S, ResNet, 1-D CNN, MLP, byte-level Transformer), the
//!   objectives' heads, the model a site trains with its global and local parts, and moving
//!   [`Weights`](fedssl_core::weights::Weights) in and out of burn modules.
//! - [`ssl`]: the self-supervised objectives, one file each behind one trait, and the
//!   augmentations per modality.
//! - [`data`]: the on-disk readers (one file per format), the generators, partitioning.
//! - [`eval`]: feature extraction, linear probe, kNN, collapse monitors, fine-tuning.
//!
//! The plain descriptions these build from (model spec, objective, sample shape) are in
//! `fedssl_core::spec`; the layer kernels are `fedssl_kernels`.

pub use fedssl_kernels as kernels;

pub mod data;
pub mod eval;
pub mod model;
pub mod ssl;

#[cfg(test)]
mod kernel_tests;

/// The extension traits that give the core descriptions their ML behaviour; `use
/// fedssl_ml::prelude::*` brings them into scope.
pub mod prelude {
    pub use crate::model::encoder::EncoderConfigExt;
    pub use crate::model::weights::ModuleWeights;
    pub use crate::ssl::denoising::DenoisingExt;
    pub use crate::ssl::masked::MaskedExt;
    pub use crate::ssl::model::ModelSpecExt;
    pub use crate::ssl::objective::ObjectiveExt;
}

#[cfg(test)]
mod layering {
    /// The modules in layer order: each may use those before it, never one after it.
    const LAYERS: [(&str, usize); 5] = [
        ("data", 0),
        ("model", 1),
        ("ssl", 2),
        ("prelude", 2),
        ("eval", 3),
    ];

    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn no_module_uses_a_layer_above_it() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut violations = Vec::new();
        let mut scanned = 0;
        for (module, level) in LAYERS {
            let dir = src.join(module);
            if !dir.is_dir() {
                continue;
            }
            let mut fs = Vec::new();
            files(&dir, &mut fs);
            for f in fs {
                scanned += 1;
                let text = std::fs::read_to_string(&f).unwrap();
                for (other, other_level) in LAYERS {
                    if other_level > level && text.contains(&format!("crate::{other}")) {
                        violations.push(format!("{} uses crate::{other}", f.display()));
                    }
                }
            }
        }
        assert!(scanned > 40, "only {scanned} files scanned");
        assert!(violations.is_empty(), "{violations:#?}");
    }
}
