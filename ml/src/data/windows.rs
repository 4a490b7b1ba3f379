//! What the time-series sources (CSV, NPY) share: recordings standardized per channel,
//! cut into windows, and class names numbered.

use std::collections::BTreeMap;

use anyhow::bail;

use super::{Dataset, SampleShape};

/// The most classes a label column, folder or prefix may name.
pub const MAX_CLASSES: usize = 256;

/// One recording: its rows (one value per channel) and, when known, each row's label.
pub type Recording = (Vec<Vec<f32>>, Option<Vec<String>>);

/// Class numbers of `names` (sorted order), and the number of classes.
pub fn number_classes(names: &[String]) -> anyhow::Result<(Vec<u8>, usize)> {
    let mut set: Vec<&str> = names.iter().map(String::as_str).collect();
    set.sort_unstable();
    set.dedup();
    if set.len() > MAX_CLASSES {
        bail!(
            "the labels name {} classes; at most {MAX_CLASSES} are supported",
            set.len()
        );
    }
    let classes: BTreeMap<&str, u8> = set
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, i as u8))
        .collect();
    Ok((
        names.iter().map(|n| classes[n.as_str()]).collect(),
        classes.len(),
    ))
}

/// Splits rows into recordings by their recording id (in id order), each row with its
/// label when the rows are `labeled`.
pub fn group_recordings<K: Ord>(
    rows: impl IntoIterator<Item = (K, Vec<f32>, Option<String>)>,
    labeled: bool,
) -> Vec<Recording> {
    let mut by_id: BTreeMap<K, (Vec<Vec<f32>>, Vec<String>)> = BTreeMap::new();
    for (id, row, label) in rows {
        let e = by_id.entry(id).or_default();
        e.0.push(row);
        e.1.extend(label);
    }
    by_id
        .into_values()
        .map(|(rows, labels)| (rows, labeled.then_some(labels)))
        .collect()
}

/// Standardizes each column over the rows of every group, in place (constant columns
/// become 0).
pub fn standardize(groups: &mut [&mut Vec<Vec<f32>>]) {
    let Some(width) = groups.iter().find_map(|g| g.first()).map(Vec::len) else {
        return;
    };
    let n = groups.iter().map(|g| g.len()).sum::<usize>() as f64;
    for j in 0..width {
        let values = || groups.iter().flat_map(|g| g.iter()).map(|r| r[j] as f64);
        let mean = values().sum::<f64>() / n;
        let sd = (values().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        for r in groups.iter_mut().flat_map(|g| g.iter_mut()) {
            r[j] = if sd > 1e-12 {
                ((r[j] as f64 - mean) / sd) as f32
            } else {
                0.0
            };
        }
    }
}

/// Standardizes each channel over every recording, then cuts windows of `length` steps
/// every `stride` steps. A window's label is the most frequent label among its steps;
/// windows are labeled only when every recording is. `source` names the input in errors.
pub fn cut_windows(
    mut recordings: Vec<Recording>,
    channels: usize,
    length: usize,
    stride: usize,
    source: &str,
) -> anyhow::Result<Dataset> {
    anyhow::ensure!(
        stride >= 1 && length >= 1,
        "window length and stride must be ≥ 1"
    );
    standardize(&mut recordings.iter_mut().map(|r| &mut r.0).collect::<Vec<_>>());
    let has_labels = recordings.iter().all(|r| r.1.is_some());
    let mut samples = Vec::new();
    let mut window_labels: Vec<String> = Vec::new();
    for (rows, labels) in &recordings {
        let mut start = 0;
        while start + length <= rows.len() {
            for ch in 0..channels {
                samples.extend(rows[start..start + length].iter().map(|r| r[ch]));
            }
            if let (true, Some(l)) = (has_labels, labels) {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for name in &l[start..start + length] {
                    *counts.entry(name.as_str()).or_default() += 1;
                }
                let top = counts
                    .iter()
                    .max_by_key(|(_, &c)| c)
                    .map(|(n, _)| n.to_string())
                    .unwrap_or_default();
                window_labels.push(top);
            }
            start += stride;
        }
    }
    if samples.is_empty() {
        let rows: usize = recordings.iter().map(|r| r.0.len()).sum();
        bail!(
            "{source}: {rows} rows in {} recording(s) give no window of {length} steps",
            recordings.len()
        );
    }
    let (labels, num_classes) = if has_labels {
        let (l, k) = number_classes(&window_labels)?;
        (Some(l), k)
    } else {
        (None, 0)
    };
    Ok(Dataset {
        samples,
        shape: SampleShape::Series { channels, length },
        labels,
        num_classes,
    })
}
