//! One trait for every on-disk format ([`DataSource`]), the formats fedssl reads
//! ([`SOURCES`]), and the choice among them and the generators ([`load_splits`]).
//!
//! A source recognizes its input by the plan's sample shape and by file extensions or
//! folder contents; adding a format is one file implementing the trait plus an entry in
//! [`SOURCES`]. The helpers here are what the formats share: extension checks, folder
//! listings and size-capped reads.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::csv_source::{CsvSeries, CsvTable};
use super::idx::IdxFolder;
use super::image_folder::ImageFolder;
use super::npy_source::NpySeries;
use super::text_lines::TextLines;
use super::{captions, records, sensors, synthetic, topics, Dataset, SampleShape, Splits};

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

/// Whether `path`'s extension is one of `exts` (any case).
pub fn has_extension(path: &Path, exts: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Whether `path` is a file with one of `exts`, or a folder holding one (directly or in a
/// sub-folder).
pub fn holds_files(path: &Path, exts: &[&str]) -> bool {
    let matches = |p: &Path| has_extension(p, exts);
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

fn list(dir: &Path) -> anyhow::Result<std::fs::ReadDir> {
    std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))
}

/// `path` itself when it is a file, else the files directly in the folder `path` with one
/// of `exts`, sorted.
pub fn files_with_extension(path: &Path, exts: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for e in list(path)? {
        let p = e?.path();
        if p.is_file() && has_extension(&p, exts) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// The files of `dir` with one of `exts`, directly in it (class `None`) or in its
/// sub-folders (class: the sub-folder's name), sorted; at most `limit` of them.
pub fn files_by_class(
    dir: &Path,
    exts: &[&str],
    limit: usize,
) -> anyhow::Result<Vec<(PathBuf, Option<String>)>> {
    let wanted = |p: &Path| has_extension(p, exts);
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

/// The bytes of the file `path`, refused (with its size) when over `max_bytes`.
pub fn read_capped(path: &Path, max_bytes: u64) -> anyhow::Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .len();
    if size > max_bytes {
        bail!(
            "{}: {size} bytes is over the {max_bytes}-byte limit",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
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
/// lines for text, captioned shapes for image-text). A source without its own test split has its last 20 % (after a
/// seeded shuffle) held out.
pub fn load_splits(path: Option<&Path>, shape: SampleShape, seed: u64) -> anyhow::Result<Splits> {
    let Some(path) = path else {
        return Ok(match shape {
            SampleShape::Image { .. } => synthetic::splits_shaped(shape, seed),
            SampleShape::Series { channels, length } => sensors::splits(channels, length, seed),
            SampleShape::Tabular { features } => records::splits(features, seed),
            SampleShape::Text { length } => topics::splits(length, seed),
            SampleShape::Captioned { .. } => {
                captions::splits(shape, seed).map_err(anyhow::Error::msg)?
            }
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

/// The whole labeled set at `path` for scoring (e.g. held-out subjects): all of a source
/// without its own test split, or the test split of one that has it (an IDX folder's
/// `t10k` files). Refused without labels.
pub fn load_test_set(path: &Path, shape: SampleShape) -> anyhow::Result<Dataset> {
    let source = source_for(path, shape)?;
    let set = match source.load(path, shape)? {
        Loaded::Splits(s) => s.test,
        Loaded::Pool(d) => d,
    };
    if set.labels.is_none() {
        bail!(
            "{}: a test set needs labels ({} data here has none)",
            path.display(),
            source.name()
        );
    }
    if set.is_empty() {
        bail!("{}: the test set is empty", path.display());
    }
    Ok(set)
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
        // As a test set: all of it, and a table without labels is refused.
        let e = load_test_set(&table, tab).unwrap_err().to_string();
        assert!(e.contains("needs labels"), "{e}");
        let labeled = dir.path().join("held-out.csv");
        std::fs::write(&labeled, "a,b,label\n1,2,x\n3,4,y\n2,2,x\n").unwrap();
        let t = load_test_set(&labeled, tab).unwrap();
        assert_eq!((t.len(), t.num_classes), (3, 2));
        assert_eq!(t.labels.as_deref(), Some(&[0u8, 1, 0][..]));
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
