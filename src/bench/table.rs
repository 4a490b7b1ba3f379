//! A results table: printed for people, written as JSON and CSV for tools.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// A titled table of string cells with notes underneath.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// What was measured.
    pub title: String,
    /// Column names.
    pub headers: Vec<String>,
    /// Rows of cells (same length as `headers`).
    pub rows: Vec<Vec<String>>,
    /// Lines printed under the table (machine, caveats, references).
    pub notes: Vec<String>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Self {
        Self {
            title: title.into(),
            headers: headers.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Appends a row (padded or cut to the number of columns).
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// Appends a note.
    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// The table as aligned text.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r[c].chars().count())
                    .chain([self.headers[c].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    let pad = w - c.chars().count();
                    if i == 0 {
                        format!("{c}{}", " ".repeat(pad))
                    } else {
                        format!("{}{c}", " ".repeat(pad))
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        let mut out = format!("\n== {} ==\n", self.title);
        out.push_str(&line(&self.headers));
        out.push('\n');
        out.push_str(
            &"-".repeat(widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1)),
        );
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        for n in &self.notes {
            out.push_str(&format!("  {n}\n"));
        }
        out
    }

    /// Writes `<stem>.json` and `<stem>.csv` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let json = dir.join(format!("{stem}.json"));
        fedssl_core::atomic_write(&json, serde_json::to_string_pretty(self)?.as_bytes())?;
        let csv_path = dir.join(format!("{stem}.csv"));
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.headers)?;
        for r in &self.rows {
            w.write_record(r)?;
        }
        let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        fedssl_core::atomic_write(&csv_path, &bytes)?;
        Ok((json, csv_path))
    }
}

/// `v` as a percentage with two decimals, or `-`.
pub fn pct(v: Option<f64>) -> String {
    match v {
        Some(a) if a.is_finite() => format!("{:.2}%", 100.0 * a),
        _ => "-".into(),
    }
}

/// `v` with `digits` decimals, or `-`.
pub fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "-".into(),
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx512() -> bool {
    false
}

/// A one-line description of this machine (CPU model and threads).
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let avx512 = if has_avx512() { ", AVX-512" } else { "" };
    format!("{cpu}{avx512}, {} threads", rayon::current_num_threads())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_render_and_write_csv_and_json() {
        let mut t = Table::new("demo", &["row", "value"]);
        t.row(vec!["a, with comma".into(), "1.00".into()]);
        t.note("a note");
        let text = t.render();
        assert!(text.contains("== demo ==") && text.contains("a note"));
        let dir = tempfile::tempdir().unwrap();
        let (json, csv) = t.write(dir.path(), "demo").unwrap();
        let c = std::fs::read_to_string(csv).unwrap();
        assert_eq!(c, "row,value\n\"a, with comma\",1.00\n");
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
        assert_eq!(j["rows"][0][1], "1.00");
    }
}
