//! Plain-text files, one sample per line, as byte-level tokens.
//!
//! Each non-empty line becomes one sample: its bytes (any encoding; UTF-8 text keeps its
//! multi-byte characters as several tokens), cut at the plan's length or padded. A line
//! may start with a fastText-style label, `__label__NAME ` — then every line must have one,
//! and classes are numbered in sorted order. A folder reads every `.txt` file in it.

use std::path::Path;

use anyhow::bail;

use super::source::{files_with_extension, holds_files, read_capped, DataSource, Loaded};
use super::tokens::tokenize;
use super::windows::number_classes;
use super::{Dataset, SampleShape};

/// The largest text file read (bytes).
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// The prefix of a line's label.
pub const LABEL_PREFIX: &[u8] = b"__label__";

/// Splits a line into its label (when it has one) and its text.
fn split_label(line: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match line.strip_prefix(LABEL_PREFIX) {
        Some(rest) => {
            let end = rest
                .iter()
                .position(|b| b.is_ascii_whitespace())
                .unwrap_or(rest.len());
            let text = &rest[end..];
            let text = text.strip_prefix(b" ").unwrap_or(text);
            (Some(&rest[..end]), text)
        }
        None => (None, line),
    }
}

/// Loads the lines of a text file (or of every `.txt` file of a folder) as samples of
/// `length` tokens.
pub fn load(path: &Path, length: usize) -> anyhow::Result<Dataset> {
    let mut samples: Vec<f32> = Vec::new();
    let mut texts = 0usize;
    let mut names: Vec<String> = Vec::new();
    let mut unlabeled_at: Option<String> = None;
    for file in &files_with_extension(path, &["txt"])? {
        let bytes = read_capped(file, MAX_FILE_BYTES)?;
        for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let (label, text) = split_label(line);
            match label {
                Some(l) => names.push(String::from_utf8_lossy(l).into_owned()),
                None if unlabeled_at.is_none() => {
                    unlabeled_at = Some(format!("{}:{}", file.display(), n + 1));
                }
                None => {}
            }
            if !text.is_empty() {
                samples.extend(tokenize([text], length));
                texts += 1;
            }
        }
    }
    if texts == 0 {
        bail!("{}: no non-empty lines", path.display());
    }
    let (labels, num_classes) = match (names.is_empty(), unlabeled_at) {
        (true, _) => (None, 0),
        (false, None) if names.len() == texts => {
            let (l, k) = number_classes(&names)?;
            (Some(l), k)
        }
        (false, at) => bail!(
            "{}: some lines have a __label__ prefix and some do not (first unlabeled: {}); label every line or none",
            path.display(),
            at.unwrap_or_else(|| "a line with a label and no text".into())
        ),
    };
    Ok(Dataset {
        samples,
        shape: SampleShape::Text { length },
        labels,
        num_classes,
    })
}

/// Plain-text lines.
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
        load(path, length).map(Loaded::Pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tokens::PAD;

    #[test]
    fn lines_become_padded_byte_tokens_with_optional_labels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(
            &p,
            "__label__spam buy now\r\n\n__label__ham hello there friend\n",
        )
        .unwrap();
        let d = load(&p, 8).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!((d.labels.clone().unwrap(), d.num_classes), (vec![1, 0], 2));
        let first: Vec<u8> = d.sample(0).iter().take(7).map(|&v| v as u8).collect();
        assert_eq!(first, b"buy now");
        assert_eq!(d.sample(0)[7], PAD as f32);
        let second: Vec<u8> = d.sample(1).iter().map(|&v| v as u8).collect();
        assert_eq!(second, b"hello th");
        // Unlabeled text and non-UTF-8 bytes.
        std::fs::write(&p, b"caf\xe9\nsecond line\n").unwrap();
        let d = load(&p, 4).unwrap();
        assert!(d.labels.is_none());
        assert_eq!(d.sample(0)[3], 233.0);
    }

    #[test]
    fn mixed_labels_and_empty_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "__label__a one\ntwo\n").unwrap();
        let e = load(&p, 8).unwrap_err().to_string();
        assert!(e.contains("a.txt:2"), "{e}");
        std::fs::write(&p, "\n  \n").unwrap();
        assert!(load(&p, 8).is_err());
    }
}
