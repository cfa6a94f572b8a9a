//! What an operator sees: `/metrics` (the engine's Prometheus text, then the server's own
//! request counters and latency histogram), `/healthz` (the process answers) and `/readyz` (a
//! bundle is loaded).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arbiter::LatencyRecorder;
use axum::extract::State as Shared;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::State;

/// The APIs the server counts requests of.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Api {
    ExtAuthz,
    Evaluation,
    Evaluations,
    Search,
}

impl Api {
    const ALL: [Self; 4] = [
        Self::ExtAuthz,
        Self::Evaluation,
        Self::Evaluations,
        Self::Search,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::ExtAuthz => "ext_authz",
            Self::Evaluation => "authzen_evaluation",
            Self::Evaluations => "authzen_evaluations",
            Self::Search => "authzen_search",
        }
    }
}

/// How a request ended: allowed, denied (by policy or by a request the mapping refused), or an
/// error answered with a 4xx status (AuthZEN's bad input).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Allow,
    Deny,
    Error,
}

const OUTCOMES: [&str; 3] = ["allow", "deny", "error"];

#[derive(Default)]
struct ApiCounters {
    outcomes: [AtomicU64; OUTCOMES.len()],
    latency: LatencyRecorder,
}

/// The server's request counters, by API.
#[derive(Default)]
pub(crate) struct Counters([ApiCounters; Api::ALL.len()]);

impl Counters {
    /// Counts one request of `api` that ended as `outcome` after `took`.
    pub(crate) fn record(&self, api: Api, outcome: Outcome, took: Duration) {
        let counters = &self.0[api as usize];
        counters.outcomes[outcome as usize].fetch_add(1, Relaxed);
        counters.latency.record(took);
    }

    /// The counters in Prometheus' text format.
    fn to_prometheus(
        &self,
        decision_log_dropped: Option<u64>,
        otlp: Option<arbiter_otlp::ExporterStats>,
    ) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let mut requests = Vec::new();
        let mut latency = Vec::new();
        for api in Api::ALL {
            let counters = &self.0[api as usize];
            for (outcome, n) in OUTCOMES.iter().zip(&counters.outcomes) {
                let labels = format!("{{api=\"{}\",outcome=\"{outcome}\"}}", api.label());
                requests.push((labels, n.load(Relaxed).to_string()));
            }
            latency.extend(
                counters
                    .latency
                    .snapshot()
                    .prometheus_samples(&[("api", api.label())]),
            );
        }
        family(
            "arbiter_server_requests_total",
            "counter",
            "Requests answered, by API and outcome.",
            requests,
        );
        family(
            "arbiter_server_request_duration_seconds",
            "histogram",
            "Time to answer a request, by API.",
            latency,
        );
        if let Some(dropped) = decision_log_dropped {
            family(
                "arbiter_server_decision_log_dropped_total",
                "counter",
                "Decision log events dropped because the writer fell behind.",
                vec![(String::new(), dropped.to_string())],
            );
        }
        if let Some(otlp) = otlp {
            family(
                "arbiter_server_decision_log_otlp_records_total",
                "counter",
                "Decision log records for the OpenTelemetry receiver, by result (exported, or \
                 dropped: the queue was full or their export failed).",
                vec![
                    ("{result=\"exported\"}".into(), otlp.exported.to_string()),
                    ("{result=\"dropped\"}".into(), otlp.dropped.to_string()),
                ],
            );
            family(
                "arbiter_server_decision_log_otlp_failed_exports_total",
                "counter",
                "Export requests to the OpenTelemetry receiver that failed.",
                vec![(String::new(), otlp.failed_exports.to_string())],
            );
        }
        out
    }
}

/// `/metrics`, `/healthz` and `/readyz`.
pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

async fn metrics(Shared(state): Shared<Arc<State>>) -> impl IntoResponse {
    let mut text = state
        .engine()
        .map(|engine| engine.metrics().to_prometheus())
        .unwrap_or_default();
    text.push_str(
        &state
            .counters
            .to_prometheus(state.decision_log_dropped(), state.otlp_stats()),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn ready(Shared(state): Shared<Arc<State>>) -> impl IntoResponse {
    match state.engine() {
        Some(_) => (StatusCode::OK, format!("ready: {}\n", state.describe())),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the bundle has not loaded yet\n".to_owned(),
        ),
    }
}
