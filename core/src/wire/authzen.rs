//! OpenID AuthZEN Authorization API 1.0 bodies, decided by the engine (what `arbiter serve`
//! answers over HTTP; the HTTP itself is the server's).
//!
//! A subject or resource `{type, id, properties}` is the Cedar entity `type::"id"`, its
//! `properties` (when given) the entity's attributes for this request, replacing the bundle's
//! entity of that uid; `action.name` is the id of an action of the bundle's action type (its
//! `properties` are not read: no Cedar policy can refer to them, so they cannot change an
//! answer); `context` is the Cedar context. A body that is not a JSON object with the fields the
//! spec requires is an [`AuthzenError`] naming the field (the spec's 400). A request Cedar
//! refuses (an unknown type, a context the schema does not allow) is a deny with the error in
//! the answer's `context`, as is each failed item of a batch.

use serde_json::{json, Map, Value};

use crate::engine::Engine;
use crate::query::Dialect;
use crate::wire::decision::Decision;
use crate::wire::request::RequestParts;

/// An AuthZEN body the API cannot take (the spec's 400 Bad Request), naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthzenError(pub String);

impl AuthzenError {
    fn field(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// An AuthZEN answer: its JSON, and whether it allowed (a batch: every item it answered; a
/// search: some resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzenAnswer {
    /// The response body.
    pub json: String,
    /// Whether it allowed.
    pub allowed: bool,
}

impl AuthzenAnswer {
    fn new(json: &Value, allowed: bool) -> Self {
        Self {
            json: json.to_string(),
            allowed,
        }
    }
}

/// The JSON object a body holds.
fn object(body: &str) -> Result<Map<String, Value>, AuthzenError> {
    match serde_json::from_str(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AuthzenError::field("the body must be a JSON object")),
        Err(e) => Err(AuthzenError::field(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
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
) -> Result<(&'a str, Option<&'a str>, Option<&'a Value>), AuthzenError> {
    let Some(Value::Object(map)) = value else {
        return Err(AuthzenError::field(format!(
            "`{field}` must be an object with `type` and `id`"
        )));
    };
    let text = |key: &str| match map.get(key) {
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        None | Some(Value::Null) => Ok(None),
        Some(_) => Err(AuthzenError::field(format!(
            "`{field}.{key}` must be a string"
        ))),
    };
    let type_name =
        text("type")?.ok_or_else(|| AuthzenError::field(format!("`{field}.type` is missing")))?;
    let id = text("id")?;
    if with_id && id.is_none() {
        return Err(AuthzenError::field(format!("`{field}.id` is missing")));
    }
    let properties = match map.get("properties") {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) => Some(p),
        Some(_) => {
            return Err(AuthzenError::field(format!(
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
    fn new(parts: &Parts<'a>, resource_id: bool) -> Result<Self, AuthzenError> {
        let (subject_type, subject_id, subject_properties) =
            entity(parts.subject, "subject", true)?;
        let (resource_type, id, resource_properties) =
            entity(parts.resource, "resource", resource_id)?;
        let Some(Value::Object(action)) = parts.action else {
            return Err(AuthzenError::field(
                "`action` must be an object with `name`",
            ));
        };
        let Some(Value::String(name)) = action.get("name") else {
            return Err(AuthzenError::field(
                "`action.name` is missing or not a string",
            ));
        };
        let context = match parts.context {
            None | Some(Value::Null) => None,
            Some(c @ Value::Object(_)) => Some(c),
            Some(_) => return Err(AuthzenError::field("`context` must be an object")),
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

    /// The entities the properties make, for a resource of id `resource_id`, as entity JSON.
    fn entities(&self, resource_id: Option<&str>) -> Vec<Value> {
        let entity = |(type_name, id): (&str, &str), attrs: &Value| json!({"uid": {"type": type_name, "id": id}, "attrs": attrs, "parents": []});
        let mut entities = Vec::new();
        if let Some(attrs) = self.subject_properties {
            entities.push(entity(self.subject, attrs));
        }
        if let (Some(id), Some(attrs)) = (resource_id, self.resource_properties) {
            entities.push(entity((self.resource_type, id), attrs));
        }
        entities
    }

    /// The decision for the resource of id `resource_id` (the request's own, by default), or
    /// the error that stands for a deny.
    fn decide(
        &self,
        engine: &Engine,
        action_type: &str,
        resource_id: Option<&str>,
        request_id: Option<&str>,
    ) -> Result<Decision, AuthzenError> {
        let resource_id = resource_id.or(self.resource_id).unwrap_or_default();
        let context = self.context.map(Value::to_string);
        let entities = self.entities(Some(resource_id));
        let entities = (!entities.is_empty()).then(|| Value::Array(entities).to_string());
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
            .map_err(|e| AuthzenError::field(format!("{}: {e}", e.kind())))
    }

    /// The request as query JSON: its resource a type, without an id.
    fn query_json(&self, action_type: &str) -> String {
        json!({
            "principal": {"type": self.subject.0, "id": self.subject.1},
            "action": {"type": action_type, "id": self.action},
            "resource": {"type": self.resource_type},
            "context": self.context.cloned().unwrap_or_else(|| json!({})),
            "entities": self.entities(None),
        })
        .to_string()
    }
}

/// An item of a batch answer: the decision alone, or a deny carrying its error.
fn item(result: &Result<Decision, AuthzenError>) -> Value {
    match result {
        Ok(decision) if decision.errors.is_empty() => json!({"decision": decision.allowed()}),
        Ok(decision) => {
            json!({"decision": decision.allowed(), "context": {"errors": decision.errors}})
        }
        Err(AuthzenError(message)) => {
            json!({"decision": false, "context": {"error": {"status": 400, "message": message}}})
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

/// How a batch stops early.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

impl Engine {
    /// The entity type AuthZEN action names are ids of: the bundle's action type, else `Action`.
    fn authzen_action_type(&self) -> String {
        self.action_type().unwrap_or_else(|| "Action".to_owned())
    }

    /// AuthZEN's Access Evaluation (`POST /access/v1/evaluation`): `{"decision", "context"?}`,
    /// the context holding the determining policies (`reasons`) and any `errors`.
    /// `request_id` (the caller's `X-Request-ID`) names the decision in the decision log.
    pub fn authzen_evaluation(
        &self,
        body: &str,
        request_id: Option<&str>,
    ) -> Result<AuthzenAnswer, AuthzenError> {
        let map = object(body)?;
        self.one_evaluation(&Parts::of(&map), request_id)
    }

    /// A single evaluation's answer: an error for what the spec requires and lacks; a deny
    /// carrying the error for what Cedar refuses.
    fn one_evaluation(
        &self,
        parts: &Parts<'_>,
        request_id: Option<&str>,
    ) -> Result<AuthzenAnswer, AuthzenError> {
        let checked = Checked::new(parts, true)?;
        match checked.decide(self, &self.authzen_action_type(), None, request_id) {
            Ok(decision) => Ok(AuthzenAnswer::new(&single(&decision), decision.allowed())),
            Err(AuthzenError(message)) => Ok(AuthzenAnswer::new(
                &json!({"decision": false, "context": {"error": {"status": 400, "message": message}}}),
                false,
            )),
        }
    }

    /// AuthZEN's Access Evaluations (`POST /access/v1/evaluations`): top-level `subject`,
    /// `action`, `resource` and `context` are defaults, each replaced whole by an item's own;
    /// `options.evaluations_semantic` is `execute_all` (default), `deny_on_first_deny` or
    /// `permit_on_first_permit`. Without items, the answer is a single evaluation's. An item
    /// that cannot be evaluated is a deny with its error, and the others still run.
    pub fn authzen_evaluations(
        &self,
        body: &str,
        request_id: Option<&str>,
    ) -> Result<AuthzenAnswer, AuthzenError> {
        let map = object(body)?;
        let defaults = Parts::of(&map);
        let items = match map.get("evaluations") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(items)) => items.as_slice(),
            Some(_) => return Err(AuthzenError::field("`evaluations` must be an array")),
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
                return Err(AuthzenError::field(format!(
                    "`options.evaluations_semantic` {other} is not execute_all, deny_on_first_deny \
                     or permit_on_first_permit"
                )))
            }
        };
        if items.is_empty() {
            return self.one_evaluation(&defaults, request_id);
        }
        let action_type = self.authzen_action_type();
        let mut answers = Vec::with_capacity(items.len());
        let mut all_allowed = true;
        for item_value in items {
            let result = match item_value {
                Value::Object(item_map) => Checked::new(&defaults.over(item_map), true)
                    .and_then(|checked| checked.decide(self, &action_type, None, request_id)),
                _ => Err(AuthzenError::field("an evaluation must be an object")),
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
        Ok(AuthzenAnswer::new(
            &json!({"evaluations": answers}),
            all_allowed,
        ))
    }

    /// AuthZEN's Resource Search (`POST /access/v1/search/resource`; the resource has a
    /// `type` and no `id`). With `"resources": [...]` (ids, or objects with `id`), the
    /// candidates the subject may act on, in order. Without, `results` is empty and
    /// `context.query` is the list query's filter (`{"kind", "sql", "params"}`, for PostgreSQL,
    /// or SQLite with `"options": {"dialect": "sqlite"}`), or `context.error` when the bundle's
    /// mapping cannot express it.
    pub fn authzen_search_resource(
        &self,
        body: &str,
        request_id: Option<&str>,
    ) -> Result<AuthzenAnswer, AuthzenError> {
        let map = object(body)?;
        let checked = Checked::new(&Parts::of(&map), false)?;
        let action_type = self.authzen_action_type();
        match map.get("resources") {
            Some(Value::Array(candidates)) => {
                let mut results = Vec::new();
                for candidate in candidates {
                    let id = match candidate {
                        Value::String(id) => Some(id.as_str()),
                        Value::Object(c) => c.get("id").and_then(Value::as_str),
                        _ => None,
                    }
                    .ok_or_else(|| {
                        AuthzenError::field(
                            "each of `resources` must be an id or an object with `id`",
                        )
                    })?;
                    let allowed = checked
                        .decide(self, &action_type, Some(id), request_id)
                        .is_ok_and(|d| d.allowed());
                    if allowed {
                        results.push(json!({"type": checked.resource_type, "id": id}));
                    }
                }
                let allowed = !results.is_empty();
                Ok(AuthzenAnswer::new(&json!({"results": results}), allowed))
            }
            Some(_) => Err(AuthzenError::field(
                "`resources` must be an array of candidate ids",
            )),
            None => {
                let dialect = match map
                    .get("options")
                    .and_then(|o| o.get("dialect"))
                    .and_then(Value::as_str)
                {
                    None | Some("postgres") => Dialect::Postgres,
                    Some("sqlite") => Dialect::Sqlite,
                    Some(other) => {
                        return Err(AuthzenError::field(format!(
                            "`options.dialect` `{other}` is not postgres or sqlite"
                        )))
                    }
                };
                let answer = match self.query_json(&checked.query_json(&action_type), dialect) {
                    Ok(query) => json!({"results": [], "context": {"query":
                        serde_json::from_str::<Value>(&query).unwrap_or(Value::Null)}}),
                    Err(e) => json!({"results": [], "context": {"error":
                        {"status": 400, "kind": e.kind(), "message": e.to_string()}}}),
                };
                Ok(AuthzenAnswer::new(&answer, false))
            }
        }
    }
}
