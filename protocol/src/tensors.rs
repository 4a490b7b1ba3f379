//! Model payloads: named tensors (name, shape, dtype, little-endian bytes) and a content hash.

use serde::{Deserialize, Serialize};

use fedssl_core::weights::{ContentHasher, Weights, WeightsSpec, F32_TAG};

/// Element type of a tensor on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DType {
    /// IEEE-754 binary32, little-endian.
    F32,
}

/// One tensor on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedTensor {
    /// Parameter path, e.g. `conv2.weight`.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<u32>,
    /// Element type.
    pub dtype: DType,
    /// Little-endian element bytes.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// A set of named tensors and the SHA-256 of their canonical encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPayload {
    /// The tensors, in the model's canonical order.
    pub tensors: Vec<NamedTensor>,
    /// Hex SHA-256 over names, shapes, dtypes and bytes.
    pub hash: String,
}

/// Why a payload was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// The hash does not match the content.
    #[error("content hash mismatch: payload says {claimed}, content hashes to {actual}")]
    HashMismatch {
        /// Hash carried by the payload.
        claimed: String,
        /// Hash of the content.
        actual: String,
    },
    /// Names, order, shapes, dtype or byte length differ from the expected model.
    #[error("shape mismatch: {0}")]
    Shape(String),
}

fn hash_tensors(tensors: &[NamedTensor]) -> String {
    let mut h = ContentHasher::new(tensors.len());
    for t in tensors {
        let tag = match t.dtype {
            DType::F32 => F32_TAG,
        };
        h.tensor(&t.name, t.shape.iter().copied(), tag, t.data.len());
        h.bytes(&t.data);
    }
    h.finish()
}

impl ModelPayload {
    /// Encodes weights as a payload and computes its hash.
    pub fn from_weights(w: &Weights) -> Self {
        let tensors: Vec<NamedTensor> = w
            .tensors
            .iter()
            .map(|t| {
                let mut data = Vec::with_capacity(t.values.len() * 4);
                for v in &t.values {
                    data.extend_from_slice(&v.to_le_bytes());
                }
                NamedTensor {
                    name: t.name.clone(),
                    shape: t.shape.iter().map(|&d| d as u32).collect(),
                    dtype: DType::F32,
                    data,
                }
            })
            .collect();
        let hash = hash_tensors(&tensors);
        Self { tensors, hash }
    }

    /// Total bytes of tensor data.
    pub fn byte_len(&self) -> usize {
        self.tensors.iter().map(|t| t.data.len()).sum()
    }

    /// The names and shapes the payload declares (to decode a model whose architecture the
    /// receiver does not know in advance; [`ModelPayload::decode`] still checks sizes and
    /// the hash).
    pub fn declared_spec(&self) -> WeightsSpec {
        WeightsSpec {
            entries: self
                .tensors
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        t.shape.iter().map(|&d| d as usize).collect(),
                    )
                })
                .collect(),
        }
    }

    /// Checks the hash and every name and shape against `spec`, then decodes the weights.
    pub fn decode(&self, spec: &WeightsSpec) -> Result<Weights, PayloadError> {
        let actual = hash_tensors(&self.tensors);
        if actual != self.hash {
            return Err(PayloadError::HashMismatch {
                claimed: self.hash.clone(),
                actual,
            });
        }
        if self.tensors.len() != spec.entries.len() {
            return Err(PayloadError::Shape(format!(
                "expected {} tensors, got {}",
                spec.entries.len(),
                self.tensors.len()
            )));
        }
        let mut out = Vec::with_capacity(self.tensors.len());
        for (t, (name, shape)) in self.tensors.iter().zip(&spec.entries) {
            if &t.name != name {
                return Err(PayloadError::Shape(format!(
                    "expected tensor `{name}`, got `{}`",
                    t.name
                )));
            }
            let got: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
            if &got != shape {
                return Err(PayloadError::Shape(format!(
                    "`{name}`: expected shape {shape:?}, got {got:?}"
                )));
            }
            let numel: usize = shape.iter().product();
            if t.data.len() != numel * 4 {
                return Err(PayloadError::Shape(format!(
                    "`{name}`: expected {} bytes, got {}",
                    numel * 4,
                    t.data.len()
                )));
            }
            let values = t
                .data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            out.push(fedssl_core::weights::WeightTensor {
                name: name.clone(),
                shape: shape.clone(),
                values,
            });
        }
        Ok(Weights { tensors: out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedssl_core::weights::WeightTensor;

    fn weights() -> Weights {
        Weights {
            tensors: vec![
                WeightTensor {
                    name: "a".into(),
                    shape: vec![2, 2],
                    values: vec![1.0, 2.0, 3.0, 4.0],
                },
                WeightTensor {
                    name: "b".into(),
                    shape: vec![3],
                    values: vec![-1.0, 0.5, 0.25],
                },
            ],
        }
    }

    #[test]
    fn roundtrip_and_checks() {
        let w = weights();
        let p = ModelPayload::from_weights(&w);
        assert_eq!(p.decode(&w.spec()).unwrap(), w);
        assert_eq!(p.hash, w.hash(), "payload and in-memory hashes agree");

        let mut tampered = p.clone();
        tampered.tensors[0].data[0] ^= 1;
        assert!(matches!(
            tampered.decode(&w.spec()),
            Err(PayloadError::HashMismatch { .. })
        ));

        let mut wrong = w.clone();
        wrong.tensors[1].shape = vec![1, 3];
        let p2 = ModelPayload::from_weights(&wrong);
        assert!(matches!(p2.decode(&w.spec()), Err(PayloadError::Shape(_))));
    }
}
