//! Envoy's external authorization: `envoy.service.auth.v3.Authorization/Check`, each
//! `CheckRequest` decided through the bundle's `http.json` by `Engine::authorize_http`.
//!
//! Every answer is a `CheckResponse` with a status: OK with the headers `http.json` names
//! (overwriting any a client sent, and removing those this request has no value for), or
//! PERMISSION_DENIED with a 403 and a JSON body naming the reasons. A request the bundle cannot
//! take, a token that fails, a server whose bundle has not loaded: each is a deny, never a gRPC
//! error that Envoy's `failure_mode_allow` would turn into an allow.

use std::sync::Arc;
use std::time::Instant;

use arbiter::{HttpError, HttpRequest};
use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue,
    HeaderValueOption, HttpResponse, HttpStatus, HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::google::rpc::Status;
use prost::Message;

pub(crate) use envoy_types::ext_authz::v3::pb::{Authorization, AuthorizationServer};

use crate::ops::{Api, Outcome};
use crate::State;

/// gRPC's codes for the two answers.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;

/// Messages past this size are refused by gRPC itself before they are read; below it, one
/// larger than `--max-request-bytes` is read and denied.
const DECODE_LIMIT: usize = 64 << 20;

/// The `Authorization` service.
pub(crate) struct Check(Arc<State>);

/// The service, ready to serve.
pub(crate) fn service(state: Arc<State>) -> AuthorizationServer<Check> {
    AuthorizationServer::new(Check(state)).max_decoding_message_size(DECODE_LIMIT)
}

#[tonic::async_trait]
impl Authorization for Check {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let start = Instant::now();
        let _permit = self.0.permits.acquire().await;
        let (response, outcome) = check(&self.0, request.get_ref());
        self.0
            .counters
            .record(Api::ExtAuthz, outcome, start.elapsed());
        Ok(tonic::Response::new(response))
    }
}

/// The answer to one `CheckRequest`.
pub(crate) fn check(state: &State, request: &CheckRequest) -> (CheckResponse, Outcome) {
    let Some(engine) = state.engine() else {
        return refused(&HttpError::new(
            "not_ready",
            "the bundle has not loaded yet",
        ));
    };
    let size = request.encoded_len();
    if size > state.max_request_bytes {
        return refused(&HttpError::new(
            "too_large",
            format!(
                "the CheckRequest is {size} bytes, over the limit of {}",
                state.max_request_bytes
            ),
        ));
    }
    let attributes = request.attributes.as_ref();
    let Some(http) = attributes
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
    else {
        return refused(&HttpError::new(
            "bad_request",
            "the CheckRequest has no attributes.request.http",
        ));
    };
    // Envoy sends headers in `headers`, or in `header_map` when told to keep raw values.
    let mut headers: Vec<(&str, &str)> = http
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if let Some(map) = &http.header_map {
        for h in &map.headers {
            let value = match std::str::from_utf8(&h.raw_value) {
                Ok(raw) if h.value.is_empty() => raw,
                _ => h.value.as_str(),
            };
            headers.push((h.key.as_str(), value));
        }
    }
    let mut mapped = HttpRequest {
        method: &http.method,
        path: &http.path,
        headers: &headers,
        peer: attributes
            .and_then(|a| a.source.as_ref())
            .map(|p| p.principal.as_str()),
        request_id: None,
    };
    mapped.request_id = mapped
        .header("x-request-id")
        .or(Some(http.id.as_str()))
        .filter(|id| !id.is_empty());
    match engine.authorize_http(&mapped) {
        Ok(answer) if answer.decision.allowed() => (allowed(answer.headers), Outcome::Allow),
        Ok(answer) => (
            denied(
                answer
                    .decision
                    .errors
                    .first()
                    .map_or("denied by policy", |e| e.kind.as_str()),
                answer.decision.to_json(),
            ),
            Outcome::Deny,
        ),
        Err(e) => refused(&e),
    }
}

fn allowed(headers: Vec<(String, Option<String>)>) -> CheckResponse {
    let mut ok = OkHttpResponse::default();
    for (key, value) in headers {
        match value {
            Some(value) => ok.headers.push(HeaderValueOption {
                header: Some(HeaderValue {
                    key,
                    value,
                    raw_value: Vec::new(),
                }),
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                ..HeaderValueOption::default()
            }),
            None => ok.headers_to_remove.push(key),
        }
    }
    CheckResponse {
        status: Some(Status {
            code: OK,
            ..Status::default()
        }),
        http_response: Some(HttpResponse::OkResponse(ok)),
        ..CheckResponse::default()
    }
}

/// A deny for a request the mapping refused, its body in the decision JSON's shape.
fn refused(error: &HttpError) -> (CheckResponse, Outcome) {
    let body = serde_json::json!({
        "decision": "deny", "reasons": [],
        "errors": [{"kind": error.kind, "message": error.message}],
    });
    (denied(error.kind, body.to_string()), Outcome::Deny)
}

fn denied(reason: &str, body: String) -> CheckResponse {
    CheckResponse {
        status: Some(Status {
            code: PERMISSION_DENIED,
            message: reason.to_owned(),
            ..Status::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: HttpStatusCode::Forbidden as i32,
            }),
            headers: vec![HeaderValueOption {
                header: Some(HeaderValue {
                    key: "content-type".to_owned(),
                    value: "application/json".to_owned(),
                    raw_value: Vec::new(),
                }),
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                ..HeaderValueOption::default()
            }],
            body,
        })),
        ..CheckResponse::default()
    }
}
