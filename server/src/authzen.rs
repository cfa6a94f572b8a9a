//! OpenID AuthZEN Authorization API 1.0 over HTTP: the engine's AuthZEN calls
//! (`Engine::authzen_evaluation` and its siblings) behind their endpoints, with what is HTTP's
//! alone: a JSON Content-Type, the body limit (413), `X-Request-ID` echoed and passed on as the
//! decision's request id, and 400 (`{"error": {"status", "message"}}`) for a body the API
//! cannot take.

use std::sync::Arc;
use std::time::Instant;

use arbiter::{AuthzenAnswer, AuthzenError, Engine};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State as Shared};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use crate::ops::{Api, Outcome};
use crate::State;

const EVALUATION: &str = "/access/v1/evaluation";
const EVALUATIONS: &str = "/access/v1/evaluations";
const SEARCH_RESOURCE: &str = "/access/v1/search/resource";
const CONFIGURATION: &str = "/.well-known/authzen-configuration";

/// An engine's answer to one of the API's bodies.
type Call = fn(&Engine, &str, Option<&str>) -> Result<AuthzenAnswer, AuthzenError>;

/// The AuthZEN routes.
pub(crate) fn router(state: Arc<State>) -> Router {
    let endpoint = |api: Api, call: Call| {
        post(
            move |Shared(state): Shared<Arc<State>>,
                  headers: HeaderMap,
                  body: Result<Bytes, BytesRejection>| async move {
                answer(&state, api, &headers, body, call).await
            },
        )
    };
    Router::new()
        .route(
            EVALUATION,
            endpoint(Api::Evaluation, Engine::authzen_evaluation),
        )
        .route(
            EVALUATIONS,
            endpoint(Api::Evaluations, Engine::authzen_evaluations),
        )
        .route(
            SEARCH_RESOURCE,
            endpoint(Api::Search, Engine::authzen_search_resource),
        )
        .route(CONFIGURATION, get(configuration))
        .layer(DefaultBodyLimit::max(state.max_request_bytes))
        .with_state(state)
}

/// Runs `call` on a POST's body, under the concurrency limit, counting it for `api`.
async fn answer(
    state: &State,
    api: Api,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    call: Call,
) -> Response {
    let start = Instant::now();
    let request_id = headers.get("x-request-id");
    let _permit = state.permits.acquire().await;
    let answered = match (state.engine(), json_text(headers, &body)) {
        (None, _) => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "the bundle has not loaded yet".to_owned(),
        )),
        (Some(_), Err(refused)) => Err(refused),
        (Some(engine), Ok(text)) => call(engine, text, request_id.and_then(|v| v.to_str().ok()))
            .map_err(|AuthzenError(message)| (StatusCode::BAD_REQUEST, message)),
    };
    let (response, outcome) = match answered {
        Ok(answer) => (
            reply(StatusCode::OK, request_id, answer.json),
            if answer.allowed {
                Outcome::Allow
            } else {
                Outcome::Deny
            },
        ),
        Err((status, message)) => (
            reply(
                status,
                request_id,
                json!({"error": {"status": status.as_u16(), "message": message}}).to_string(),
            ),
            Outcome::Error,
        ),
    };
    state.counters.record(api, outcome, start.elapsed());
    response
}

/// The body's text, when it came whole, as JSON, in UTF-8.
fn json_text<'b>(
    headers: &HeaderMap,
    body: &'b Result<Bytes, BytesRejection>,
) -> Result<&'b str, (StatusCode, String)> {
    let body = body.as_ref().map_err(|e| (e.status(), e.body_text()))?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err((
            StatusCode::BAD_REQUEST,
            "the body must be sent as Content-Type: application/json".to_owned(),
        ));
    }
    std::str::from_utf8(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: not UTF-8 ({e})"),
        )
    })
}

/// A JSON response, echoing the caller's `X-Request-ID`.
fn reply(status: StatusCode, request_id: Option<&HeaderValue>, body: String) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(id) = request_id {
        response.headers_mut().insert("x-request-id", id.clone());
    }
    response
}

async fn configuration(headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let base = format!("http://{host}");
    let metadata = json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}{EVALUATION}"),
        "access_evaluations_endpoint": format!("{base}{EVALUATIONS}"),
        "search_resource_endpoint": format!("{base}{SEARCH_RESOURCE}"),
    });
    reply(
        StatusCode::OK,
        headers.get("x-request-id"),
        metadata.to_string(),
    )
}
