//! Prometheus `/metrics`, `/healthz` and the dashboard (`/`, `/plots/NAME.svg`, see
//! [`crate::dashboard`]) over HTTP (axum), fed by the server's counters and run directory.
//!
//! The server's counters stay plain atomics ([`Counters`]); at each scrape they are copied
//! into this server's own Prometheus recorder (`metrics-exporter-prometheus`, a local
//! recorder, so several servers in one process do not mix) and rendered. Round durations
//! go into a histogram as rounds commit.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tracing::{info, warn};

use crate::metrics::{Counters, RoundMetrics};

/// Buckets of `fedssl_round_seconds`: a second to an hour.
const ROUND_SECONDS_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// One server's metrics.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    counters: Arc<Counters>,
    endpoint: quinn::Endpoint,
    rounds_planned: u64,
    /// Labels of `fedssl_max_epsilon`: what the figure means.
    epsilon_labels: [(&'static str, String); 4],
    /// Rounds committed and the last round's largest reported ε; held while a commit is
    /// recorded and while a scrape renders, so one scrape shows one state.
    committed: Mutex<(u64, Option<f64>)>,
    /// The run directory the dashboard reads.
    run_dir: Option<std::path::PathBuf>,
}

impl Telemetry {
    /// Metrics of the server listening on `endpoint`, counting in `counters`.
    /// `rounds_committed` is where a resumed run starts; `epsilon_labels` name the unit,
    /// neighbour relation, δ and accountant of the ε sites report.
    pub fn new(
        counters: Arc<Counters>,
        endpoint: quinn::Endpoint,
        rounds_committed: u64,
        rounds_planned: u64,
        epsilon_labels: [(&'static str, String); 4],
    ) -> anyhow::Result<Self> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("fedssl_round_seconds".into()),
                ROUND_SECONDS_BUCKETS,
            )
            .context("histogram buckets")?
            .build_recorder();
        let t = Self {
            recorder,
            counters,
            endpoint,
            rounds_planned,
            epsilon_labels,
            committed: Mutex::new((rounds_committed, None)),
            run_dir: None,
        };
        metrics::with_local_recorder(&t.recorder, || {
            metrics::describe_counter!(
                "fedssl_rounds_committed_total",
                "Rounds committed (a resumed run counts its earlier rounds too)."
            );
            metrics::describe_gauge!(
                "fedssl_rounds_planned",
                "Rounds the configuration asks for."
            );
            metrics::describe_histogram!(
                "fedssl_round_seconds",
                metrics::Unit::Seconds,
                "Wall time of each committed round, from opening to commit."
            );
            metrics::describe_gauge!(
                "fedssl_connected_clients",
                "Open QUIC connections (authenticated sites and handshakes in progress)."
            );
            metrics::describe_counter!("fedssl_updates_total", "Updates by outcome: accepted, rejected (any reason; replayed ones are counted in both rejected and replayed), replayed.");
            metrics::describe_counter!(
                "fedssl_handshake_failures_total",
                "TLS handshakes that failed (certificate not from the deployment CA, or none)."
            );
            metrics::describe_counter!(
                "fedssl_connections_total",
                "Connections authenticated by certificate."
            );
            metrics::describe_counter!(
                "fedssl_connections_refused_total",
                "Connections refused by admission control (max_connections)."
            );
            metrics::describe_counter!(
                "fedssl_frames_refused_total",
                "Frames refused by reason: oversized, truncated, malformed."
            );
            metrics::describe_counter!(
                "fedssl_persist_failures_total",
                "Accepted updates the store could not make durable (refused, to be resent)."
            );
            metrics::describe_counter!(
                "fedssl_bytes_total",
                "Frame bytes by direction (up: from sites, down: to sites)."
            );
            metrics::describe_gauge!("fedssl_max_epsilon", "Largest ε a site reported in the last committed round (only sites that opted in to report it); labels give its unit, neighbour relation, δ and accountant.");
        });
        Ok(t)
    }

    /// Records a committed round.
    /// Serves the dashboard of the run in `run_dir` at `/`.
    pub fn with_dashboard(mut self, run_dir: std::path::PathBuf) -> Self {
        self.run_dir = Some(run_dir);
        self
    }

    /// Records a committed round.
    pub fn round_committed(&self, m: &RoundMetrics) {
        let mut c = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        metrics::with_local_recorder(&self.recorder, || {
            metrics::histogram!("fedssl_round_seconds").record(m.seconds);
        });
        *c = (c.0.max(m.round), m.max_epsilon);
    }

    /// Rounds committed so far.
    pub fn rounds_committed(&self) -> u64 {
        self.committed.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// The Prometheus text exposition of every metric, as of now.
    pub fn render(&self) -> String {
        let committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        let (rounds, max_epsilon) = *committed;
        let c = self.counters.snapshot();
        let text = metrics::with_local_recorder(&self.recorder, || {
            use metrics::{counter, gauge};
            counter!("fedssl_rounds_committed_total").absolute(rounds);
            gauge!("fedssl_rounds_planned").set(self.rounds_planned as f64);
            gauge!("fedssl_connected_clients").set(self.endpoint.open_connections() as f64);
            for (outcome, v) in [
                ("accepted", c.updates_accepted),
                ("rejected", c.updates_rejected),
                ("replayed", c.updates_replayed),
            ] {
                counter!("fedssl_updates_total", "outcome" => outcome).absolute(v);
            }
            counter!("fedssl_handshake_failures_total").absolute(c.handshake_failures);
            counter!("fedssl_connections_total").absolute(c.connections);
            counter!("fedssl_connections_refused_total").absolute(c.connections_refused);
            for (reason, v) in [
                ("oversized", c.frames_oversized),
                ("truncated", c.frames_truncated),
                ("malformed", c.frames_malformed),
            ] {
                counter!("fedssl_frames_refused_total", "reason" => reason).absolute(v);
            }
            counter!("fedssl_persist_failures_total").absolute(c.persist_failures);
            counter!("fedssl_bytes_total", "direction" => "up").absolute(c.bytes_up);
            counter!("fedssl_bytes_total", "direction" => "down").absolute(c.bytes_down);
            if let Some(e) = max_epsilon {
                let labels: Vec<metrics::Label> = self
                    .epsilon_labels
                    .iter()
                    .map(|(k, v)| metrics::Label::new(*k, v.clone()))
                    .collect();
                gauge!("fedssl_max_epsilon", labels).set(e);
            }
            self.recorder.handle().render()
        });
        drop(committed);
        text
    }
}

async fn metrics_page(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        t.render(),
    )
}

async fn health(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!(
            "{{\"status\":\"ok\",\"rounds_committed\":{},\"rounds_planned\":{}}}\n",
            t.rounds_committed(),
            t.rounds_planned
        ),
    )
}

/// The dashboard page, or one of its plots (`what`: `None` for the page).
async fn dashboard(t: Arc<Telemetry>, what: Option<String>) -> axum::response::Response {
    let Some(run_dir) = t.run_dir.clone() else {
        return (StatusCode::NOT_FOUND, "no dashboard for this server\n").into_response();
    };
    let plot = match what.as_deref().map(|n| n.strip_suffix(".svg").unwrap_or(n)) {
        None => None,
        Some(n) => match crate::dashboard::Plot::from_name(n) {
            Some(p) => Some(p),
            None => {
                return (
                    StatusCode::NOT_FOUND,
                    "no such plot: loss.svg, probe.svg or epsilon.svg\n",
                )
                    .into_response()
            }
        },
    };
    let built = tokio::task::spawn_blocking(move || -> anyhow::Result<(&'static str, String)> {
        let v = crate::dashboard::load(&run_dir)?;
        Ok(match plot {
            None => (
                "text/html; charset=utf-8",
                crate::dashboard::page(&v, crate::endpoint::unix_now() as i64, true),
            ),
            Some(p) => ("image/svg+xml", crate::dashboard::plot_svg(p, &v.rounds)),
        })
    })
    .await;
    match built {
        Ok(Ok((kind, body))) => ([(header::CONTENT_TYPE, kind)], body).into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the run's state cannot be read yet: {e:#}\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Serves `/metrics`, `/healthz` and the dashboard on `listen` until the task is dropped. Returns the
/// bound address (`listen` may ask for port 0) and the serving task.
pub async fn serve(
    listen: SocketAddr,
    t: Arc<Telemetry>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = axum::Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(health))
        .route(
            "/",
            get(|State(t): State<Arc<Telemetry>>| dashboard(t, None)),
        )
        .route(
            "/plots/{name}",
            get(
                |State(t): State<Arc<Telemetry>>,
                 axum::extract::Path(name): axum::extract::Path<String>| {
                    dashboard(t, Some(name))
                },
            ),
        )
        .with_state(t);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for metrics on {listen} ([metrics] listen)"))?;
    let addr = listener.local_addr()?;
    info!(%addr, "dashboard at http://{addr}/, metrics at /metrics, health at /healthz");
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok((addr, task))
}
