//! What an operator sees: `/metrics` (the engine's Prometheus text, then the server's own
//! request counters and latency histogram), `/healthz` (the process answers) and `/readyz` (a
//! bundle is loaded).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

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

/// Upper bounds of the request latency buckets, in seconds (then `+Inf`).
const BUCKETS: [f64; 10] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1,
];

#[derive(Default)]
struct ApiCounters {
    outcomes: [AtomicU64; OUTCOMES.len()],
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

/// The server's request counters, by API.
#[derive(Default)]
pub(crate) struct Counters([ApiCounters; Api::ALL.len()]);

impl Counters {
    /// Counts one request of `api` that ended as `outcome` after `took`.
    pub(crate) fn record(&self, api: Api, outcome: Outcome, took: Duration) {
        let counters = &self.0[api as usize];
        counters.outcomes[outcome as usize].fetch_add(1, Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(BUCKETS.len());
        counters.buckets[bucket].fetch_add(1, Relaxed);
        counters
            .sum_ns
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// The counters in Prometheus' text format.
    fn to_prometheus(&self, decision_log_dropped: Option<u64>) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP arbiter_server_requests_total Requests answered, by API and outcome.\n",
        );
        out.push_str("# TYPE arbiter_server_requests_total counter\n");
        for api in Api::ALL {
            for (i, outcome) in OUTCOMES.iter().enumerate() {
                let n = self.0[api as usize].outcomes[i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "arbiter_server_requests_total{{api=\"{}\",outcome=\"{outcome}\"}} {n}",
                    api.label()
                );
            }
        }
        out.push_str(
            "# HELP arbiter_server_request_duration_seconds Time to answer a request, by API.\n",
        );
        out.push_str("# TYPE arbiter_server_request_duration_seconds histogram\n");
        for api in Api::ALL {
            let counters = &self.0[api as usize];
            let mut cumulative = 0;
            for (i, le) in BUCKETS
                .iter()
                .map(f64::to_string)
                .chain(["+Inf".into()])
                .enumerate()
            {
                cumulative += counters.buckets[i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "arbiter_server_request_duration_seconds_bucket{{api=\"{}\",le=\"{le}\"}} {cumulative}",
                    api.label()
                );
            }
            let sum = counters.sum_ns.load(Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "arbiter_server_request_duration_seconds_sum{{api=\"{}\"}} {sum}\n\
                 arbiter_server_request_duration_seconds_count{{api=\"{}\"}} {cumulative}",
                api.label(),
                api.label()
            );
        }
        if let Some(dropped) = decision_log_dropped {
            out.push_str(
                "# HELP arbiter_server_decision_log_dropped_total Decision log events dropped \
                 because the writer fell behind.\n\
                 # TYPE arbiter_server_decision_log_dropped_total counter\n",
            );
            let _ = writeln!(out, "arbiter_server_decision_log_dropped_total {dropped}");
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
    text.push_str(&state.counters.to_prometheus(state.decision_log_dropped()));
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
