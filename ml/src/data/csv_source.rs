//! CSV files: tabular records, and multichannel time series cut into windows.
//!
//! Conventions (a header row is required): a column named `label` holds optional class
//! labels (any text; classes are numbered in sorted order), a column named `recording`
//! (time series only) says which recording a row belongs to — one long file with a
//! recording-id column; without it a file is one recording, and a folder of CSV files is
//! one recording per file. Every other column must be numeric: one feature (tabular) or
//! one channel (series). Values are standardized per column with the file's own mean and
//! standard deviation, which never leave the site.

use std::path::Path;

use anyhow::{bail, Context};

use super::source::{files_with_extension, holds_files, DataSource, Loaded};
use super::windows::{cut_windows, group_recordings, number_classes, standardize, Recording};
use super::{Dataset, SampleShape};

/// Rows of one CSV file: numeric columns, optional labels and recording ids.
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<f32>>,
    labels: Option<Vec<String>>,
    recordings: Option<Vec<String>>,
}

fn read_table(path: &Path) -> anyhow::Result<Table> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}: no header row", path.display()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let label_at = header.iter().position(|h| h == "label");
    let recording_at = header.iter().position(|h| h == "recording");
    let numeric: Vec<usize> = (0..header.len())
        .filter(|&i| Some(i) != label_at && Some(i) != recording_at)
        .collect();
    if numeric.is_empty() {
        bail!("{}: no numeric column", path.display());
    }
    let mut t = Table {
        columns: numeric.iter().map(|&i| header[i].clone()).collect(),
        rows: Vec::new(),
        labels: label_at.map(|_| Vec::new()),
        recordings: recording_at.map(|_| Vec::new()),
    };
    for (r, record) in reader.records().enumerate() {
        let line = r + 2;
        let record = record.with_context(|| format!("{}: line {line}", path.display()))?;
        let mut row = Vec::with_capacity(numeric.len());
        for &i in &numeric {
            let cell = record.get(i).unwrap_or("").trim();
            let v: f32 = cell.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{}: line {line}, column `{}`: {cell:?} is not a number",
                    path.display(),
                    header[i]
                )
            })?;
            if !v.is_finite() {
                bail!(
                    "{}: line {line}, column `{}`: {cell} is not finite",
                    path.display(),
                    header[i]
                );
            }
            row.push(v);
        }
        t.rows.push(row);
        if let (Some(l), Some(i)) = (&mut t.labels, label_at) {
            l.push(record.get(i).unwrap_or("").trim().to_string());
        }
        if let (Some(rec), Some(i)) = (&mut t.recordings, recording_at) {
            rec.push(record.get(i).unwrap_or("").trim().to_string());
        }
    }
    if t.rows.is_empty() {
        bail!("{}: no data rows", path.display());
    }
    Ok(t)
}

/// Loads a CSV of tabular records; it must have `features` numeric columns.
pub fn load_table(path: &Path, features: usize) -> anyhow::Result<Dataset> {
    let mut t = read_table(path)?;
    if t.columns.len() != features {
        bail!(
            "{}: {} numeric columns ({}), but the plan's records have {features} features",
            path.display(),
            t.columns.len(),
            t.columns.join(", ")
        );
    }
    standardize(&mut [&mut t.rows]);
    let (labels, num_classes) = match &t.labels {
        Some(names) => {
            let (l, k) = number_classes(names)?;
            (Some(l), k)
        }
        None => (None, 0),
    };
    Ok(Dataset {
        samples: t.rows.into_iter().flatten().collect(),
        shape: SampleShape::Tabular { features },
        labels,
        num_classes,
    })
}

/// Loads time series from a CSV file (one recording, or several by a `recording` column)
/// or a folder of CSV files (one recording each), cut into windows of `length` steps every
/// `stride` steps. A window's label is the most frequent label among its steps.
pub fn load_series(
    path: &Path,
    channels: usize,
    length: usize,
    stride: usize,
) -> anyhow::Result<Dataset> {
    let files = files_with_extension(path, &["csv"])?;
    if files.is_empty() {
        bail!("{}: no .csv files", path.display());
    }
    // Recordings: (rows, labels), in file order, then by recording id.
    let mut recordings: Vec<Recording> = Vec::new();
    for file in &files {
        let Table {
            columns,
            rows,
            labels,
            recordings: ids,
        } = read_table(file)?;
        if columns.len() != channels {
            bail!(
                "{}: {} numeric columns ({}), but the plan's windows have {channels} channels",
                file.display(),
                columns.len(),
                columns.join(", ")
            );
        }
        match ids {
            None => recordings.push((rows, labels)),
            Some(ids) => {
                let labeled = labels.is_some();
                let mut labels = labels.map(Vec::into_iter);
                let rows = ids
                    .into_iter()
                    .zip(rows)
                    .map(|(id, row)| (id, row, labels.as_mut().and_then(Iterator::next)));
                recordings.extend(group_recordings(rows, labeled));
            }
        }
    }
    cut_windows(
        recordings,
        channels,
        length,
        stride,
        &path.display().to_string(),
    )
}

/// Tabular records in a CSV file ([`load_table`]).
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
        load_table(path, features).map(Loaded::Pool)
    }
}

/// Time series in CSV files ([`load_series`], windows every half window).
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
        load_series(path, channels, length, (length / 2).max(1)).map(Loaded::Pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn tables_standardize_number_labels_and_name_bad_cells() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.csv",
            "a,label,b\n1,cat,10\n3,dog,10\n5,cat,10\n",
        );
        let d = load_table(&p, 2).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d.labels, Some(vec![0, 1, 0]));
        let a: Vec<f32> = (0..3).map(|i| d.sample(i)[0]).collect();
        assert!(
            (a[0] + 1.224_745).abs() < 1e-5 && a[1].abs() < 1e-6,
            "{a:?}"
        );
        assert_eq!(d.sample(1)[1], 0.0, "a constant column becomes 0");
        let e = load_table(&p, 3).unwrap_err().to_string();
        assert!(e.contains("3 features"), "{e}");
        let bad = write(dir.path(), "bad.csv", "a,b\n1,2\n3,x\n");
        let e = load_table(&bad, 2).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("`b`"), "{e}");
    }

    #[test]
    fn series_are_windowed_per_recording_with_majority_labels() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("recording,x,y,label\n");
        for rec in ["r1", "r2"] {
            for t in 0..10 {
                let label = if t < 7 { "walk" } else { "run" };
                text.push_str(&format!("{rec},{t},{},{label}\n", 2 * t));
            }
        }
        let p = write(dir.path(), "s.csv", &text);
        // Windows of 4 every 3 steps: starts 0, 3, 6 in each 10-step recording.
        let d = load_series(&p, 2, 4, 3).unwrap();
        assert_eq!(d.len(), 6);
        assert_eq!(d.labels, Some(vec![1, 1, 0, 1, 1, 0]));
        let w = d.sample(1); // recording r1, steps 3..7, channel x then y
        assert!(w[0] < w[1] && w[1] < w[2] && w[2] < w[3]);
        assert!((w[4] - w[0]).abs() < 1e-5, "x and 2x standardize alike");
        let e = load_series(&p, 2, 11, 1).unwrap_err().to_string();
        assert!(e.contains("no window"), "{e}");
        // A folder of files: one recording each.
        let f = dir.path().join("folder");
        std::fs::create_dir(&f).unwrap();
        write(&f, "a.csv", "x,y\n1,2\n2,3\n3,4\n4,5\n");
        write(&f, "b.csv", "x,y\n5,6\n6,7\n7,8\n8,9\n9,9\n");
        let d = load_series(&f, 2, 4, 1).unwrap();
        assert_eq!((d.len(), d.labels.is_none()), (3, true));
    }
}
