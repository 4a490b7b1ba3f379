//! Model weights as plain named `f32` tensors: the form in which models are hashed, sent,
//! clipped, noised, aggregated and saved (as safetensors files).

use std::collections::HashMap;
use std::path::Path;

/// One named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightTensor {
    /// Parameter path, e.g. `blocks.0.conv.weight`.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// An ordered set of named tensors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Weights {
    /// Tensors in the model's canonical (visit) order.
    pub tensors: Vec<WeightTensor>,
}

/// Names and shapes a model's weights must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsSpec {
    /// `(name, shape)` in canonical order.
    pub entries: Vec<(String, Vec<usize>)>,
}

impl WeightsSpec {
    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.entries
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

/// Errors when moving weights into a module or a file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// A module parameter has no tensor of that name, or shapes differ.
    #[error(
        "weights do not fit the model: {0}. The file holds another model (data shape, encoder, \
         objective or normalization) than the one being built: use the run's own plan (a \
         checkpoint written by a fedssl server describes its model; otherwise pass --plan)"
    )]
    Mismatch(String),
    /// File I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file of f32 tensors.
    #[error("{path}: not a valid model file: {reason}")]
    Format {
        /// File involved.
        path: String,
        /// Cause.
        reason: String,
    },
}

/// The element-type tag of little-endian `f32` data in the content hash.
pub const F32_TAG: u8 = 1;

/// The canonical content hash of a set of named tensors: SHA-256 over the tensor count, then
/// per tensor its name, shape (`u32` dimensions), element-type tag, byte length and
/// little-endian bytes, each length as a `u64`. [`Weights::hash`] and the wire payload's hash
/// are both this, so a model hashes the same in memory, on disk and on the wire.
pub struct ContentHasher(sha2::Sha256);

impl ContentHasher {
    /// Starts a hash of `tensors` tensors.
    pub fn new(tensors: usize) -> Self {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update((tensors as u64).to_le_bytes());
        Self(h)
    }

    /// Starts the next tensor; its `byte_len` bytes follow through [`ContentHasher::bytes`].
    pub fn tensor(
        &mut self,
        name: &str,
        shape: impl ExactSizeIterator<Item = u32>,
        dtype_tag: u8,
        byte_len: usize,
    ) {
        use sha2::Digest;
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update((shape.len() as u64).to_le_bytes());
        for d in shape {
            self.0.update(d.to_le_bytes());
        }
        self.0.update([dtype_tag]);
        self.0.update((byte_len as u64).to_le_bytes());
    }

    /// Data bytes of the current tensor.
    pub fn bytes(&mut self, data: &[u8]) {
        use sha2::Digest;
        self.0.update(data);
    }

    /// The hash, as lowercase hex.
    pub fn finish(self) -> String {
        use sha2::Digest;
        hex::encode(self.0.finalize())
    }
}

/// Whether the tensor named `name` is a BatchNorm running statistic (a direct aggregate of
/// local data, never trained by gradient).
pub fn is_bn_statistic(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

impl Weights {
    /// The tensors whose names satisfy `keep`.
    pub fn filtered(&self, keep: impl Fn(&str) -> bool) -> Weights {
        Weights {
            tensors: self
                .tensors
                .iter()
                .filter(|t| keep(&t.name))
                .cloned()
                .collect(),
        }
    }

    /// `a·self + (1 − a)·other`, tensor by tensor (both must have the same names and shapes).
    pub fn mix(&self, other: &Weights, a: f32) -> Result<Weights, WeightsError> {
        self.zip_with(other, |x, y| a * x + (1.0 - a) * y)
    }

    /// Names and shapes.
    pub fn spec(&self) -> WeightsSpec {
        WeightsSpec {
            entries: self
                .tensors
                .iter()
                .map(|t| (t.name.clone(), t.shape.clone()))
                .collect(),
        }
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.tensors.iter().map(|t| t.values.len()).sum()
    }

    /// Content hash ([`ContentHasher`]: the same as the wire payload's).
    pub fn hash(&self) -> String {
        let mut h = ContentHasher::new(self.tensors.len());
        let mut buf = Vec::with_capacity(4096);
        for t in &self.tensors {
            h.tensor(
                &t.name,
                t.shape.iter().map(|&d| d as u32),
                F32_TAG,
                t.values.len() * 4,
            );
            for chunk in t.values.chunks(1024) {
                buf.clear();
                buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
                h.bytes(&buf);
            }
        }
        h.finish()
    }

    /// `self − base`, tensor by tensor. Both must have the same spec.
    pub fn sub(&self, base: &Weights) -> Result<Weights, WeightsError> {
        self.zip_with(base, |a, b| a - b)
    }

    /// `self + other`, tensor by tensor. Both must have the same spec.
    pub fn add(&self, other: &Weights) -> Result<Weights, WeightsError> {
        self.zip_with(other, |a, b| a + b)
    }

    fn zip_with(
        &self,
        other: &Weights,
        f: impl Fn(f32, f32) -> f32,
    ) -> Result<Weights, WeightsError> {
        if self.spec() != other.spec() {
            return Err(WeightsError::Mismatch(
                "the two sets of weights have different names or shapes".into(),
            ));
        }
        Ok(Weights {
            tensors: self
                .tensors
                .iter()
                .zip(&other.tensors)
                .map(|(a, b)| WeightTensor {
                    name: a.name.clone(),
                    shape: a.shape.clone(),
                    values: a
                        .values
                        .iter()
                        .zip(&b.values)
                        .map(|(x, y)| f(*x, *y))
                        .collect(),
                })
                .collect(),
        })
    }

    /// L2 norm over all values (accumulated in f64).
    pub fn l2_norm(&self) -> f64 {
        self.values()
            .map(|v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt()
    }

    /// True when no value is NaN or infinite.
    pub fn is_finite(&self) -> bool {
        self.values().all(f32::is_finite)
    }

    /// All values in canonical order.
    pub fn values(&self) -> impl Iterator<Item = f32> + '_ {
        self.tensors.iter().flat_map(|t| t.values.iter().copied())
    }

    /// Multiplies every value by `s`.
    pub fn scale(&mut self, s: f32) {
        for t in &mut self.tensors {
            for v in &mut t.values {
                *v *= s;
            }
        }
    }

    /// Writes a safetensors file atomically: temporary file, fsync, rename, fsync of the folder.
    pub fn save(&self, path: &Path) -> Result<(), WeightsError> {
        self.save_described(path, &std::collections::BTreeMap::new())
    }

    /// [`Weights::save`] with `describe` added to the file's safetensors metadata (e.g. the
    /// model spec, the plan and the software version, so the file describes itself; read
    /// it back with [`read_metadata`]). Keys starting with `fedssl.order` or `fedssl.hash`
    /// are the format's own and cannot be set.
    pub fn save_described(
        &self,
        path: &Path,
        describe: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), WeightsError> {
        let io = |source| WeightsError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|t| {
                let mut b = Vec::with_capacity(t.values.len() * 4);
                for v in &t.values {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                (t.name.clone(), b, t.shape.clone())
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(n, b, s)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| WeightsError::Format {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let order: Vec<String> = self.tensors.iter().map(|t| t.name.clone()).collect();
        let mut meta: HashMap<String, String> = describe
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        meta.insert("fedssl.order".to_string(), order.join(","));
        meta.insert("fedssl.hash".to_string(), self.hash());
        let data = safetensors::serialize(views, Some(meta)).map_err(|e| WeightsError::Format {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        crate::atomic_write(path, &data).map_err(io)
    }

    /// Reads a safetensors file written by [`Weights::save`] (or any file of f32 tensors;
    /// tensors then come in name order).
    pub fn load(path: &Path) -> Result<Weights, WeightsError> {
        let data = std::fs::read(path).map_err(|source| WeightsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let fmt = |reason: String| WeightsError::Format {
            path: path.display().to_string(),
            reason,
        };
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&data).map_err(|e| fmt(e.to_string()))?;
        let st = safetensors::SafeTensors::deserialize(&data).map_err(|e| fmt(e.to_string()))?;
        let mut names: Vec<String> =
            match meta.metadata().as_ref().and_then(|m| m.get("fedssl.order")) {
                Some(o) if !o.is_empty() => o.split(',').map(str::to_string).collect(),
                _ => st.names().into_iter().map(|s| s.to_string()).collect(),
            };
        if names.len() != st.len() {
            names = st.names().into_iter().map(|s| s.to_string()).collect();
            names.sort();
        }
        let mut tensors = Vec::with_capacity(names.len());
        for name in names {
            let v = st.tensor(&name).map_err(|e| fmt(e.to_string()))?;
            if v.dtype() != safetensors::Dtype::F32 {
                return Err(fmt(format!("tensor `{name}` is {:?}, not F32", v.dtype())));
            }
            let values = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.push(WeightTensor {
                name,
                shape: v.shape().to_vec(),
                values,
            });
        }
        Ok(Weights { tensors })
    }
}

/// The safetensors metadata of the file at `path` (what [`Weights::save_described`] wrote).
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>, WeightsError> {
    let data = std::fs::read(path).map_err(|source| WeightsError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&data).map_err(|e| WeightsError::Format {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Weights {
        Weights {
            tensors: vec![
                WeightTensor {
                    name: "a.weight".into(),
                    shape: vec![2, 3],
                    values: (0..6).map(|i| i as f32 * 0.5 - 1.0).collect(),
                },
                WeightTensor {
                    name: "a.bn.running_mean".into(),
                    shape: vec![3],
                    values: vec![0.1, 0.2, 0.3],
                },
            ],
        }
    }

    #[test]
    fn file_roundtrip_keeps_values_and_hash() {
        let w = sample();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        w.save(&p).unwrap();
        let back = Weights::load(&p).unwrap();
        assert_eq!(back, w);
        assert_eq!(back.hash(), w.hash());
    }

    #[test]
    fn arithmetic_and_mismatch() {
        let w = sample();
        let d = w.add(&w).unwrap().sub(&w).unwrap();
        assert_eq!(d, w);
        let mut other = w.clone();
        other.tensors[0].shape = vec![3, 2];
        assert!(w.sub(&other).is_err());
        assert!(is_bn_statistic("a.bn.running_mean") && !is_bn_statistic("a.weight"));
    }
}
