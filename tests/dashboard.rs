//! The operator's dashboard of a real run: `simulate` with `metrics_listen`, paused after a
//! committed round (so the live page can be read at leisure), the page loaded in headless
//! Chromium (Debian's `chromium`; without it that part is skipped with a printed reason),
//! then resumed to the end, where the same page and plots are written into the run
//! directory.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fedssl::simulate::simulate;
use fedssl_server::admin::{self, Command};

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

/// The DOM Chromium builds from `url` (after parsing the HTML and its inline SVG), and a
/// screenshot of the page at `png`.
fn render(browser: &Path, url: &str, png: &Path, profile: &Path) -> String {
    let common = |c: &mut std::process::Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    };
    let mut c = std::process::Command::new(browser);
    common(&mut c);
    let out = c.arg("--dump-dom").arg(url).output().unwrap();
    assert!(
        out.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = std::process::Command::new(browser);
    common(&mut c);
    let shot = c
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows of the rounds table in `html` whose first cell is a number: (round, status).
fn round_rows(html: &str) -> Vec<(u64, String)> {
    let table = html
        .split("id=\"rounds\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or("");
    table
        .split("<tr>")
        .filter_map(|row| {
            let cells: Vec<&str> = row
                .split("<td")
                .skip(1)
                .map(|c| {
                    let c = c.split_once('>').map(|(_, r)| r).unwrap_or("");
                    c.split("</td>").next().unwrap_or("")
                })
                .collect();
            Some((cells.first()?.parse().ok()?, cells.get(1)?.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_rounds_sites_budget_and_plots_live_and_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut a = common::tiny_simulation(run.clone(), 3);
    a.site_report = fedssl_client::config::ReportConfig::ALL;
    a.metrics_listen = Some(addr);
    let job = tokio::spawn(simulate(a));

    // After the first committed round, pause: the page stays live while it is read.
    let end = Instant::now() + Duration::from_secs(300);
    let html = loop {
        assert!(Instant::now() < end, "no committed round on the page");
        if let Ok((status, body)) = common::http_get(addr, "/") {
            if status.contains("200") && round_rows(&body).iter().any(|(_, s)| s == "committed") {
                break body;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let answer = admin::send(&run, Command::Pause).await.unwrap();
    assert!(answer.ok && answer.paused, "{answer:?}");
    let end = Instant::now() + Duration::from_secs(120);
    while fedssl_server::status::read(&run)
        .unwrap()
        .open_round
        .is_some()
    {
        assert!(Instant::now() < end, "the open round did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // What the server sends: the page reloads itself, holds the sections, the three plots
    // as inline SVG, and its plots are also served alone.
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    for id in [
        "state",
        "privacy",
        "rounds",
        "sites",
        "plot-loss",
        "plot-probe",
        "plot-epsilon",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "no #{id}");
    }
    for name in ["loss", "probe", "epsilon"] {
        let (status, body) = common::http_get(addr, &format!("/plots/{name}.svg")).unwrap();
        assert!(status.contains("200"), "{status}");
        assert!(
            body.starts_with("<svg"),
            "{name}: {}",
            &body[..body.len().min(200)]
        );
    }
    let (status, _) = common::http_get(addr, "/plots/nope.svg").unwrap();
    assert!(status.contains("404"), "{status}");

    match chromium() {
        None => eprintln!(
            "skipping the browser check: no chromium on PATH (Debian: apt-get install \
             chromium; .ci/run installs it)"
        ),
        Some(browser) => {
            let png = dir.path().join("dashboard.png");
            let dom = render(
                &browser,
                &format!("http://{addr}/"),
                &png,
                &dir.path().join("profile"),
            );
            let state = fedssl_server::status::read(&run).unwrap();
            // The round table lists every committed round of the SQLite state.
            let rows = round_rows(&dom);
            let committed: Vec<u64> = rows
                .iter()
                .filter(|(_, s)| s == "committed")
                .map(|(r, _)| *r)
                .collect();
            assert_eq!(committed.len() as u64, state.rounds_committed, "{rows:?}");
            assert!(dom.contains("paused"), "the page does not say it is paused");
            // Each site has a row; each plot is a parsed SVG element with drawn lines.
            for s in &state.sites {
                assert!(
                    dom.contains(&format!(">{}</td>", s.name)),
                    "no row for {}",
                    s.name
                );
            }
            for name in ["loss", "probe", "epsilon"] {
                let fig = dom
                    .split(&format!("id=\"plot-{name}\""))
                    .nth(1)
                    .and_then(|f| f.split("</figure>").next())
                    .unwrap_or_else(|| panic!("no plot-{name} in the DOM"));
                assert!(fig.contains("<svg"), "plot-{name} is not SVG");
                assert!(
                    fig.contains("<polyline") || fig.contains("<path"),
                    "plot-{name} draws nothing"
                );
                assert!(fig.contains("round"), "plot-{name} has no axis label");
            }
            assert!(
                dom.contains("ε per record"),
                "the privacy budget is not described"
            );
            let size = std::fs::metadata(&png).unwrap().len();
            assert!(size > 20_000, "the screenshot is {size} bytes");
            eprintln!("dashboard screenshot: {}", png.display());
            if let Ok(keep) = std::env::var("FEDSSL_KEEP_SCREENSHOT") {
                std::fs::copy(&png, keep).unwrap();
            }
        }
    }

    // Resumed, the run ends and leaves the same page and plots in its directory.
    admin::send(&run, Command::Resume).await.unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(300), job)
        .await
        .expect("the run did not finish")
        .unwrap()
        .unwrap();
    assert_eq!(summary.rounds_completed, 3);
    let server = run.join("server");
    let page = std::fs::read_to_string(server.join("dashboard.html")).unwrap();
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "a finished run's file reloads"
    );
    let rows = round_rows(&page);
    assert_eq!(
        rows.iter().filter(|(_, s)| s == "committed").count(),
        3,
        "{rows:?}"
    );
    let metrics: Vec<fedssl_server::metrics::RoundMetrics> =
        std::fs::read_to_string(server.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    for name in ["loss", "probe", "epsilon"] {
        let svg = std::fs::read_to_string(server.join(format!("plots/{name}.svg"))).unwrap();
        assert!(svg.starts_with("<svg"), "{name}");
        // One marker per round with a value: the loss is reported every round.
        if name == "loss" {
            let with_loss = metrics
                .iter()
                .filter(|m| m.mean_local_loss.is_some())
                .count();
            assert_eq!(with_loss, 3);
            assert_eq!(svg.matches("<circle").count(), with_loss, "{svg}");
        }
    }
}
