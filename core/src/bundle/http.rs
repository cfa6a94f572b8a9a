//! `http.json`: how an HTTP request, as a proxy in front of a service sees it (Envoy's external
//! authorization, a gateway), becomes a Cedar request.
//!
//! ```json
//! {"action_type": "Gitlab::Action",
//!  "principals": [{"token": {"header": "authorization", "prefix": "Bearer "}},
//!                 {"spiffe": {"type": "Gitlab::Service", "trust_domain": "gitlab.example.com"}},
//!                 {"anonymous": {"type": "Gitlab::User", "id": "anonymous"}}],
//!  "allow_headers": {"x-arbiter-principal": "principal", "x-arbiter-decision-id": "request_id"},
//!  "routes": [{"method": "GET", "path": "/api/v4/projects/{id}/repository/archive",
//!              "action": "download_code", "resource": {"type": "Gitlab::Project", "id": "{id}"},
//!              "context": {"admin_mode": {"value": false}}}]}
//! ```
//!
//! A route matches a method and a path template (`{name}` one segment, `{*name}` the rest, as
//! the `matchit` router reads them; the most specific template wins, and two that would be
//! ambiguous are a load error). Captured segments are percent-decoded. The principal comes from
//! the first source in `principals` that applies: a token header that is present, the mTLS
//! peer's SPIFFE ID when there is one, else the anonymous principal. A source that applies but
//! fails (a token without its prefix, a peer outside the trust domain, a token that does not
//! verify) denies; it never falls through to the next. Context keys come from headers, query
//! parameters, captures or fixed values. With a schema, every action must exist and apply to its
//! route's resource type. The file is signed and swapped with the rest of the bundle.

use std::collections::BTreeMap;
use std::str::FromStr;

use cedar_policy::{Context, EntityId, EntityTypeName, EntityUid, RestrictedExpression, Schema};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::bundle::{parse_json, serde_message, BundleFile};
use crate::wire::error::{LoadError, Problem};
use crate::wire::request::Request;

/// The file's name in a bundle.
pub(crate) const HTTP: &str = "http.json";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile<'a> {
    action_type: String,
    #[serde(default)]
    principals: Vec<PrincipalFile>,
    #[serde(default)]
    allow_headers: BTreeMap<String, HeaderValue>,
    #[serde(borrow)]
    routes: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum PrincipalFile {
    Token {
        header: String,
        #[serde(default)]
        prefix: Option<String>,
    },
    Spiffe {
        #[serde(rename = "type")]
        entity_type: String,
        trust_domain: String,
    },
    Anonymous {
        #[serde(rename = "type")]
        entity_type: String,
        id: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    #[serde(default)]
    name: Option<String>,
    method: Methods,
    path: String,
    action: String,
    resource: ResourceFile,
    #[serde(default)]
    context: BTreeMap<String, ContextFile>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Methods {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceFile {
    #[serde(rename = "type")]
    entity_type: String,
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextFile {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default, rename = "as")]
    as_type: ValueType,
}

/// What a header, query parameter or capture is read as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ValueType {
    #[default]
    String,
    Long,
    Bool,
}

/// What an allowed request's added header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HeaderValue {
    /// The principal as Cedar writes it, `Gitlab::User::"42"`.
    Principal,
    /// The principal's entity type.
    PrincipalType,
    /// The principal's id.
    PrincipalId,
    /// The request's id (its decision log event's `request_id`).
    RequestId,
    /// The route's name (its path template when it has none).
    Route,
    /// The determining policies' ids, comma-separated.
    Policies,
}

/// Where a request's principal comes from.
#[derive(Debug)]
enum PrincipalSource {
    Token {
        header: String,
        prefix: Option<String>,
    },
    Spiffe {
        entity_type: EntityTypeName,
        trust_domain: String,
    },
    Anonymous(EntityUid),
}

/// Where one context value comes from: a fixed value is read into Cedar's once, at load.
#[derive(Debug)]
enum Source {
    Header(String),
    Query(String),
    Capture(String),
    Value(RestrictedExpression),
}

#[derive(Debug)]
struct Route {
    name: String,
    action: EntityUid,
    resource_type: EntityTypeName,
    /// The resource id: literal text and captures, in order.
    resource_id: Vec<Piece>,
    context: Vec<(String, Source, ValueType)>,
}

#[derive(Debug)]
enum Piece {
    Text(String),
    Capture(String),
}

/// `http.json`, loaded: the routes by method, the principal sources and the headers an allowed
/// request gets.
pub(crate) struct HttpRoutes {
    routes: Vec<Route>,
    by_method: foldhash::HashMap<String, matchit::Router<usize>>,
    principals: Vec<PrincipalSource>,
    allow_headers: Vec<(String, HeaderValue)>,
}

/// An HTTP request as a proxy sees it, for [`crate::Engine::authorize_http`].
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The request target as sent: the path and, after `?`, the query.
    pub path: &'a str,
    /// The headers; names are compared without regard to case, and the first of a name counts.
    pub headers: &'a [(&'a str, &'a str)],
    /// The mTLS peer's identity (Envoy's `source.principal`: a SPIFFE ID), when there is one.
    pub peer: Option<&'a str>,
    /// The request's id, carried into its decision log event.
    pub request_id: Option<&'a str>,
}

impl<'a> HttpRequest<'a> {
    /// The first header of this name, compared without regard to case.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// Why an HTTP request was denied before any policy was evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct HttpError {
    /// `no_mapping` (the bundle has no `http.json`), `no_route`, `no_principal`,
    /// `bad_request` (a path, capture, header or query value the route cannot use), or a
    /// request error's kind (e.g. `invalid_request`) when the Cedar request it built is refused.
    pub kind: &'static str,
    /// One line naming the problem.
    pub message: String,
}

impl HttpError {
    /// An error of `kind` (a host's own, e.g. a server's `not_ready`, or one of those above).
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new("bad_request", message)
    }
}

/// The Cedar request an HTTP request maps to, and its route.
pub(crate) struct Mapped<'r> {
    pub(crate) request: Request,
    pub(crate) route: &'r str,
}

impl HttpRoutes {
    /// Reads `http.json`, checked against the schema when there is one.
    pub(crate) fn load(file: &BundleFile, schema: Option<&Schema>) -> Result<Self, LoadError> {
        let source = crate::bundle::text(file)?;
        let parsed: HttpFile<'_> = parse_json(file).map_err(LoadError::Http)?;
        let mut problems = Vec::new();
        let in_file = |message: String| Problem::in_file(&file.path, message);
        let type_name = |name: &str, problems: &mut Vec<Problem>| {
            EntityTypeName::from_str(name)
                .map_err(|_| problems.push(in_file(format!("`{name}` is not an entity type name"))))
                .ok()
        };
        let action_type = type_name(&parsed.action_type, &mut problems);
        let mut principals = Vec::new();
        for principal in parsed.principals {
            principals.push(match principal {
                PrincipalFile::Token { header, prefix } => {
                    if !is_header_name(&header) {
                        problems.push(in_file(format!(
                            "principal header `{header}` is not a lowercase header name"
                        )));
                    }
                    PrincipalSource::Token { header, prefix }
                }
                PrincipalFile::Spiffe {
                    entity_type,
                    trust_domain,
                } => match type_name(&entity_type, &mut problems) {
                    Some(entity_type) => PrincipalSource::Spiffe {
                        entity_type,
                        trust_domain,
                    },
                    None => continue,
                },
                PrincipalFile::Anonymous { entity_type, id } => {
                    match type_name(&entity_type, &mut problems) {
                        Some(t) => PrincipalSource::Anonymous(EntityUid::from_type_name_and_id(
                            t,
                            EntityId::new(id),
                        )),
                        None => continue,
                    }
                }
            });
        }
        for name in parsed.allow_headers.keys() {
            if !is_header_name(name) || name.starts_with(':') {
                problems.push(in_file(format!(
                    "allow_headers: `{name}` is not a lowercase header name"
                )));
            }
        }
        let mut routes = Vec::new();
        let mut by_method = foldhash::HashMap::default();
        for raw in parsed.routes {
            let offset = raw.get().as_ptr() as usize - source.as_ptr() as usize;
            let problem = |message: String| Problem::at_offset(&file.path, source, offset, message);
            let entry: RouteFile = match serde_json::from_str(raw.get()) {
                Ok(entry) => entry,
                Err(e) => {
                    problems.push(problem(format!("route: {}", serde_message(&e))));
                    continue;
                }
            };
            let name = entry.name.clone().unwrap_or_else(|| entry.path.clone());
            match route(
                entry,
                action_type.as_ref(),
                schema,
                routes.len(),
                &mut by_method,
            ) {
                Ok(route) => routes.push(route),
                Err(message) => problems.push(problem(format!("route `{name}`: {message}"))),
            }
        }
        if problems.is_empty() {
            Ok(Self {
                routes,
                by_method,
                principals,
                allow_headers: parsed.allow_headers.into_iter().collect(),
            })
        } else {
            Err(LoadError::Http(problems))
        }
    }

    /// The Cedar request `http` maps to (its principal left to its token, when a token header
    /// supplied it), or why it maps to none. Its context is checked against the schema where
    /// every request's is, when it is decided.
    pub(crate) fn map(&self, http: &HttpRequest<'_>) -> Result<Mapped<'_>, HttpError> {
        let (path, query) = http.path.split_once('?').unwrap_or((http.path, ""));
        check_path(path)?;
        let matched = self
            .by_method
            .get(http.method)
            .and_then(|router| router.at(path).ok())
            .ok_or_else(|| {
                HttpError::new(
                    "no_route",
                    format!("no route matches {} {path}", http.method),
                )
            })?;
        let route = &self.routes[*matched.value];
        // A template captures a few segments: a list is all the map they need.
        let mut captures = Vec::new();
        for (name, raw) in matched.params.iter() {
            let decoded = percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| {
                    HttpError::bad_request(format!("path segment `{name}` is not UTF-8"))
                })?;
            captures.push((name, decoded));
        }
        let capture = |wanted: &str| {
            captures
                .iter()
                .find(|(name, _)| *name == wanted)
                .map(|(_, value)| value.as_ref())
        };
        let resource_id: String = route
            .resource_id
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.as_str(),
                Piece::Capture(name) => capture(name).unwrap_or_default(),
            })
            .collect();
        let mut context = Vec::with_capacity(route.context.len());
        for (key, source, as_type) in &route.context {
            let text = match source {
                Source::Value(value) => {
                    context.push((key.clone(), value.clone()));
                    continue;
                }
                Source::Header(name) => http.header(name).map(str::to_owned),
                Source::Capture(name) => capture(name).map(str::to_owned),
                Source::Query(name) => query_value(query, name)?,
            };
            if let Some(text) = text {
                context.push((key.clone(), typed(key, text, *as_type)?));
            }
        }
        let (principal, token) = self.principal(http)?;
        // Keys are unique (the file's context is a map), so the context always builds.
        let context = Context::from_pairs(context).map_err(|e| {
            HttpError::new(
                "invalid_context",
                crate::wire::error::one_line(&e.to_string()),
            )
        })?;
        let request = Request {
            principal,
            action: route.action.clone(),
            resource: EntityUid::from_type_name_and_id(
                route.resource_type.clone(),
                EntityId::new(resource_id),
            ),
            context,
            entities: Vec::new(),
            token,
            request_id: http.request_id.map(str::to_owned),
            plain_context_json: None,
        };
        Ok(Mapped {
            request,
            route: &route.name,
        })
    }

    /// The principal from the first source that applies, or the token that names it.
    fn principal(
        &self,
        http: &HttpRequest<'_>,
    ) -> Result<(Option<EntityUid>, Option<String>), HttpError> {
        let no_principal = |message: String| HttpError::new("no_principal", message);
        for source in &self.principals {
            match source {
                PrincipalSource::Token {
                    header: name,
                    prefix,
                } => {
                    let Some(value) = http.header(name).filter(|v| !v.is_empty()) else {
                        continue;
                    };
                    let token = match prefix {
                        None => value,
                        Some(prefix) => {
                            strip_prefix_ignoring_case(value, prefix).ok_or_else(|| {
                                no_principal(format!(
                                    "header `{name}` does not start with `{prefix}`"
                                ))
                            })?
                        }
                    };
                    let token = token.trim();
                    if token.is_empty() {
                        return Err(no_principal(format!("header `{name}` holds no token")));
                    }
                    return Ok((None, Some(token.to_owned())));
                }
                PrincipalSource::Spiffe {
                    entity_type,
                    trust_domain,
                } => {
                    let Some(peer) = http.peer.filter(|p| !p.is_empty()) else {
                        continue;
                    };
                    let id = spiffe_path(peer, trust_domain).ok_or_else(|| {
                        no_principal(format!(
                            "peer `{peer}` is not a SPIFFE ID of trust domain `{trust_domain}`"
                        ))
                    })?;
                    let uid =
                        EntityUid::from_type_name_and_id(entity_type.clone(), EntityId::new(id));
                    return Ok((Some(uid), None));
                }
                PrincipalSource::Anonymous(uid) => return Ok((Some(uid.clone()), None)),
            }
        }
        Err(no_principal(
            "no token, peer identity or anonymous principal applies".to_owned(),
        ))
    }

    /// The headers an allowed request gets, as `http.json`'s `allow_headers` names them: each
    /// with its value, or `None` for one this request has no value for (which a proxy removes,
    /// so a client never sets it).
    pub(crate) fn allow_headers(
        &self,
        principal: Option<&EntityUid>,
        route: &str,
        request_id: Option<&str>,
        reasons: &[String],
    ) -> Vec<(String, Option<String>)> {
        self.allow_headers
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    HeaderValue::Principal => principal.map(ToString::to_string),
                    HeaderValue::PrincipalType => principal.map(|p| p.type_name().to_string()),
                    HeaderValue::PrincipalId => principal.map(|p| p.id().unescaped().to_owned()),
                    HeaderValue::RequestId => request_id.map(str::to_owned),
                    HeaderValue::Route => Some(route.to_owned()),
                    HeaderValue::Policies => Some(reasons.join(",")),
                };
                (name.clone(), value)
            })
            .collect()
    }
}

/// One route of the file, checked, and entered into its methods' routers as number `index`.
fn route(
    entry: RouteFile,
    action_type: Option<&EntityTypeName>,
    schema: Option<&Schema>,
    index: usize,
    by_method: &mut foldhash::HashMap<String, matchit::Router<usize>>,
) -> Result<Route, String> {
    let resource_type = EntityTypeName::from_str(&entry.resource.entity_type).map_err(|_| {
        format!(
            "resource type `{}` is not an entity type name",
            entry.resource.entity_type
        )
    })?;
    let action_type = action_type.ok_or("the file's action_type is not an entity type name")?;
    let action =
        EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(&entry.action));
    if let Some(schema) = schema {
        match schema
            .resources_for_action(&action)
            .map(|mut types| types.any(|t| *t == resource_type))
        {
            None => return Err(format!("the schema has no action {action}")),
            Some(false) => {
                return Err(format!(
                    "action {action} does not apply to resources of type {resource_type}"
                ))
            }
            Some(true) => {}
        }
    }
    if !entry.path.starts_with('/') {
        return Err(format!("path `{}` does not start with `/`", entry.path));
    }
    let captures = template_captures(&entry.path);
    let resource_id = pieces(&entry.resource.id, &captures)?;
    let mut context = Vec::new();
    for (key, source) in entry.context {
        let given = [
            source
                .header
                .map(|h| Source::Header(h.to_ascii_lowercase())),
            source.query.map(Source::Query),
            source.path.map(Source::Capture),
            source
                .value
                .map(|v| fixed(&key, v))
                .transpose()?
                .map(Source::Value),
        ];
        let mut given = given.into_iter().flatten();
        let (Some(from), None) = (given.next(), given.next()) else {
            return Err(format!(
                "context `{key}` needs exactly one of `header`, `query`, `path` or `value`"
            ));
        };
        if let Source::Capture(name) = &from {
            if !captures.contains(name) {
                return Err(format!("context `{key}`: the path has no `{{{name}}}`"));
            }
        }
        context.push((key, from, source.as_type));
    }
    let methods = match entry.method {
        Methods::One(m) => vec![m],
        Methods::Many(ms) => ms,
    };
    if methods.is_empty() {
        return Err("no method".to_owned());
    }
    for method in methods {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!("method `{method}` is not an uppercase HTTP method"));
        }
        by_method
            .entry(method.clone())
            .or_default()
            .insert(entry.path.clone(), index)
            .map_err(|e| format!("{method} {}: {e}", entry.path))?;
    }
    Ok(Route {
        name: entry.name.unwrap_or(entry.path),
        action,
        resource_type,
        resource_id,
        context,
    })
}

/// A fixed context value in Cedar's JSON value encoding (`__entity` and `__extn` escapes
/// explicit), read once.
fn fixed(key: &str, value: Value) -> Result<RestrictedExpression, String> {
    let mut record = serde_json::Map::new();
    record.insert(key.to_owned(), value);
    Context::from_json_value(Value::Object(record), None)
        .map_err(|e| {
            format!(
                "context `{key}`: {}",
                crate::wire::error::one_line(&e.to_string())
            )
        })?
        .into_iter()
        .next()
        .map(|(_, value)| value)
        .ok_or_else(|| format!("context `{key}`: no value"))
}

/// The names a path template captures: `{id}` and `{*rest}`.
fn template_captures(template: &str) -> Vec<String> {
    template
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}'))
        .map(|(name, _)| name.trim_start_matches('*').to_owned())
        .collect()
}

/// A resource id template read into text and captures, each capture one the path has.
fn pieces(template: &str, captures: &[String]) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_owned()));
        }
        let (name, after) = rest[open + 1..]
            .split_once('}')
            .ok_or_else(|| format!("resource id `{template}` has an unclosed `{{`"))?;
        if !captures.iter().any(|c| c == name) {
            return Err(format!(
                "resource id `{template}`: the path has no `{{{name}}}`"
            ));
        }
        pieces.push(Piece::Capture(name.to_owned()));
        rest = after;
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

/// Refuses a path the service behind the proxy might read as another: one that is not absolute,
/// has an empty segment, or a `.` or `..` segment (percent-encoded or not).
fn check_path(path: &str) -> Result<(), HttpError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(HttpError::bad_request(format!(
            "path `{path}` does not start with `/`"
        )));
    };
    if rest.is_empty() {
        return Ok(());
    }
    for segment in rest.split('/') {
        let decoded = percent_encoding::percent_decode_str(segment).collect::<Vec<u8>>();
        if segment.is_empty() || decoded == b"." || decoded == b".." || segment.contains('#') {
            return Err(HttpError::bad_request(format!(
                "path `{path}` is not normalized (an empty, `.` or `..` segment)"
            )));
        }
    }
    Ok(())
}

/// A query parameter's value; one given twice is refused rather than guessed.
fn query_value(query: &str, name: &str) -> Result<Option<String>, HttpError> {
    let mut found = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == name {
            if found.is_some() {
                return Err(HttpError::bad_request(format!(
                    "query parameter `{name}` is given more than once"
                )));
            }
            found = Some(value.into_owned());
        }
    }
    Ok(found)
}

fn typed(key: &str, text: String, as_type: ValueType) -> Result<RestrictedExpression, HttpError> {
    match as_type {
        ValueType::String => Ok(RestrictedExpression::new_string(text)),
        ValueType::Long => text
            .parse::<i64>()
            .map(RestrictedExpression::new_long)
            .map_err(|_| {
                HttpError::bad_request(format!("context `{key}`: `{text}` is not a Long"))
            }),
        ValueType::Bool => match text.as_str() {
            "true" => Ok(RestrictedExpression::new_bool(true)),
            "false" => Ok(RestrictedExpression::new_bool(false)),
            _ => Err(HttpError::bad_request(format!(
                "context `{key}`: `{text}` is not true or false"
            ))),
        },
    }
}

/// `spiffe://<trust_domain>/<path>`'s path, when the ID is of that trust domain.
fn spiffe_path<'p>(peer: &'p str, trust_domain: &str) -> Option<&'p str> {
    let rest = peer.strip_prefix("spiffe://")?;
    let (domain, path) = rest.split_once('/')?;
    (domain == trust_domain && !path.is_empty() && !path.contains(['?', '#'])).then_some(path)
}

fn strip_prefix_ignoring_case<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::from_cedarschema_str(
            "entity User; entity Service; entity Doc; entity Folder;
             action read, write appliesTo { principal: [User, Service], resource: Doc,
                                            context: { ref?: String, page?: Long, admin_mode?: Bool } };",
        )
        .unwrap()
        .0
    }

    const FILE: &str = r#"{"action_type": "Action",
      "principals": [{"token": {"header": "authorization", "prefix": "Bearer "}},
                     {"spiffe": {"type": "Service", "trust_domain": "example.org"}},
                     {"anonymous": {"type": "User", "id": "anonymous"}}],
      "allow_headers": {"x-principal": "principal", "x-route": "route"},
      "routes": [
        {"method": ["GET", "HEAD"], "path": "/docs/{id}", "action": "read",
         "resource": {"type": "Doc", "id": "doc-{id}"},
         "context": {"ref": {"query": "ref"}, "page": {"header": "x-page", "as": "long"},
                     "admin_mode": {"value": false}}},
        {"name": "write", "method": "PUT", "path": "/docs/{id}", "action": "write",
         "resource": {"type": "Doc", "id": "{id}"}}]}"#;

    fn routes() -> HttpRoutes {
        HttpRoutes::load(&BundleFile::new(HTTP, FILE), Some(&schema())).unwrap()
    }

    fn map(
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        peer: Option<&str>,
    ) -> Result<Request, HttpError> {
        let http = HttpRequest {
            method,
            path,
            headers,
            peer,
            request_id: Some("r-1"),
        };
        routes().map(&http).map(|m| m.request)
    }

    #[test]
    fn a_route_builds_the_request_from_captures_query_headers_and_values() {
        let request = map("GET", "/docs/a%2Fb?ref=main&x=1", &[("X-Page", "3")], None).unwrap();
        assert_eq!(
            request.principal.unwrap().to_string(),
            r#"User::"anonymous""#
        );
        assert_eq!(request.action.to_string(), r#"Action::"read""#);
        assert_eq!(request.resource.to_string(), r#"Doc::"doc-a/b""#);
        assert_eq!(request.request_id.as_deref(), Some("r-1"));
        let context = request.context.into_iter().collect::<BTreeMap<_, _>>();
        assert_eq!(
            format!("{context:?}").matches("main").count(),
            1,
            "{context:?}"
        );
        assert_eq!(context.len(), 3);
    }

    #[test]
    fn the_first_source_that_applies_names_the_principal_and_a_failing_one_denies() {
        let request = map(
            "PUT",
            "/docs/1",
            &[("authorization", "bearer abc")],
            Some("spiffe://example.org/x"),
        )
        .unwrap();
        assert_eq!(
            (request.principal, request.token.as_deref()),
            (None, Some("abc"))
        );
        let request = map(
            "PUT",
            "/docs/1",
            &[],
            Some("spiffe://example.org/ns/a/sa/b"),
        )
        .unwrap();
        assert_eq!(
            request.principal.unwrap().to_string(),
            r#"Service::"ns/a/sa/b""#
        );
        let e = map("PUT", "/docs/1", &[], Some("spiffe://other.org/ns/a")).unwrap_err();
        assert_eq!(e.kind, "no_principal");
        let e = map(
            "PUT",
            "/docs/1",
            &[("authorization", "Basic dXNlcg==")],
            None,
        )
        .unwrap_err();
        assert_eq!(e.kind, "no_principal");
        let e = map("PUT", "/docs/1", &[("authorization", "Bearer  ")], None).unwrap_err();
        assert_eq!(e.kind, "no_principal");
    }

    #[test]
    fn requests_no_route_can_take_are_refused_by_kind() {
        let kind = |method, path, headers: &[(&str, &str)]| {
            map(method, path, headers, None).unwrap_err().kind
        };
        assert_eq!(kind("DELETE", "/docs/1", &[]), "no_route");
        assert_eq!(kind("GET", "/docs", &[]), "no_route");
        assert_eq!(kind("GET", "/docs/1/2", &[]), "no_route");
        assert_eq!(kind("GET", "/docs/..", &[]), "bad_request");
        assert_eq!(kind("GET", "/docs/%2e%2E", &[]), "bad_request");
        assert_eq!(kind("GET", "//docs/1", &[]), "bad_request");
        assert_eq!(kind("GET", "docs/1", &[]), "bad_request");
        assert_eq!(kind("GET", "/docs/1?ref=a&ref=b", &[]), "bad_request");
        assert_eq!(
            kind("GET", "/docs/1", &[("x-page", "three")]),
            "bad_request"
        );
        assert_eq!(kind("GET", "/docs/%ff", &[]), "bad_request");
    }

    #[test]
    fn allowed_requests_get_the_headers_the_file_names() {
        let routes = routes();
        let principal = EntityUid::from_str(r#"User::"7""#).unwrap();
        assert_eq!(
            routes.allow_headers(Some(&principal), "write", Some("r"), &[]),
            [
                ("x-principal".to_owned(), Some(r#"User::"7""#.to_owned())),
                ("x-route".to_owned(), Some("write".to_owned()))
            ]
        );
        assert_eq!(
            routes.allow_headers(None, "write", None, &[])[0],
            ("x-principal".to_owned(), None)
        );
    }

    #[test]
    fn problems_name_the_route_and_its_line() {
        let text = "{\"action_type\": \"Action\", \"routes\": [\n\
            {\"method\": \"GET\", \"path\": \"/a/{id}\", \"action\": \"nope\", \"resource\": {\"type\": \"Doc\", \"id\": \"{id}\"}},\n\
            {\"method\": \"GET\", \"path\": \"/b/{id}\", \"action\": \"read\", \"resource\": {\"type\": \"Folder\", \"id\": \"{id}\"}},\n\
            {\"method\": \"get\", \"path\": \"/c\", \"action\": \"read\", \"resource\": {\"type\": \"Doc\", \"id\": \"x\"}},\n\
            {\"method\": \"GET\", \"path\": \"/d/{id}\", \"action\": \"read\", \"resource\": {\"type\": \"Doc\", \"id\": \"{other}\"}},\n\
            {\"method\": \"GET\", \"path\": \"/e/{id}\", \"action\": \"read\", \"resource\": {\"type\": \"Doc\", \"id\": \"{id}\"}},\n\
            {\"method\": \"GET\", \"path\": \"/e/{key}\", \"action\": \"read\", \"resource\": {\"type\": \"Doc\", \"id\": \"{key}\"}},\n\
            {\"method\": \"GET\", \"path\": \"/f\", \"action\": \"read\", \"resource\": {\"type\": \"Doc\", \"id\": \"x\"}, \"context\": {\"a\": {\"header\": \"h\", \"query\": \"q\"}}},\n\
            {\"method\": \"GET\", \"path\": \"/g\", \"action\": \"read\", \"resource\": {\"type\": \"Doc\", \"id\": \"x\"}, \"why\": 1}]}";
        let Err(LoadError::Http(problems)) =
            HttpRoutes::load(&BundleFile::new(HTTP, text), Some(&schema()))
        else {
            panic!("expected problems");
        };
        let got: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 7, "{got:#?}");
        for (line, expected) in [
            (2, "the schema has no action Action::\"nope\""),
            (3, "does not apply to resources of type Folder"),
            (4, "method `get` is not an uppercase HTTP method"),
            (5, "the path has no `{other}`"),
            (7, "conflict with previously registered route: /e/{id}"),
            (8, "needs exactly one of"),
            (9, "unknown field `why`"),
        ] {
            assert!(
                got.iter()
                    .any(|p| p.starts_with(&format!("http.json:{line}:")) && p.contains(expected)),
                "line {line}: {expected} not in {got:#?}"
            );
        }
    }

    #[test]
    fn the_engine_decides_the_mapped_request_and_refuses_a_context_the_schema_does_not_allow() {
        let schema = "entity User; entity Service; entity Doc; entity Folder;
             action read, write appliesTo { principal: [User, Service], resource: Doc,
                                            context: { ref?: String, page?: Long, admin_mode?: Bool } };";
        let file = FILE.replace(
            r#""page": {"header": "x-page", "as": "long"}"#,
            r#""page": {"header": "x-page"}"#,
        );
        let engine = crate::Engine::from_files([
            BundleFile::new("schema.cedarschema", schema),
            BundleFile::new("policies.cedar", r#"permit (principal == User::"anonymous", action == Action::"read", resource == Doc::"doc-1");"#),
            BundleFile::new(HTTP, file),
        ])
        .unwrap();
        let decide = |path: &str, headers: &[(&str, &str)]| {
            engine.authorize_http(&HttpRequest {
                method: "GET",
                path,
                headers,
                peer: None,
                request_id: None,
            })
        };
        let allowed = decide("/docs/1?ref=main", &[]).unwrap();
        assert!(allowed.decision.allowed(), "{allowed:?}");
        assert_eq!(allowed.route, "/docs/{id}");
        assert!(!decide("/docs/2", &[]).unwrap().decision.allowed());
        // `page` is a Long in the schema, but this file reads the header as a String.
        let refused = decide("/docs/1", &[("x-page", "3")]).unwrap_err();
        assert!(refused.kind.starts_with("invalid_"), "{refused:?}");
    }
}
