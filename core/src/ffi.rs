//! What every language binding needs beside the [`Engine`], in one place (in the spirit of
//! cedar-policy's own `ffi` module), so that a binding only converts its language's values and
//! errors: panic containment, the buffer a call's requests are read into, the decision calls
//! that hand each call's decision log events back with its answer, and the batch call that
//! keeps each element's error in place.
//!
//! A binding reads a call's requests into one [`RequestText`] (every entity reference, token
//! and id copied in once, contexts and entities written as JSON with the engine's nesting
//! limit), then decides [`SpannedRequest::parts`] of it, without touching a host object.
//!
//! A host that may only run its own code once a call has returned (Ruby without the GVL,
//! Python without the GIL) sets its decision log with [`log_to_caller`] and decides through
//! this module's calls: each answers with the events of its own decisions ([`Logged`]), for the
//! binding to hand to the host's sink. Nothing is kept between calls or on a thread.

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::Serialize;

use crate::engine::limits::Limits;
use crate::engine::Engine;
use crate::operations::decision_log::{DecisionLogOptions, Delivery, InvalidOptions};
use crate::query::SqlQuery;
use crate::wire::decision::Decision;
use crate::wire::error::{CallError, RequestError};
use crate::wire::request::RequestParts;

/// Runs `f`, turning a panic into a [`CallError`] of kind `internal`: never an allow, never an
/// unwind into the host.
pub fn guarded<T>(f: impl FnOnce() -> Result<T, CallError>) -> Result<T, CallError> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(CallError::internal("Arbiter panicked; nothing was decided")))
}

/// Runs `f` (a bundle load) on a short-lived thread of its own and waits for it; runs it on the
/// calling thread if no thread can be started. glibc's malloc gives that thread an arena of its
/// own, so the loaded engine and the load's freed temporaries sit apart from the host's heap: a
/// preforked worker whose host allocates and frees as it runs (Ruby's GC, Python's) then never
/// writes to the pages the engine shares with its parent (`make fork-test` measures it). Only
/// the bindings call it; the engine starts no thread, and none outlives this call. A panic in
/// `f` continues on the calling thread.
pub fn in_own_arena<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let f = std::sync::Mutex::new(Some(f));
    let run = || {
        f.lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .map(|f| f())
    };
    let ran = std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("arbiter-load".into())
            .spawn_scoped(scope, run);
        thread.ok().map(|t| t.join())
    });
    match ran {
        Some(Ok(value)) => value.expect("the thread ran `f`"),
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => run().expect("no thread started, so `f` is still here"),
    }
}

/// A call's answer, with the decision log events its decisions gave (oldest first; none while
/// the engine's log is not set with [`log_to_caller`]).
#[derive(Debug)]
#[must_use = "the events are the host's to log"]
pub struct Logged<T> {
    /// What the call answered.
    pub answer: T,
    /// One JSON event per decision logged.
    pub events: Vec<String>,
}

/// Logs `engine`'s decisions from now on, as [`Engine::set_decision_log`] does, but hands each
/// event back with the answer of the call through this module that made the decision. A
/// decision made by a call outside this module has no one to take its event: it is counted as
/// `unclaimed` in the metrics.
pub fn log_to_caller(engine: &Engine, options: DecisionLogOptions) -> Result<(), InvalidOptions> {
    engine.log_to(options, Delivery::Caller)
}

/// Runs one of the engine's decision calls with somewhere for its events.
fn logged<T>(call: impl FnOnce(Option<&mut Vec<String>>) -> T) -> Logged<T> {
    let mut events = Vec::new();
    let answer = call(Some(&mut events));
    Logged { answer, events }
}

/// Answers a list query given as request JSON whose `resource` names a `type` and no `id`, in
/// the dialect named `postgres` or `sqlite`.
pub fn query(engine: &Engine, request: &str, dialect: &str) -> Result<SqlQuery, CallError> {
    let dialect = crate::Dialect::parse(dialect).ok_or_else(|| {
        CallError::new(
            crate::ErrorKind::InvalidArgument,
            format!("dialect `{dialect}` is not `postgres` or `sqlite`"),
        )
    })?;
    Ok(engine.query_sql(&engine.read_query(request)?, dialect)?)
}

/// [`query`]'s answer as `{"kind", "sql", "params"}` JSON (what `arbiter query` prints).
pub fn query_json(engine: &Engine, request: &str, dialect: &str) -> Result<String, CallError> {
    query(engine, request, dialect).map(|q| q.to_json())
}

/// [`Engine::authorize_parts`], with its event.
pub fn authorize_parts(
    engine: &Engine,
    parts: &RequestParts<'_>,
) -> Logged<Result<Decision, RequestError>> {
    logged(|held| engine.decide_parts(parts, held))
}

/// [`Engine::authorize_json`], with its event.
pub fn authorize_json(engine: &Engine, request: &str) -> Logged<Result<String, RequestError>> {
    logged(|held| engine.decide_json(request, held).map(|d| d.to_json()))
}

/// [`Engine::authorize_json_batch`], with its events.
pub fn authorize_json_batch(
    engine: &Engine,
    requests: &str,
) -> Logged<Result<String, RequestError>> {
    logged(|held| engine.decide_json_batch(requests, held))
}

/// Decides a batch a binding read element by element, against one bundle version: each
/// request read is decided (a context given twice is read once, a request given twice decided
/// once, as [`Engine::authorize_parts_batch`] does), each element that could not be read keeps
/// its error, in place.
pub fn authorize_read_batch(
    engine: &Engine,
    items: &[Result<RequestParts<'_>, CallError>],
) -> Logged<Vec<Result<Decision, CallError>>> {
    logged(|held| engine.decide_read_batch(items, held))
}

/// Where a host value serializer is in the value it writes (see [`RequestText::push_host_json`]):
/// its depth, under the engine's `max_json_depth`.
#[derive(Debug, Clone, Copy)]
pub struct Depth {
    depth: usize,
    max: usize,
}

impl Depth {
    /// The depth of a value inside this one.
    pub fn deeper(self) -> Self {
        Self {
            depth: self.depth + 1,
            ..self
        }
    }

    /// Refuses a value nested deeper than the engine's limit, so that a self-containing Hash or
    /// dict never recurses forever.
    pub fn check<E: serde::ser::Error>(self) -> Result<(), E> {
        match self.depth > self.max {
            true => Err(E::custom(format_args!(
                "nested deeper than {} levels (max_json_depth)",
                self.max
            ))),
            false => Ok(()),
        }
    }
}

/// A range of a [`RequestText`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: usize,
    end: usize,
}

/// The text of a call's requests, copied out of a host language's objects into one buffer that
/// all the call's requests share: reading a request allocates nothing of its own, and deciding
/// (without the host's lock) reads no host object.
#[derive(Debug)]
pub struct RequestText {
    text: String,
    /// Scratch space for writing JSON.
    json: Vec<u8>,
    max_json_depth: usize,
}

impl RequestText {
    /// An empty buffer for requests to `engine`, whose nesting limit JSON written here keeps.
    pub fn new(engine: &Engine) -> Self {
        Self::with_limits(&engine.limits())
    }

    /// An empty buffer whose JSON keeps `limits`' nesting limit.
    fn with_limits(limits: &Limits) -> Self {
        Self {
            text: String::new(),
            json: Vec::new(),
            max_json_depth: limits.max_json_depth,
        }
    }

    /// Copies `text` in.
    pub fn push(&mut self, text: &str) -> Span {
        let start = self.text.len();
        self.text.push_str(text);
        self.since(start)
    }

    /// Writes a host value as JSON: `serializer` wraps it, given the top [`Depth`], which the
    /// wrapper checks at every value and makes [`Depth::deeper`] for values inside it; `field`
    /// names it in the error of a value that is not JSON-like or too deep.
    pub fn push_host_json<T: Serialize>(
        &mut self,
        field: &str,
        serializer: impl FnOnce(Depth) -> T,
    ) -> Result<Span, CallError> {
        let top = Depth {
            depth: 0,
            max: self.max_json_depth,
        };
        self.push_json(field, &serializer(top))
    }

    /// Writes a value as JSON; `name` names it in the error of a value that is not JSON-like.
    fn push_json(&mut self, name: &str, value: &impl Serialize) -> Result<Span, CallError> {
        self.json.clear();
        serde_json::to_writer(&mut self.json, value)
            .map_err(|e| CallError::malformed(format!("`{name}` is not JSON-like: {e}")))?;
        let json = std::str::from_utf8(&self.json)
            .map_err(|_| CallError::internal("JSON written from host values is not UTF-8"))?;
        let start = self.text.len();
        self.text.push_str(json);
        Ok(self.since(start))
    }

    /// The text of `span`.
    pub fn get(&self, span: Span) -> &str {
        &self.text[span.start..span.end]
    }

    fn since(&self, start: usize) -> Span {
        Span {
            start,
            end: self.text.len(),
        }
    }
}

/// The fields of a request, in the order of `authorize`'s keywords (and of
/// [`RequestText::read_request`]'s argument).
pub const REQUEST_FIELDS: [&str; 7] = [
    "principal",
    "action",
    "resource",
    "context",
    "entities",
    "token",
    "request_id",
];

/// A value of a binding's language that a request's field holds, read into a
/// [`RequestText`] in the shape the field takes. Each error names `field`.
pub trait HostValue {
    /// An entity reference, `{type, id}`: its type and id copied in.
    fn entity_ref(&self, text: &mut RequestText, field: &str) -> Result<(Span, Span), CallError>;
    /// A JSON-like value (a context, a list of entities), written as JSON (see
    /// [`RequestText::push_host_json`]).
    fn json(&self, text: &mut RequestText, field: &str) -> Result<Span, CallError>;
    /// A string (a token, a request id), copied in.
    fn string(&self, text: &mut RequestText, field: &str) -> Result<Span, CallError>;
}

impl RequestText {
    /// Reads a request's fields, given in the order of [`REQUEST_FIELDS`] (`None` for one left
    /// out): `action` and `resource` are required.
    pub fn read_request<V: HostValue>(
        &mut self,
        fields: [Option<V>; 7],
    ) -> Result<SpannedRequest, CallError> {
        let [principal, action, resource, context, entities, token, request_id] = fields;
        let [principal_f, action_f, resource_f, context_f, entities_f, token_f, request_id_f] =
            REQUEST_FIELDS;
        let required = |text: &mut Self, field: &str, value: Option<V>| match value {
            Some(value) => value.entity_ref(text, field),
            None => Err(CallError::malformed(format!("`{field}` is required"))),
        };
        Ok(SpannedRequest {
            principal: principal
                .map(|v| v.entity_ref(self, principal_f))
                .transpose()?,
            action: required(self, action_f, action)?,
            resource: required(self, resource_f, resource)?,
            context: context.map(|v| v.json(self, context_f)).transpose()?,
            entities: entities.map(|v| v.json(self, entities_f)).transpose()?,
            token: token.map(|v| v.string(self, token_f)).transpose()?,
            request_id: request_id
                .map(|v| v.string(self, request_id_f))
                .transpose()?,
        })
    }
}

/// A request read into a [`RequestText`]: where each of its parts is.
#[derive(Debug, Clone, Copy)]
pub struct SpannedRequest {
    /// `(type, id)` of the principal, when given.
    pub principal: Option<(Span, Span)>,
    /// `(type, id)` of the action.
    pub action: (Span, Span),
    /// `(type, id)` of the resource.
    pub resource: (Span, Span),
    /// The context as JSON, when given.
    pub context: Option<Span>,
    /// The request's entities as a JSON array, when given.
    pub entities: Option<Span>,
    /// The token, when given.
    pub token: Option<Span>,
    /// The host's request id, when given.
    pub request_id: Option<Span>,
}

impl SpannedRequest {
    /// The request as parts borrowed from `text`.
    pub fn parts<'t>(&self, text: &'t RequestText) -> RequestParts<'t> {
        let pair = |(t, i): (Span, Span)| (text.get(t), text.get(i));
        let span = |s: Option<Span>| s.map(|s| text.get(s));
        RequestParts {
            principal: self.principal.map(pair),
            action: pair(self.action),
            resource: pair(self.resource),
            context_json: span(self.context),
            entities_json: span(self.entities),
            token: span(self.token),
            request_id: span(self.request_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_apart_runs_on_a_thread_of_its_own_and_its_panic_comes_back() {
        let caller = std::thread::current().id();
        let (thread, name) = in_own_arena(|| {
            let me = std::thread::current();
            (me.id(), me.name().map(str::to_owned))
        });
        assert_ne!(thread, caller);
        assert_eq!(name.as_deref(), Some("arbiter-load"));
        let engine = in_own_arena(Engine::gitlab_default).unwrap();
        assert!(engine.info().entities > 0);
        let panicked = catch_unwind(|| in_own_arena(|| panic!("in the load")));
        let payload = panicked.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"in the load"));
    }

    #[test]
    fn requests_read_into_one_text_give_their_parts_back() {
        let mut text = RequestText::with_limits(&Limits::default());
        let (user, alice) = (text.push("User"), text.push("alice"));
        let read = text.push("read");
        let context = text
            .push_json("context", &serde_json::json!({"n": 1}))
            .unwrap();
        let request = SpannedRequest {
            principal: Some((user, alice)),
            action: (text.push("Action"), read),
            resource: (user, alice),
            context: Some(context),
            entities: None,
            token: None,
            request_id: None,
        };
        let parts = request.parts(&text);
        assert_eq!(parts.principal, Some(("User", "alice")));
        assert_eq!(parts.action, ("Action", "read"));
        assert_eq!(parts.context_json, Some(r#"{"n":1}"#));
        // The engine's limit (32 by default) reaches the serializer: 32 levels in, and no more.
        let value = text.push_host_json("v", |depth| {
            let at_limit = (0..32).fold(depth, |d, _| d.deeper());
            assert!(at_limit.check::<serde_json::Error>().is_ok());
            let past: serde_json::Error = at_limit.deeper().check().unwrap_err();
            assert!(
                past.to_string().contains("32 levels (max_json_depth)"),
                "{past}"
            );
            1
        });
        assert_eq!(text.get(value.unwrap()), "1");
    }

    /// A host whose values are JSON values.
    struct Json(serde_json::Value);

    impl HostValue for Json {
        fn entity_ref(
            &self,
            text: &mut RequestText,
            field: &str,
        ) -> Result<(Span, Span), CallError> {
            match (self.0["type"].as_str(), self.0["id"].as_str()) {
                (Some(t), Some(id)) => Ok((text.push(t), text.push(id))),
                _ => Err(CallError::malformed(format!("`{field}` is no reference"))),
            }
        }

        fn json(&self, text: &mut RequestText, field: &str) -> Result<Span, CallError> {
            text.push_json(field, &self.0)
        }

        fn string(&self, text: &mut RequestText, field: &str) -> Result<Span, CallError> {
            let s = self.0.as_str();
            s.map(|s| text.push(s))
                .ok_or_else(|| CallError::malformed(format!("`{field}` is no string")))
        }
    }

    #[test]
    fn a_request_is_read_field_by_field_in_the_order_of_the_keywords() {
        let mut text = RequestText::with_limits(&Limits::default());
        let reference = |t: &str, id: &str| Some(Json(serde_json::json!({"type": t, "id": id})));
        let read = text
            .read_request([
                None,
                reference("Action", "read"),
                reference("Doc", "d"),
                Some(Json(serde_json::json!({"n": 1}))),
                None,
                Some(Json(serde_json::json!("t0k"))),
                None,
            ])
            .unwrap();
        let parts = read.parts(&text);
        assert_eq!(parts.principal, None);
        assert_eq!(
            (parts.action, parts.resource),
            (("Action", "read"), ("Doc", "d"))
        );
        assert_eq!(parts.context_json, Some(r#"{"n":1}"#));
        assert_eq!((parts.token, parts.request_id), (Some("t0k"), None));

        let missing = [
            None,
            reference("Action", "read"),
            None,
            None,
            None,
            None,
            None,
        ];
        let e = text.read_request(missing).unwrap_err();
        assert_eq!(e.message, "`resource` is required");
        let mut wrong = [
            None,
            reference("Action", "read"),
            reference("Doc", "d"),
            None,
            None,
            None,
            None,
        ];
        wrong[6] = Some(Json(serde_json::json!(7)));
        assert_eq!(
            text.read_request(wrong).unwrap_err().message,
            "`request_id` is no string"
        );
        assert_eq!(REQUEST_FIELDS[6], "request_id");
    }

    #[test]
    fn a_panic_is_an_internal_error() {
        let e = guarded::<()>(|| panic!("boom")).unwrap_err();
        assert_eq!(e.kind.as_str(), "internal");
    }
}
