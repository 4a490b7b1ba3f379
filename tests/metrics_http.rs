//! Prometheus `/metrics` and `/healthz` of a real run: `simulate` with `metrics_listen`,
//! scraped over HTTP while it runs, and the figures checked against `metrics.jsonl`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use fedssl::simulate::simulate;
use fedssl_server::metrics::RoundMetrics;

/// The value of the sample whose name and labels start with `key` (e.g.
/// `fedssl_updates_total{outcome="accepted"`).
fn sample(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.starts_with(key)
                && matches!(
                    l.as_bytes().get(key.len()),
                    Some(b' ') | Some(b'{') | Some(b',') | Some(b'}')
                )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_are_scraped_during_a_run_and_match_metrics_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut a = common::tiny_simulation(run.clone(), 2);
    a.site_report = fedssl_client::config::ReportConfig::ALL;
    a.metrics_listen = Some(addr);
    let job = tokio::spawn(simulate(a));

    // Scrape while the run goes on; keep the scrape of the latest committed round (the
    // server exits right after the last one, so the final state may never be scraped).
    let (mut best, mut k, mut saw_clients, mut health) = (String::new(), 0u64, false, None);
    while !job.is_finished() {
        if let Ok((status, body)) = common::http_get(addr, "/metrics") {
            assert!(status.contains("200"), "{status}");
            saw_clients |= sample(&body, "fedssl_connected_clients").unwrap_or(0.0) >= 3.0;
            let n = sample(&body, "fedssl_rounds_committed_total").unwrap_or(0.0) as u64;
            if n >= k.max(1) {
                (best, k) = (body, n);
            }
            if health.is_none() {
                health = common::http_get(addr, "/healthz").ok();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    job.await.unwrap().unwrap();
    assert!(k >= 1, "no scrape after a committed round");

    let (status, body) = health.expect("/healthz answered");
    assert!(status.contains("200"), "{status}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["rounds_planned"], 2);
    assert!(
        saw_clients,
        "fedssl_connected_clients never showed the 3 sites"
    );

    // The scrape against the first k lines of metrics.jsonl.
    let rounds: Vec<RoundMetrics> = std::fs::read_to_string(run.join("server/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rounds.len(), 2);
    let done = &rounds[..k as usize];
    let m = &best;
    assert_eq!(
        sample(m, "fedssl_round_seconds_count").unwrap(),
        k as f64,
        "{m}"
    );
    let secs: f64 = done.iter().map(|r| r.seconds).sum();
    assert!(
        (sample(m, "fedssl_round_seconds_sum").unwrap() - secs).abs() < 1e-6,
        "{m}"
    );
    // Accepted updates: at least those of the committed rounds, at most the whole run's
    // (the next round's may already be in).
    let accepted = sample(m, "fedssl_updates_total{outcome=\"accepted\"").unwrap();
    let committed: usize = done.iter().map(|r| r.clients_accepted).sum();
    let all: usize = rounds.iter().map(|r| r.clients_accepted).sum();
    assert!(
        accepted >= committed as f64 && accepted <= all as f64,
        "{accepted} accepted, rounds say {committed}..{all}"
    );
    assert_eq!(
        sample(m, "fedssl_updates_total{outcome=\"rejected\"").unwrap(),
        0.0
    );
    // Every committed round's traffic is inside the totals (which also count greetings).
    let up: u64 = done.iter().map(|r| r.bytes_up).sum();
    let down: u64 = done.iter().map(|r| r.bytes_down).sum();
    assert!(sample(m, "fedssl_bytes_total{direction=\"up\"").unwrap() >= up as f64);
    assert!(sample(m, "fedssl_bytes_total{direction=\"down\"").unwrap() >= down as f64);
    assert_eq!(sample(m, "fedssl_handshake_failures_total").unwrap(), 0.0);
    // ε as the sites reported it in the last committed round, with what it means.
    let eps_line = m
        .lines()
        .find(|l| l.starts_with("fedssl_max_epsilon{"))
        .unwrap_or_else(|| panic!("no fedssl_max_epsilon in\n{m}"));
    let unit = common::tiny_plan().privacy.mechanism.unit().name();
    for label in [
        format!("unit=\"{unit}\""),
        format!("neighbour=\"add-or-remove one {unit}\""),
        "accountant=\"rdp\"".to_string(),
        "delta=".to_string(),
    ] {
        assert!(eps_line.contains(&label), "{label} missing: {eps_line}");
    }
    let reported = done[k as usize - 1].max_epsilon.expect("sites reported ε");
    let scraped: f64 = eps_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((scraped - reported).abs() < 1e-9, "{scraped} vs {reported}");
    assert!(m.contains("# HELP fedssl_rounds_committed_total"), "{m}");
}
