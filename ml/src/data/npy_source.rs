//! NumPy `.npy` time series (read with the `npyz` crate), cut into windows like the CSV
//! series ([`windows`](super::windows)).
//!
//! Conventions: a 2-D array of `T` time steps × columns (C or Fortran order; any integer
//! or float dtype).
//! - `C` columns (the plan's channels): one recording.
//! - `C + 1` columns: the first is a recording id — one long file of several recordings.
//! - `C + 2` columns: a recording id, then an integer class label per step.
//!
//! A folder holds one recording per `.npy` file; files in sub-folders take the sub-folder's
//! name as their class label (`walking/rec1.npy`). Values must be finite; each channel is
//! standardized over every recording.

use std::path::Path;

use anyhow::{bail, Context};
use npyz::{NpyFile, Order, TypeChar};

use super::source::{files_by_class, holds_files, read_capped, DataSource, Loaded};
use super::windows::{cut_windows, group_recordings, Recording};
use super::{Dataset, SampleShape};

/// The largest `.npy` file read (bytes).
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// All values of `npy` read as `T`, converted by `f`.
fn values<T: npyz::Deserialize>(npy: NpyFile<&[u8]>, f: fn(T) -> f64) -> std::io::Result<Vec<f64>> {
    Ok(npy.into_vec::<T>()?.into_iter().map(f).collect())
}

/// The values of a 2-D `.npy` array as `[rows][columns]` (f64).
fn read_matrix(path: &Path) -> anyhow::Result<Vec<Vec<f64>>> {
    let bytes = read_capped(path, MAX_FILE_BYTES)?;
    let npy = NpyFile::new(&bytes[..])
        .with_context(|| format!("{}: not a valid .npy file", path.display()))?;
    let shape = npy.shape().to_vec();
    let [rows, cols] = shape[..] else {
        bail!(
            "{}: a {}-D array of shape {shape:?}; time series are 2-D (steps × columns)",
            path.display(),
            shape.len()
        );
    };
    let order = npy.order();
    let npyz::DType::Plain(ts) = npy.dtype() else {
        bail!("{}: structured arrays are not supported", path.display());
    };
    let flat = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => values::<f32>(npy, f64::from),
        (TypeChar::Float, 8) => values::<f64>(npy, |v| v),
        (TypeChar::Int, 1) => values::<i8>(npy, f64::from),
        (TypeChar::Int, 2) => values::<i16>(npy, f64::from),
        (TypeChar::Int, 4) => values::<i32>(npy, f64::from),
        (TypeChar::Int, 8) => values::<i64>(npy, |v| v as f64),
        (TypeChar::Uint, 1) => values::<u8>(npy, f64::from),
        (TypeChar::Uint, 2) => values::<u16>(npy, f64::from),
        (TypeChar::Uint, 4) => values::<u32>(npy, f64::from),
        (TypeChar::Uint, 8) => values::<u64>(npy, |v| v as f64),
        _ => bail!(
            "{}: dtype {ts} is not a number fedssl reads (use integers or floats)",
            path.display()
        ),
    }
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let (rows, cols) = (rows as usize, cols as usize);
    if flat.len() != rows * cols {
        bail!(
            "{}: {} values for a {rows}×{cols} array",
            path.display(),
            flat.len()
        );
    }
    let at = |r: usize, c: usize| match order {
        Order::C => flat[r * cols + c],
        Order::Fortran => flat[c * rows + r],
    };
    Ok((0..rows)
        .map(|r| (0..cols).map(|c| at(r, c)).collect())
        .collect())
}

/// The recordings of one file of `channels` channels; `class` labels every step.
fn recordings_of(
    path: &Path,
    channels: usize,
    class: Option<&str>,
) -> anyhow::Result<Vec<Recording>> {
    let m = read_matrix(path)?;
    let cols = m.first().map_or(0, Vec::len);
    let extra = cols.checked_sub(channels).filter(|&e| e <= 2).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: {cols} columns, but the plan's windows have {channels} channels (expected {channels}, or {} with a recording id, or {} with a recording id and a label)",
            path.display(),
            channels + 1,
            channels + 2
        )
    })?;
    let mut rows = Vec::with_capacity(m.len());
    for (r, row) in m.iter().enumerate() {
        if let Some(c) = row.iter().position(|v| !v.is_finite()) {
            bail!(
                "{}: row {r}, column {c}: {} is not finite",
                path.display(),
                row[c]
            );
        }
        let id = if extra >= 1 { row[0] as i64 } else { 0 };
        let label = match (extra, class) {
            (2, _) => Some(format!("{}", row[1] as i64)),
            (_, Some(c)) => Some(c.to_string()),
            _ => None,
        };
        rows.push((id, row[extra..].iter().map(|&v| v as f32).collect(), label));
    }
    Ok(group_recordings(rows, extra == 2 || class.is_some()))
}

/// The most `.npy` files one folder may hold.
pub const MAX_FILES: usize = 1_000_000;

/// Loads time series from a `.npy` file or a folder of them, cut into windows of `length`
/// steps every `stride` steps.
pub fn load_series(
    path: &Path,
    channels: usize,
    length: usize,
    stride: usize,
) -> anyhow::Result<Dataset> {
    let files = if path.is_dir() {
        let files = files_by_class(path, &["npy"], MAX_FILES)?;
        if files.is_empty() {
            bail!("{}: no .npy files", path.display());
        }
        files
    } else {
        vec![(path.to_path_buf(), None)]
    };
    let mut recordings = Vec::new();
    for (f, class) in &files {
        recordings.extend(recordings_of(f, channels, class.as_deref())?);
    }
    cut_windows(
        recordings,
        channels,
        length,
        stride,
        &path.display().to_string(),
    )
}

/// Time series in `.npy` files (windows every half window).
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
        load_series(path, channels, length, (length / 2).max(1)).map(Loaded::Pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.npy` file written by hand after the format's specification (version 1.0).
    fn npy_f64(path: &Path, rows: usize, cols: usize, values: &[f64], fortran: bool) {
        let dict = format!(
            "{{'descr': '<f8', 'fortran_order': {}, 'shape': ({rows}, {cols}), }}",
            if fortran { "True" } else { "False" }
        );
        let mut header = dict.into_bytes();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(&header);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn one_long_file_with_recording_and_label_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.npy");
        // Columns: recording, label, x, y; two recordings of 10 steps.
        let mut v = Vec::new();
        for rec in 0..2 {
            for t in 0..10 {
                let label = if t < 7 { 3.0 } else { 5.0 };
                v.extend([rec as f64, label, t as f64, 2.0 * t as f64]);
            }
        }
        npy_f64(&p, 20, 4, &v, false);
        let d = load_series(&p, 2, 4, 3).unwrap();
        assert_eq!(d.len(), 6);
        assert_eq!(d.labels, Some(vec![0, 0, 1, 0, 0, 1]));
        assert_eq!(d.num_classes, 2);
        let w = d.sample(1);
        assert!(w[0] < w[1] && w[1] < w[2] && w[2] < w[3]);
        assert!((w[4] - w[0]).abs() < 1e-5);
        // Three columns for two channels: a recording id only, no labels.
        let q = dir.path().join("r.npy");
        let v: Vec<f64> = (0..12).flat_map(|t| [0.0, t as f64, 1.0]).collect();
        npy_f64(&q, 12, 3, &v, false);
        let d = load_series(&q, 2, 4, 4).unwrap();
        assert_eq!((d.len(), d.labels.is_none()), (3, true));
        let e = load_series(&q, 5, 4, 4).unwrap_err().to_string();
        assert!(e.contains("3 columns") && e.contains("5 channels"), "{e}");
    }

    #[test]
    fn folders_of_recordings_take_labels_from_sub_folders_and_fortran_order() {
        let dir = tempfile::tempdir().unwrap();
        for (class, offset) in [("run", 100.0), ("walk", 0.0)] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            // Fortran order: all of channel 0, then all of channel 1.
            let v: Vec<f64> = (0..8)
                .map(|t| offset + t as f64)
                .chain((0..8).map(|t| -(t as f64)))
                .collect();
            npy_f64(&dir.path().join(class).join("a.npy"), 8, 2, &v, true);
        }
        let d = load_series(dir.path(), 2, 8, 8).unwrap();
        assert_eq!(d.labels, Some(vec![0, 1]));
        let run = d.sample(0);
        assert!(run[0] > 0.0 && run[1] > run[0], "{run:?}");
        assert!(run[8] > run[9], "channel 1 falls");
    }

    #[test]
    fn hostile_files_get_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.npy");
        std::fs::write(&p, b"\x93NUMPY\x01\x00garbage").unwrap();
        assert!(load_series(&p, 1, 2, 1).is_err());
        npy_f64(&p, 2, 1, &[1.0, f64::NAN], false);
        let e = load_series(&p, 1, 2, 1).unwrap_err().to_string();
        assert!(e.contains("not finite"), "{e}");
        // Truncated data: the header promises more values than the file holds.
        npy_f64(&p, 4, 1, &[1.0, 2.0], false);
        assert!(load_series(&p, 1, 2, 1).is_err());
    }
}
