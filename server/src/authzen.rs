//! OpenID AuthZEN Authorization API 1.0 over HTTP.
//!
//! A subject or resource `{type, id, properties}` is the Cedar entity `type::"id"`, its
//! `properties` (when given) the entity's attributes for this request, layered over the bundle's
//! entity of that uid; `action.name` is the id of an action of the bundle's action type (its
//! `properties` are not read: no Cedar policy can refer to them, so they cannot change an
//! answer). A body
//! that is not a JSON object with the fields the spec requires is a 400 naming the field; a
//! request Cedar refuses (an unknown type, a context the schema does not allow) is a deny with
//! the error in the decision's `context`, as is each failed item of a batch.

use std::sync::Arc;
use std::time::Instant;

use arbiter::{Decision, Dialect, Engine, RequestParts};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State as Shared};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::ops::{Api, Outcome};
use crate::State;

const EVALUATION: &str = "/access/v1/evaluation";
const EVALUATIONS: &str = "/access/v1/evaluations";
const SEARCH_RESOURCE: &str = "/access/v1/search/resource";
const CONFIGURATION: &str = "/.well-known/authzen-configuration";

/// The AuthZEN routes.
pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route(EVALUATION, post(evaluation))
        .route(EVALUATIONS, post(evaluations))
        .route(SEARCH_RESOURCE, post(search_resource))
        .route(CONFIGURATION, get(configuration))
        .layer(DefaultBodyLimit::max(state.max_request_bytes))
        .with_state(state)
}

/// A request the API cannot take: its HTTP status and a message naming the problem.
struct BadInput(StatusCode, String);

impl BadInput {
    fn field(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }
}

/// The JSON object a POST carries, or why not.
fn body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Map<String, Value>, BadInput> {
    let body = body.map_err(|e| BadInput(e.status(), e.body_text()))?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(BadInput::field(
            "the body must be sent as Content-Type: application/json",
        ));
    }
    match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(BadInput::field("the body must be a JSON object")),
        Err(e) => Err(BadInput::field(format!("the body is not valid JSON: {e}"))),
    }
}

/// A JSON response, echoing the caller's `X-Request-ID`.
fn reply(status: StatusCode, request_id: Option<&HeaderValue>, body: &Value) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(id) = request_id {
        response.headers_mut().insert("x-request-id", id.clone());
    }
    response
}

fn bad_input(request_id: Option<&HeaderValue>, BadInput(status, message): BadInput) -> Response {
    reply(
        status,
        request_id,
        &json!({"error": {"status": status.as_u16(), "message": message}}),
    )
}

/// One evaluation's four parts, each taken from the item or else the batch's defaults.
struct Parts<'a> {
    subject: Option<&'a Value>,
    action: Option<&'a Value>,
    resource: Option<&'a Value>,
    context: Option<&'a Value>,
}

impl<'a> Parts<'a> {
    fn of(map: &'a Map<String, Value>) -> Self {
        Self {
            subject: map.get("subject"),
            action: map.get("action"),
            resource: map.get("resource"),
            context: map.get("context"),
        }
    }

    /// `item`'s parts, each it lacks taken whole from `self` (no merging within a part).
    fn over(&self, item: &'a Map<String, Value>) -> Self {
        let own = Self::of(item);
        Self {
            subject: own.subject.or(self.subject),
            action: own.action.or(self.action),
            resource: own.resource.or(self.resource),
            context: own.context.or(self.context),
        }
    }
}

/// `{type, id}` of a subject or resource, and its properties.
fn entity<'a>(
    value: Option<&'a Value>,
    field: &str,
    with_id: bool,
) -> Result<(&'a str, Option<&'a str>, Option<&'a Value>), BadInput> {
    let Some(Value::Object(map)) = value else {
        return Err(BadInput::field(format!(
            "`{field}` must be an object with `type` and `id`"
        )));
    };
    let text = |key: &str| match map.get(key) {
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        None | Some(Value::Null) => Ok(None),
        Some(_) => Err(BadInput::field(format!("`{field}.{key}` must be a string"))),
    };
    let type_name =
        text("type")?.ok_or_else(|| BadInput::field(format!("`{field}.type` is missing")))?;
    let id = text("id")?;
    if with_id && id.is_none() {
        return Err(BadInput::field(format!("`{field}.id` is missing")));
    }
    let properties = match map.get("properties") {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) => Some(p),
        Some(_) => {
            return Err(BadInput::field(format!(
                "`{field}.properties` must be an object"
            )))
        }
    };
    Ok((type_name, id, properties))
}

/// One evaluation's request, checked for the fields the spec requires.
struct Checked<'a> {
    subject: (&'a str, &'a str),
    subject_properties: Option<&'a Value>,
    action: &'a str,
    resource_type: &'a str,
    resource_id: Option<&'a str>,
    resource_properties: Option<&'a Value>,
    context: Option<&'a Value>,
}

impl<'a> Checked<'a> {
    /// `parts` checked; the resource's id is required when `resource_id`.
    fn new(parts: &Parts<'a>, resource_id: bool) -> Result<Self, BadInput> {
        let (subject_type, subject_id, subject_properties) =
            entity(parts.subject, "subject", true)?;
        let (resource_type, id, resource_properties) =
            entity(parts.resource, "resource", resource_id)?;
        let Some(Value::Object(action)) = parts.action else {
            return Err(BadInput::field("`action` must be an object with `name`"));
        };
        let Some(Value::String(name)) = action.get("name") else {
            return Err(BadInput::field("`action.name` is missing or not a string"));
        };
        let context = match parts.context {
            None | Some(Value::Null) => None,
            Some(c @ Value::Object(_)) => Some(c),
            Some(_) => return Err(BadInput::field("`context` must be an object")),
        };
        Ok(Self {
            subject: (subject_type, subject_id.unwrap_or_default()),
            subject_properties,
            action: name,
            resource_type,
            resource_id: id,
            resource_properties,
            context,
        })
    }

    /// The entities the properties make, for a resource of id `resource_id`, as JSON.
    fn entities(&self, resource_id: Option<&str>) -> Option<String> {
        let entity = |(type_name, id): (&str, &str), attrs: &Value| json!({"uid": {"type": type_name, "id": id}, "attrs": attrs, "parents": []});
        let mut entities = Vec::new();
        if let Some(attrs) = self.subject_properties {
            entities.push(entity(self.subject, attrs));
        }
        if let (Some(id), Some(attrs)) = (resource_id, self.resource_properties) {
            entities.push(entity((self.resource_type, id), attrs));
        }
        (!entities.is_empty()).then(|| Value::Array(entities).to_string())
    }

    /// The decision for the resource of id `resource_id` (the request's own, by default), or
    /// the error that stands for a deny.
    fn decide(
        &self,
        engine: &Engine,
        action_type: &str,
        resource_id: Option<&str>,
        request_id: Option<&str>,
    ) -> Result<Decision, BadInput> {
        let resource_id = resource_id.or(self.resource_id).unwrap_or_default();
        let context = self.context.map(Value::to_string);
        let entities = self.entities(Some(resource_id));
        engine
            .authorize_parts(&RequestParts {
                principal: Some(self.subject),
                action: (action_type, self.action),
                resource: (self.resource_type, resource_id),
                context_json: context.as_deref(),
                entities_json: entities.as_deref(),
                token: None,
                request_id,
            })
            .map_err(|e| BadInput::field(format!("{}: {e}", e.kind())))
    }

    /// The request as query JSON: its resource a type, without an id.
    fn query_json(&self, action_type: &str) -> String {
        let mut request = json!({
            "principal": {"type": self.subject.0, "id": self.subject.1},
            "action": {"type": action_type, "id": self.action},
            "resource": {"type": self.resource_type},
            "context": self.context.cloned().unwrap_or_else(|| json!({})),
        });
        if let Some(entities) = self.entities(None) {
            request["entities"] = serde_json::from_str(&entities).unwrap_or_default();
        }
        request.to_string()
    }
}

/// One evaluation: the decision, or the error that stands for a deny.
fn evaluate(
    engine: &Engine,
    state: &State,
    parts: &Parts<'_>,
    request_id: Option<&str>,
) -> Result<Decision, BadInput> {
    Checked::new(parts, true)?.decide(engine, &state.action_type(), None, request_id)
}

/// An item of a batch answer: the decision alone, or a deny carrying its error.
fn item(result: &Result<Decision, BadInput>) -> Value {
    match result {
        Ok(decision) if decision.errors.is_empty() => json!({"decision": decision.allowed()}),
        Ok(decision) => {
            json!({"decision": decision.allowed(), "context": {"errors": decision.errors}})
        }
        Err(BadInput(status, message)) => {
            json!({"decision": false, "context": {"error": {"status": status.as_u16(), "message": message}}})
        }
    }
}

/// The single evaluation's answer: the decision, with the determining policies and any errors.
fn single(decision: &Decision) -> Value {
    let mut context = Map::new();
    if !decision.reasons.is_empty() {
        context.insert("reasons".into(), json!(decision.reasons));
    }
    if !decision.errors.is_empty() {
        context.insert("errors".into(), json!(decision.errors));
    }
    let mut answer = json!({"decision": decision.allowed()});
    if !context.is_empty() {
        answer["context"] = Value::Object(context);
    }
    answer
}

fn outcome_of(allowed: bool) -> Outcome {
    if allowed {
        Outcome::Allow
    } else {
        Outcome::Deny
    }
}

/// Runs `answer` for a ready server under the concurrency limit, counting it for `api`.
async fn answered(
    state: &State,
    api: Api,
    headers: &HeaderMap,
    answer: impl FnOnce(&Engine, Option<&str>) -> Result<(Value, Outcome), BadInput>,
) -> Response {
    let start = Instant::now();
    let request_id = headers.get("x-request-id");
    let _permit = state.permits.acquire().await;
    let (response, outcome) = match state.engine() {
        None => (
            bad_input(
                request_id,
                BadInput(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the bundle has not loaded yet".into(),
                ),
            ),
            Outcome::Error,
        ),
        Some(engine) => match answer(engine, request_id.and_then(|v| v.to_str().ok())) {
            Ok((body, outcome)) => (reply(StatusCode::OK, request_id, &body), outcome),
            Err(bad) => (bad_input(request_id, bad), Outcome::Error),
        },
    };
    state.counters.record(api, outcome, start.elapsed());
    response
}

async fn evaluation(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = body(&headers, raw);
    answered(&state, Api::Evaluation, &headers, |engine, request_id| {
        let map = parsed?;
        one_evaluation(engine, &state, &Parts::of(&map), request_id)
    })
    .await
}

/// A single evaluation's answer: a 400 for what the spec requires and lacks; a deny carrying
/// the error for what Cedar refuses.
fn one_evaluation(
    engine: &Engine,
    state: &State,
    parts: &Parts<'_>,
    request_id: Option<&str>,
) -> Result<(Value, Outcome), BadInput> {
    let checked = Checked::new(parts, true)?;
    match checked.decide(engine, &state.action_type(), None, request_id) {
        Ok(decision) => Ok((single(&decision), outcome_of(decision.allowed()))),
        Err(BadInput(_, message)) => Ok((
            json!({"decision": false, "context": {"error": {"status": 400, "message": message}}}),
            Outcome::Deny,
        )),
    }
}

/// How a batch stops early.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

async fn evaluations(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = body(&headers, raw);
    answered(&state, Api::Evaluations, &headers, |engine, request_id| {
        let map = parsed?;
        let defaults = Parts::of(&map);
        let items = match map.get("evaluations") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(items)) => items.as_slice(),
            Some(_) => return Err(BadInput::field("`evaluations` must be an array")),
        };
        let semantic = match map
            .get("options")
            .and_then(|o| o.get("evaluations_semantic"))
        {
            None | Some(Value::Null) => Semantic::ExecuteAll,
            Some(Value::String(s)) if s == "execute_all" => Semantic::ExecuteAll,
            Some(Value::String(s)) if s == "deny_on_first_deny" => Semantic::DenyOnFirstDeny,
            Some(Value::String(s)) if s == "permit_on_first_permit" => {
                Semantic::PermitOnFirstPermit
            }
            Some(other) => {
                return Err(BadInput::field(format!(
                    "`options.evaluations_semantic` {other} is not execute_all, deny_on_first_deny \
                     or permit_on_first_permit"
                )))
            }
        };
        // No items: the request is a single evaluation, and so is its answer.
        if items.is_empty() {
            return one_evaluation(engine, &state, &defaults, request_id);
        }
        let mut answers = Vec::with_capacity(items.len());
        let mut all_allowed = true;
        for item_value in items {
            let result = match item_value {
                Value::Object(item_map) => {
                    evaluate(engine, &state, &defaults.over(item_map), request_id)
                }
                _ => Err(BadInput::field("an evaluation must be an object")),
            };
            let allowed = matches!(&result, Ok(d) if d.allowed());
            all_allowed &= allowed;
            let mut answer = item(&result);
            let stop = match semantic {
                Semantic::ExecuteAll => false,
                Semantic::DenyOnFirstDeny => !allowed,
                Semantic::PermitOnFirstPermit => allowed,
            };
            if stop && semantic == Semantic::DenyOnFirstDeny && result.is_ok() {
                answer["context"] = json!({"code": "200", "reason": "deny_on_first_deny"});
            }
            answers.push(answer);
            if stop {
                break;
            }
        }
        Ok((json!({"evaluations": answers}), outcome_of(all_allowed)))
    })
    .await
}

async fn search_resource(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = body(&headers, raw);
    answered(&state, Api::Search, &headers, |engine, request_id| {
        let map = parsed?;
        let parts = Parts::of(&map);
        let checked = Checked::new(&parts, false)?;
        let action_type = state.action_type();
        match map.get("resources") {
            // Candidates: those the subject may act on, in the order given.
            Some(Value::Array(candidates)) => {
                let mut results = Vec::new();
                for candidate in candidates {
                    let id = match candidate {
                        Value::String(id) => Some(id.as_str()),
                        Value::Object(c) => c.get("id").and_then(Value::as_str),
                        _ => None,
                    }
                    .ok_or_else(|| {
                        BadInput::field("each of `resources` must be an id or an object with `id`")
                    })?;
                    let allowed = checked
                        .decide(engine, &action_type, Some(id), request_id)
                        .is_ok_and(|d| d.allowed());
                    if allowed {
                        results.push(json!({"type": checked.resource_type, "id": id}));
                    }
                }
                let outcome = outcome_of(!results.is_empty());
                Ok((json!({"results": results}), outcome))
            }
            Some(_) => Err(BadInput::field("`resources` must be an array of candidate ids")),
            // No candidates: the filter that selects them, as SQL for the host's database.
            None => {
                let dialect = match map.get("options").and_then(|o| o.get("dialect")).and_then(Value::as_str) {
                    None | Some("postgres") => Dialect::Postgres,
                    Some("sqlite") => Dialect::Sqlite,
                    Some(other) => return Err(BadInput::field(format!("`options.dialect` `{other}` is not postgres or sqlite"))),
                };
                let answer = match engine.query_json(&checked.query_json(&action_type), dialect) {
                    Ok(query) => json!({"results": [], "context": {"query": serde_json::from_str::<Value>(&query).unwrap_or(Value::Null)}}),
                    Err(e) => json!({"results": [], "context": {"error": {"status": 400, "kind": e.kind(), "message": e.to_string()}}}),
                };
                Ok((answer, Outcome::Deny))
            }
        }
    })
    .await
}

async fn configuration(headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let base = format!("http://{host}");
    reply(
        StatusCode::OK,
        headers.get("x-request-id"),
        &json!({
            "policy_decision_point": base,
            "access_evaluation_endpoint": format!("{base}{EVALUATION}"),
            "access_evaluations_endpoint": format!("{base}{EVALUATIONS}"),
            "search_resource_endpoint": format!("{base}{SEARCH_RESOURCE}"),
        }),
    )
}
