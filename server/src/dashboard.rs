//! The operator's dashboard: one server-rendered HTML page (no JavaScript; it reloads itself
//! every 5 s while the run goes on) with the run's state, the privacy budget, a table of
//! rounds, a table of sites, and SVG plots of the sites' mean loss, the server's probe
//! accuracy and ε per round (plotters). It reads what the run directory records: the SQLite
//! state through [`crate::status`] (the tables) and `metrics.jsonl` (the plots, which
//! follow a round once the server has evaluated its model), so the page is the same whether it
//! is served live from the metrics listener or written next to the run at its end
//! ([`write_files`]: `dashboard.html` and `plots/*.svg`).

use std::fmt::Write;
use std::path::Path;

use plotters::prelude::*;

use crate::metrics::RoundMetrics;
use crate::status::{self, RunStatus};

/// What one plot shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plot {
    /// Mean local loss the sites reported (sites that opted in to report it).
    Loss,
    /// The server's linear-probe (and kNN) accuracy on its own labeled set.
    Probe,
    /// ε per round: the largest a site reported, and central DP's at the server.
    Epsilon,
}

impl Plot {
    /// Every plot, in page order.
    pub const ALL: [Plot; 3] = [Plot::Loss, Plot::Probe, Plot::Epsilon];

    /// File stem: `loss`, `probe`, `epsilon`.
    pub fn name(self) -> &'static str {
        match self {
            Plot::Loss => "loss",
            Plot::Probe => "probe",
            Plot::Epsilon => "epsilon",
        }
    }

    /// The plot named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    fn title(self) -> &'static str {
        match self {
            Plot::Loss => "mean local loss (sites that report it)",
            Plot::Probe => "server probe accuracy (%)",
            Plot::Epsilon => "ε after each round",
        }
    }

    /// The plotted series: (legend, points).
    fn series(self, rounds: &[RoundMetrics]) -> Vec<(&'static str, Vec<(f64, f64)>)> {
        let pick = |f: &dyn Fn(&RoundMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
            rounds
                .iter()
                .filter_map(|m| f(m).filter(|v| v.is_finite()).map(|v| (m.round as f64, v)))
                .collect()
        };
        let s = match self {
            Plot::Loss => vec![("mean loss", pick(&|m| m.mean_local_loss))],
            Plot::Probe => vec![
                (
                    "linear probe",
                    pick(&|m| {
                        m.server_eval
                            .and_then(|e| e.linear_probe_accuracy)
                            .map(|a| 100.0 * a)
                    }),
                ),
                (
                    "kNN",
                    pick(&|m| {
                        m.server_eval
                            .and_then(|e| e.knn_accuracy)
                            .map(|a| 100.0 * a)
                    }),
                ),
            ],
            Plot::Epsilon => vec![
                ("largest ε a site reported", pick(&|m| m.max_epsilon)),
                ("central DP ε (server)", pick(&|m| m.central_epsilon)),
            ],
        };
        s.into_iter().filter(|(_, p)| !p.is_empty()).collect()
    }

    fn empty_note(self) -> &'static str {
        match self {
            Plot::Loss => "no loss reported: sites send it only with [report] loss = true",
            Plot::Probe => "no probe yet: the server probes every eval.every rounds and after the last, when it holds an [eval] set",
            Plot::Epsilon => "no ε reported: sites send it only if they opt in; central DP is off",
        }
    }
}

/// Renders one plot as SVG.
pub fn plot_svg(plot: Plot, rounds: &[RoundMetrics]) -> String {
    let mut svg = String::new();
    let series = plot.series(rounds);
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, (520, 260)).into_drawing_area();
        draw(&root, plot, &series)
    };
    if let Err(e) = drawn {
        tracing::warn!(plot = plot.name(), error = %e, "cannot draw the plot");
    }
    svg
}

fn draw(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    plot: Plot,
    series: &[(&'static str, Vec<(f64, f64)>)],
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x1, mut y0, mut y1) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points {
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if series.is_empty() {
        (y0, y1) = (0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.1).max(1e-3);
    let (y0, y1) = (
        if plot == Plot::Loss {
            y0 - pad
        } else {
            (y0 - pad).max(0.0)
        },
        y1 + pad,
    );
    let mut chart = ChartBuilder::on(root)
        .caption(plot.title(), ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(48)
        .build_cartesian_2d(0.5f64..(x1 + 0.5), y0..y1)?;
    chart
        .configure_mesh()
        .x_desc("round")
        .x_labels(x1.min(10.0) as usize + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    if series.is_empty() {
        root.draw(&Text::new(
            plot.empty_note(),
            (40, 130),
            ("sans-serif", 13)
                .into_font()
                .color(&RGBColor(120, 120, 120)),
        ))?;
    }
    let colours = [RGBColor(31, 119, 180), RGBColor(214, 39, 40)];
    for (i, (label, pts)) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// What the page shows: the run's state and its per-round metrics.
pub struct RunView {
    /// The SQLite state.
    pub status: RunStatus,
    /// `metrics.jsonl`, in order.
    pub rounds: Vec<RoundMetrics>,
    /// The plan's privacy target, in words (from the stored configuration).
    pub budget: Option<String>,
    /// Lines of `metrics.jsonl` that did not parse (a torn last line after a crash).
    pub unreadable_lines: usize,
}

/// Reads the run in `dir` (a server's `run_dir` or a simulate `--run-dir`), read-only.
pub fn load(dir: &Path) -> anyhow::Result<RunView> {
    let status = status::read(dir)?;
    let text = std::fs::read_to_string(status.run_dir.join("metrics.jsonl")).unwrap_or_default();
    let mut rounds = vec![];
    let mut unreadable_lines = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<RoundMetrics>(line) {
            Ok(m) => rounds.push(m),
            Err(_) => unreadable_lines += 1,
        }
    }
    let budget = status::stored_config(&status.run_dir).map(|c| {
        let p = &c.plan.privacy;
        let unit = p.mechanism.unit();
        match (p.mechanism.is_private(), p.target_epsilon) {
            (false, _) => "no differential privacy in this plan".to_string(),
            (true, Some(e)) => format!(
                "the plan calibrates noise for ε = {e} per {} over {} rounds; each site also \
                 stops at its own epsilon_budget, whatever the server asks",
                unit.name(),
                c.rounds
            ),
            (true, None) => format!(
                "the plan fixes the noise multiplier; ε per {} grows each round, and each site \
                 stops at its own epsilon_budget",
                unit.name()
            ),
        }
    });
    Ok(RunView {
        status,
        rounds,
        budget,
        unreadable_lines,
    })
}

/// HTML-escapes text from the run (site names are checked at issue, but failure reasons
/// and paths are free text).
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

/// The page (`now`: Unix seconds). `live` adds the 5-second reload while the run goes on.
pub fn page(v: &RunView, now: i64, live: bool) -> String {
    let st = &v.status;
    let finished = st.rounds_planned.is_some_and(|p| st.rounds_committed >= p);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>fedssl: {} of {} rounds</title>",
        st.rounds_committed,
        st.rounds_planned
            .map(|p| p.to_string())
            .unwrap_or("?".into())
    );
    if live && !finished {
        h.push_str("<meta http-equiv=\"refresh\" content=\"5\">");
    }
    h.push_str(
        "<style>body{font-family:sans-serif;margin:1.5em;color:#222}\
         table{border-collapse:collapse;margin:.5em 0 1.5em}\
         td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
         th{background:#f3f3f3}td.l,th.l{text-align:left}\
         .plots{display:flex;flex-wrap:wrap;gap:1em}.warn{color:#a40}</style></head><body>\n",
    );
    let _ = writeln!(h, "<h1>fedssl run</h1>\n<p id=\"state\">{}</p>", {
        let mut s = format!(
            "<b>{}</b> of {} rounds committed",
            st.rounds_committed,
            st.rounds_planned
                .map(|p| p.to_string())
                .unwrap_or("?".into())
        );
        match &st.open_round {
            Some(r) => {
                let _ = write!(
                    s,
                    "; round {} open: {} of {} selected sites accepted, opened {}",
                    r.round,
                    r.accepted,
                    r.selected.len(),
                    status::age(now, r.started_at)
                );
            }
            None if finished => s.push_str("; the run is finished"),
            None => s.push_str("; no round open"),
        }
        if let Some(t) = st.paused_since {
            let _ = write!(
                s,
                "; <b class=\"warn\">paused</b> since {}",
                status::age(now, t)
            );
        }
        if let Some(m) = &st.latest_model {
            let _ = write!(
                s,
                "<br>latest model: version {}, sha256 <code>{}</code>",
                m.version,
                esc(&m.hash)
            );
        }
        let _ = write!(
            s,
            "<br>run directory: <code>{}</code>",
            esc(&st.run_dir.display().to_string())
        );
        s
    });
    h.push_str("<h2>Privacy budget</h2>\n<ul id=\"privacy\">");
    if let Some(m) = &st.epsilon_meaning {
        let _ = write!(h, "<li>{}</li>", esc(m));
    }
    if let Some(b) = &v.budget {
        let _ = write!(h, "<li>{}</li>", esc(b));
    }
    let reported = v
        .rounds
        .iter()
        .filter_map(|m| m.max_epsilon)
        .fold(None, |a: Option<f64>, e| Some(a.map_or(e, |a| a.max(e))));
    let _ = write!(
        h,
        "<li>largest ε a site has reported: {}</li>",
        reported
            .map(|e| format!("{e:.3}"))
            .unwrap_or_else(|| "none (sites report ε only if they opt in)".into())
    );
    if let Some(c) = v.rounds.iter().rev().find_map(|m| m.central_epsilon) {
        let _ = write!(
            h,
            "<li>central DP at the server, ε per site so far: {c:.3}</li>"
        );
    }
    h.push_str("</ul>\n<h2>Plots</h2>\n<div class=\"plots\">");
    for p in Plot::ALL {
        let _ = write!(
            h,
            "<figure id=\"plot-{}\">{}</figure>",
            p.name(),
            plot_svg(p, &v.rounds)
        );
    }
    h.push_str("</div>\n<h2>Rounds</h2>\n<table id=\"rounds\"><tr><th>round</th><th class=\"l\">status</th>\
        <th>accepted</th><th>rejected</th><th>declined</th><th>mean loss</th><th>max ε reported</th>\
        <th>probe %</th><th>seconds</th></tr>\n");
    for r in st.rounds.iter().rev().take(50) {
        let probe = v
            .rounds
            .iter()
            .find(|m| m.round == r.round)
            .and_then(|m| m.server_eval)
            .and_then(|e| e.linear_probe_accuracy)
            .map(|a| 100.0 * a);
        let cnt = |c: Option<u64>| c.map(|c| c.to_string()).unwrap_or_else(|| "–".into());
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.round,
            esc(&r.status),
            cnt(r.accepted),
            cnt(r.rejected),
            cnt(r.declined),
            opt(r.mean_loss, 4),
            opt(r.max_epsilon, 3),
            opt(probe, 2),
            opt(r.seconds, 1)
        );
    }
    h.push_str("</table>\n<h2>Sites</h2>\n<table id=\"sites\"><tr><th class=\"l\">site</th><th class=\"l\">last seen</th>\
        <th>accepted</th><th>rejected</th><th>declined</th><th>ε reported</th></tr>\n");
    for s in &st.sites {
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            status::age(now, s.last_seen),
            s.accepted,
            s.rejected,
            s.declined,
            opt(s.epsilon_reported, 3)
        );
    }
    h.push_str("</table>\n");
    for (round, reason) in &st.failures {
        let _ = writeln!(
            h,
            "<p class=\"warn\">round {round} failed: {}</p>",
            esc(reason)
        );
    }
    if v.unreadable_lines > 0 {
        let _ = writeln!(
            h,
            "<p class=\"warn\">{} line(s) of metrics.jsonl could not be read</p>",
            v.unreadable_lines
        );
    }
    h.push_str("</body></html>\n");
    h
}

/// Writes `dashboard.html` and `plots/{loss,probe,epsilon}.svg` into the run directory of
/// `dir` (what the live page shows, as files that outlive the server).
pub fn write_files(dir: &Path) -> anyhow::Result<()> {
    let v = load(dir)?;
    let run = v.status.run_dir.clone();
    let plots = run.join("plots");
    std::fs::create_dir_all(&plots)?;
    for p in Plot::ALL {
        fedssl_core::atomic_write(
            &plots.join(format!("{}.svg", p.name())),
            plot_svg(p, &v.rounds).as_bytes(),
        )?;
    }
    let now = crate::endpoint::unix_now() as i64;
    fedssl_core::atomic_write(&run.join("dashboard.html"), page(&v, now, false).as_bytes())?;
    Ok(())
}
