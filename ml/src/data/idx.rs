//! Reader for the IDX format of MNIST / Fashion-MNIST, gzip-compressed as published.
//!
//! The input is treated as hostile: every header field is checked, the element count is
//! bounded before allocation, and the payload length must match the header exactly.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::source::{DataSource, Loaded};
use super::{Dataset, SampleShape, Splits};
use fedssl_core::spec::{IMAGE_PIXELS, IMAGE_SIDE};

/// Largest number of items accepted in one file.
pub const MAX_ITEMS: usize = 10_000_000;

/// A parsed IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Dimensions.
    pub dims: Vec<usize>,
    /// Row-major data.
    pub data: Vec<u8>,
}

/// Parses IDX bytes (already decompressed).
pub fn parse(bytes: &[u8]) -> anyhow::Result<IdxArray> {
    if bytes.len() < 4 {
        bail!("file too short for an IDX header ({} bytes)", bytes.len());
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        bail!("bad IDX magic: first two bytes must be zero");
    }
    if bytes[2] != 0x08 {
        bail!(
            "unsupported IDX element type 0x{:02x} (only unsigned bytes, 0x08)",
            bytes[2]
        );
    }
    let nd = bytes[3] as usize;
    if nd == 0 || nd > 4 {
        bail!("unsupported number of IDX dimensions: {nd}");
    }
    let header = 4 + 4 * nd;
    if bytes.len() < header {
        bail!("IDX header truncated");
    }
    let mut dims = Vec::with_capacity(nd);
    let mut total: usize = 1;
    for i in 0..nd {
        let o = 4 + 4 * i;
        let d = u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize;
        total = total
            .checked_mul(d)
            .filter(|&t| t <= MAX_ITEMS * IMAGE_PIXELS)
            .context("IDX dimensions are implausibly large")?;
        dims.push(d);
    }
    let payload = &bytes[header..];
    if payload.len() != total {
        bail!(
            "IDX payload has {} bytes but the header announces {total}",
            payload.len()
        );
    }
    Ok(IdxArray {
        dims,
        data: payload.to_vec(),
    })
}

/// Reads and parses a `.gz` or uncompressed IDX file.
pub fn read_file(path: &Path) -> anyhow::Result<IdxArray> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let limit = (MAX_ITEMS * IMAGE_PIXELS + 64) as u64;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(f)
            .take(limit)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot decompress {}", path.display()))?;
    } else {
        f.take(limit)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    parse(&bytes).with_context(|| format!("{} is not a valid IDX file", path.display()))
}

/// Builds a labeled dataset from an images array and a labels array.
pub fn to_dataset(images: IdxArray, labels: Option<IdxArray>) -> anyhow::Result<Dataset> {
    if images.dims.len() != 3 || images.dims[1] != IMAGE_SIDE || images.dims[2] != IMAGE_SIDE {
        bail!(
            "expected images of shape [N, 28, 28], got {:?}",
            images.dims
        );
    }
    let n = images.dims[0];
    let labels = match labels {
        Some(l) => {
            if l.dims != [n] {
                bail!("expected {n} labels, got an array of shape {:?}", l.dims);
            }
            Some(l.data)
        }
        None => None,
    };
    let num_classes = labels
        .as_ref()
        .map(|l| l.iter().map(|&v| v as usize + 1).max().unwrap_or(0))
        .unwrap_or(0);
    Ok(Dataset {
        samples: images.data.iter().map(|&b| b as f32 / 255.0).collect(),
        shape: super::SampleShape::GRAY_28,
        labels,
        num_classes,
    })
}

fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
}

/// Loads `train-*` and `t10k-*` files from an MNIST-style folder.
pub fn load_dir(dir: &Path) -> anyhow::Result<Splits> {
    let load = |prefix: &str| -> anyhow::Result<Dataset> {
        let img = find(dir, &format!("{prefix}-images-idx3-ubyte")).with_context(|| {
            format!(
                "{}: no {prefix}-images-idx3-ubyte(.gz); expected an MNIST-style IDX folder",
                dir.display()
            )
        })?;
        let lab = find(dir, &format!("{prefix}-labels-idx1-ubyte"));
        to_dataset(read_file(&img)?, lab.map(|p| read_file(&p)).transpose()?)
    };
    Ok(Splits {
        train: load("train")?,
        test: load("t10k")?,
    })
}

/// MNIST-style IDX folders (`train-images-idx3-ubyte[.gz]` …) of 28×28 grayscale images.
pub struct IdxFolder;

impl DataSource for IdxFolder {
    fn name(&self) -> &'static str {
        "idx"
    }
    fn holds(&self) -> &'static str {
        "28×28 grayscale images in an MNIST-style IDX folder"
    }
    fn reads(&self, path: &Path, shape: SampleShape) -> bool {
        shape == SampleShape::GRAY_28
            && std::fs::read_dir(path).is_ok_and(|mut d| {
                d.any(|e| {
                    e.is_ok_and(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with("train-images-idx3-ubyte")
                    })
                })
            })
    }
    fn load(&self, path: &Path, _shape: SampleShape) -> anyhow::Result<Loaded> {
        load_dir(path).map(Loaded::Splits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(dims: &[u32]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn parses_valid_and_rejects_hostile_files() {
        let mut ok = header(&[2, 28, 28]);
        ok.extend(std::iter::repeat_n(255u8, 2 * 784));
        let a = parse(&ok).unwrap();
        assert_eq!(a.dims, vec![2, 28, 28]);
        let ds = to_dataset(a, None).unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!(ds.samples[0], 1.0);

        assert!(parse(&ok[..ok.len() - 1]).is_err(), "truncated payload");
        assert!(parse(&[0, 0, 8]).is_err(), "short header");
        assert!(parse(&[1, 0, 8, 1, 0, 0, 0, 0]).is_err(), "bad magic");
        assert!(parse(&[0, 0, 0x0d, 1, 0, 0, 0, 0]).is_err(), "float type");
        let huge = header(&[u32::MAX, u32::MAX, 28]);
        assert!(parse(&huge).is_err(), "overflowing dims");
        let mut wrong = header(&[1, 10, 10]);
        wrong.extend(std::iter::repeat_n(0u8, 100));
        assert!(
            to_dataset(parse(&wrong).unwrap(), None).is_err(),
            "not 28x28"
        );
    }

    #[test]
    fn reads_real_fashion_mnist_when_present() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/fashion-mnist");
        if !dir.exists() {
            eprintln!("skipped: {} not found", dir.display());
            return;
        }
        let s = load_dir(&dir).unwrap();
        assert_eq!(s.train.len(), 60_000);
        assert_eq!(s.test.len(), 10_000);
        assert_eq!(s.train.num_classes, 10);
    }
}
