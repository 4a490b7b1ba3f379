//! One trait for every on-disk format ([`DataSource`]), the formats fedssl reads
//! ([`SOURCES`]), and the choice among them and the generators ([`load_splits`]).
//!
//! A source recognizes its input by the plan's sample shape and by file extensions or
//! folder contents; adding a format is one file implementing the trait plus an entry in
//! [`SOURCES`].

use std::path::Path;

use anyhow::bail;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{csv_source, idx, image_folder, npy_source, text_lines};
use super::{records, sensors, synthetic, topics, Dataset, SampleShape, Splits};

/// What a source read: its own train and test splits, or one pool to split.
#[derive(Debug, Clone)]
pub enum Loaded {
    /// The format has its own test split (IDX).
    Splits(Splits),
    /// One pool; [`load_splits`] holds out a seeded 20 % as the test split.
    Pool(Dataset),
}

/// A reader of one on-disk format.
pub trait DataSource: Sync {
    /// The format's name (`idx`, `image-folder`, `csv`, `npy`, `text`).
    fn name(&self) -> &'static str;

    /// What the format holds, for messages ("PNG or JPEG images in a folder").
    fn holds(&self) -> &'static str;

    /// Whether the source reads samples of `shape` from `path` (by extension or contents).
    fn reads(&self, path: &Path, shape: SampleShape) -> bool;

    /// Reads samples of `shape` from `path`. Input is untrusted: errors name the file and
    /// what is wrong, and nothing panics.
    fn load(&self, path: &Path, shape: SampleShape) -> anyhow::Result<Loaded>;
}

/// Whether `path` is a file with one of `exts`, or a folder holding one (directly or in a
/// sub-folder).
pub fn holds_files(path: &Path, exts: &[&str]) -> bool {
    let matches = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
    };
    if !path.is_dir() {
        return matches(path);
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        let p = e.path();
        matches(&p)
            || (p.is_dir()
                && std::fs::read_dir(&p)
                    .map(|mut inner| inner.any(|f| f.is_ok_and(|f| matches(&f.path()))))
                    .unwrap_or(false))
    })
}

/// The files of `dir` that `wanted` accepts, directly in it (class `None`) or in its
/// sub-folders (class: the sub-folder's name), sorted; at most `limit` of them.
pub fn files_by_class(
    dir: &Path,
    wanted: impl Fn(&Path) -> bool,
    limit: usize,
) -> anyhow::Result<Vec<(std::path::PathBuf, Option<String>)>> {
    use anyhow::Context;
    let list =
        |d: &Path| std::fs::read_dir(d).with_context(|| format!("cannot list {}", d.display()));
    let mut files = Vec::new();
    for e in list(dir)? {
        let p = e?.path();
        if p.is_dir() {
            let class = p.file_name().map(|n| n.to_string_lossy().into_owned());
            for f in list(&p)? {
                let f = f?.path();
                if wanted(&f) {
                    files.push((f, class.clone()));
                }
            }
        } else if wanted(&p) {
            files.push((p, None));
        }
        if files.len() > limit {
            bail!("{}: more than {limit} files", dir.display());
        }
    }
    files.sort();
    Ok(files)
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
        idx::load_dir(path).map(Loaded::Splits)
    }
}

/// A folder of PNG or JPEG images ([`image_folder`]).
pub struct ImageFolder;

impl DataSource for ImageFolder {
    fn name(&self) -> &'static str {
        "image-folder"
    }
    fn holds(&self) -> &'static str {
        "PNG or JPEG images in a folder (class sub-folders optional)"
    }
    fn reads(&self, path: &Path, shape: SampleShape) -> bool {
        matches!(shape, SampleShape::Image { .. })
            && path.is_dir()
            && holds_files(path, &["png", "jpg", "jpeg"])
    }
    fn load(&self, path: &Path, shape: SampleShape) -> anyhow::Result<Loaded> {
        image_folder::load(path, shape).map(Loaded::Pool)
    }
}

/// Tabular records in a CSV file ([`csv_source::load_table`]).
pub struct CsvTable;

impl DataSource for CsvTable {
    fn name(&self) -> &'static str {
        "csv"
    }
    fn holds(&self) -> &'static str {
        "tabular records in a CSV file"
    }
    fn reads(&self, path: &Path, shape: SampleShape) -> bool {
        matches!(shape, SampleShape::Tabular { .. }) && holds_files(path, &["csv"])
    }
    fn load(&self, path: &Path, shape: SampleShape) -> anyhow::Result<Loaded> {
        let SampleShape::Tabular { features } = shape else {
            bail!("CSV tables hold records, not {shape}");
        };
        csv_source::load_table(path, features).map(Loaded::Pool)
    }
}

/// Time series in CSV files ([`csv_source::load_series`], windows every half window).
pub struct CsvSeries;

impl DataSource for CsvSeries {
    fn name(&self) -> &'static str {
        "csv"
    }
    fn holds(&self) -> &'static str {
        "time series in a CSV file or a folder of them"
    }
    fn reads(&self, path: &Path, shape: SampleShape) -> bool {
        matches!(shape, SampleShape::Series { .. }) && holds_files(path, &["csv"])
    }
    fn load(&self, path: &Path, shape: SampleShape) -> anyhow::Result<Loaded> {
        let SampleShape::Series { channels, length } = shape else {
            bail!("CSV series hold windows, not {shape}");
        };
        csv_source::load_series(path, channels, length, (length / 2).max(1)).map(Loaded::Pool)
    }
}

/// Time series in `.npy` files ([`npy_source`], windows every half window).
pub struct NpySeries;

impl DataSource for NpySeries {
    fn name(&self) -> &'static str {
        "npy"
    }
    fn holds(&self) -> &'static str {
        "time series in a .npy file or a folder of them"
    }
    fn reads(&self, path: &Path, shape: SampleShape) -> bool {
        matches!(shape, SampleShape::Series { .. }) && holds_files(path, &["npy"])
    }
    fn load(&self, path: &Path, shape: SampleShape) -> anyhow::Result<Loaded> {
        let SampleShape::Series { channels, length } = shape else {
            bail!(".npy files hold time series, not {shape}");
        };
        npy_source::load_series(path, channels, length, (length / 2).max(1)).map(Loaded::Pool)
    }
}

/// Plain-text lines ([`text_lines`]).
pub struct TextLines;

impl DataSource for TextLines {
    fn name(&self) -> &'static str {
        "text"
    }
    fn holds(&self) -> &'static str {
        "lines of text in a file or a folder of .txt files"
    }
    fn reads(&self, path: &Path, shape: SampleShape) -> bool {
        matches!(shape, SampleShape::Text { .. }) && (path.is_file() || holds_files(path, &["txt"]))
    }
    fn load(&self, path: &Path, shape: SampleShape) -> anyhow::Result<Loaded> {
        let SampleShape::Text { length } = shape else {
            bail!("text files hold lines, not {shape}");
        };
        text_lines::load(path, length).map(Loaded::Pool)
    }
}

/// Every format fedssl reads, in the order they are tried.
pub const SOURCES: [&dyn DataSource; 6] = [
    &IdxFolder,
    &ImageFolder,
    &CsvTable,
    &CsvSeries,
    &NpySeries,
    &TextLines,
];

/// The source that reads samples of `shape` from `path`; the error lists what each
/// format holds.
pub fn source_for(path: &Path, shape: SampleShape) -> anyhow::Result<&'static dyn DataSource> {
    if !path.exists() {
        bail!("{}: no such file or folder", path.display());
    }
    SOURCES
        .into_iter()
        .find(|s| s.reads(path, shape))
        .ok_or_else(|| {
            let formats: Vec<String> = SOURCES
                .iter()
                .map(|s| format!("{} ({})", s.name(), s.holds()))
                .collect();
            anyhow::anyhow!(
                "{}: no reader for {shape} here; fedssl reads {}",
                path.display(),
                formats.join("; ")
            )
        })
}

/// Loads data of `shape` from `path` with the source that reads it ([`source_for`]), or
/// generates the default set of `shape`'s modality when `path` is `None` (shapes for
/// images, sensor activities for series, clustered records for tabular data, topical
/// lines for text). A source without its own test split has its last 20 % (after a
/// seeded shuffle) held out.
pub fn load_splits(path: Option<&Path>, shape: SampleShape, seed: u64) -> anyhow::Result<Splits> {
    let Some(path) = path else {
        return Ok(match shape {
            SampleShape::Image { .. } => synthetic::splits_shaped(shape, seed),
            SampleShape::Series { channels, length } => sensors::splits(channels, length, seed),
            SampleShape::Tabular { features } => records::splits(features, seed),
            SampleShape::Text { length } => topics::splits(length, seed),
        });
    };
    let source = source_for(path, shape)?;
    let loaded = source.load(path, shape)?;
    tracing::debug!(format = source.name(), path = %path.display(), "data source");
    Ok(match loaded {
        Loaded::Splits(s) => s,
        Loaded::Pool(d) => {
            let mut idx: Vec<usize> = (0..d.len()).collect();
            idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            let cut = d.len() - d.len() / 5;
            Splits {
                train: d.subset(&idx[..cut]),
                test: d.subset(&idx[cut..]),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_recognized_by_shape_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("lines.txt");
        std::fs::write(&text, "one line\nanother line\n").unwrap();
        let shape = SampleShape::Text { length: 16 };
        assert_eq!(source_for(&text, shape).unwrap().name(), "text");
        let table = dir.path().join("t.csv");
        std::fs::write(&table, "a,b\n1,2\n3,4\n2,2\n5,1\n0,0\n").unwrap();
        let tab = SampleShape::Tabular { features: 2 };
        assert_eq!(source_for(&table, tab).unwrap().name(), "csv");
        let s = load_splits(Some(&table), tab, 1).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (4, 1));
        // A CSV file is no image folder: the error lists the formats.
        let Err(e) = source_for(&table, SampleShape::GRAY_28) else {
            panic!("a CSV file read as images");
        };
        let e = e.to_string();
        assert!(e.contains("image-folder") && e.contains("npy"), "{e}");
        assert!(source_for(&dir.path().join("absent"), tab).is_err());
    }

    #[test]
    fn every_modality_has_generated_default_data() {
        for shape in [
            SampleShape::Image {
                channels: 3,
                height: 32,
                width: 32,
            },
            SampleShape::Text { length: 32 },
        ] {
            let s = load_splits(None, shape, 1).unwrap();
            assert_eq!(s.train.shape, shape);
            assert!(s.train.len() > 1000 && s.test.len() > 100);
        }
    }
}
