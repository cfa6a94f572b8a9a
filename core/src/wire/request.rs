//! Requests: the typed form, and the contract's JSON wire form that every language shares.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Context, ContextJsonError, Entity, EntityId, EntityTypeName, EntityUid, Schema,
};
use cedar_policy_core::ast::{self, EntityUID, PartialValue};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::bundle::entities::{parse_entity, validate_entity};
use crate::engine::limits::Limits;
use crate::evaluation::context::{plain_context, PlainRecord};
use crate::evaluation::shapes::Shapes;
use crate::wire::error::RequestError;
use crate::wire::json::unique_keys;

/// A request for a decision.
#[derive(Debug, Clone)]
pub struct Request {
    /// Who asks. May be `None` when `token` is given: the verified token supplies it.
    pub principal: Option<EntityUid>,
    /// What they want to do.
    pub action: EntityUid,
    /// What they want to do it to.
    pub resource: EntityUid,
    /// The request's context record.
    pub context: Context,
    /// Per-request entities, layered over the bundle's static entities for this request only
    /// (one with the uid of a static entity replaces it).
    pub entities: Vec<Entity>,
    /// A compact JWT or a serialized macaroon.
    pub token: Option<String>,
    /// The host's id for the request (a web request's correlation id), carried into its
    /// decision log event and used to sample all decisions of one id alike.
    pub request_id: Option<String>,
    /// The context JSON, when the fast reader read it: Cedar's reader reads it again if the
    /// schema refuses what the fast reader made of it.
    pub(crate) plain_context_json: Option<Arc<str>>,
}

impl Request {
    /// A request with an empty context, no entities of its own and no token.
    pub fn new(principal: EntityUid, action: EntityUid, resource: EntityUid) -> Self {
        Self {
            principal: Some(principal),
            action,
            resource,
            context: Context::empty(),
            entities: Vec::new(),
            token: None,
            request_id: None,
            plain_context_json: None,
        }
    }

    /// Sets the context.
    pub fn with_context(mut self, context: Context) -> Self {
        self.context = context;
        self
    }

    /// Sets the per-request entities.
    pub fn with_entities(mut self, entities: Vec<Entity>) -> Self {
        self.entities = entities;
        self
    }

    /// Sets the token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the request id.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Parses the contract's request JSON. With a schema, the context and entities are read
    /// the way the schema types them (so `__entity` and `__extn` escapes may be implicit).
    pub(crate) fn from_json(json: &str, reader: &RequestReader<'_>) -> Result<Self, RequestError> {
        let wire: WireRequest<'_> =
            serde_json::from_str(json).map_err(|e| RequestError::Malformed(e.to_string()))?;
        let principal = wire
            .principal
            .map(|p| p.uid("principal", reader.types))
            .transpose()?;
        let action = wire.action.uid("action", reader.types)?;
        let resource = wire.resource.uid("resource", reader.types)?;
        let (context, plain_context_json) = match wire.context {
            None => (Context::empty(), None),
            Some(json) => read_context(json.get(), &action, reader)?,
        };
        Ok(Self {
            principal,
            action,
            resource,
            context,
            plain_context_json,
            entities: parse_entities(wire.entities, reader)?,
            token: wire.token,
            request_id: wire.request_id,
        })
    }

    /// Builds a request from borrowed parts (see [`RequestParts`]), read the way
    /// [`Request::from_json`] reads the same values; a batch passes the contexts it has read.
    pub(crate) fn from_parts<'p>(
        parts: &RequestParts<'p>,
        reader: &RequestReader<'_>,
        contexts: Option<&mut ContextCache<'p>>,
    ) -> Result<Self, RequestError> {
        let principal = parts
            .principal
            .map(|(t, id)| reader.types.uid("principal", t, id))
            .transpose()?;
        let action = reader.types.uid("action", parts.action.0, parts.action.1)?;
        let resource = reader
            .types
            .uid("resource", parts.resource.0, parts.resource.1)?;
        let (context, plain_context_json) = match (parts.context_json, contexts) {
            (None, _) => (Context::empty(), None),
            (Some(json), None) => read_context(json, &action, reader)?,
            (Some(json), Some(cache)) => cache.read(json, &action, reader)?,
        };
        let entities = match parts.entities_json {
            None => Vec::new(),
            Some(json) => parse_entities(
                serde_json::from_str::<Vec<&RawValue>>(json).map_err(|e| {
                    RequestError::Entities(format!("expected a JSON array of entities: {e}"))
                })?,
                reader,
            )?,
        };
        Ok(Self {
            principal,
            action,
            resource,
            context,
            plain_context_json,
            entities,
            token: parts.token.map(str::to_owned),
            request_id: parts.request_id.map(str::to_owned),
        })
    }
}

/// A request as borrowed parts, for bindings that would rather not build request JSON: entity
/// references as `(type, id)`, the context and the per-request entities as JSON (in the
/// contract's encoding), each only when present.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// `(type, id)` of the principal; may be `None` when `token` is given.
    pub principal: Option<(&'a str, &'a str)>,
    /// `(type, id)` of the action.
    pub action: (&'a str, &'a str),
    /// `(type, id)` of the resource.
    pub resource: (&'a str, &'a str),
    /// The context record as JSON.
    pub context_json: Option<&'a str>,
    /// The per-request entities as a JSON array.
    pub entities_json: Option<&'a str>,
    /// A token.
    pub token: Option<&'a str>,
    /// The host's id for the request (see [`Request::request_id`]).
    pub request_id: Option<&'a str>,
}

/// The context JSON as Cedar reads it (against the schema, when given): by the fast reader when
/// the JSON is plain, else by Cedar's reader. A plain context the schema then refuses is read
/// again by Cedar's reader (see `Request::reread_context`), which decides and words the error.
fn read_context(
    json: &str,
    action: &EntityUid,
    reader: &RequestReader<'_>,
) -> Result<(Context, Option<Arc<str>>), RequestError> {
    Ok(with_extensions(
        read_untyped_context(json, action, reader.schema)?,
        action,
        reader,
    ))
}

/// `read_context` but for the strings the schema reads as extension values, which the fast
/// reader leaves as strings (this reading does not depend on the action).
fn read_untyped_context(
    json: &str,
    action: &EntityUid,
    schema: Option<&Schema>,
) -> Result<(Context, Option<Arc<str>>), RequestError> {
    match plain_context(json) {
        Some(context) => Ok((context, schema.map(|_| json.into()))),
        None => {
            // The fast reader refuses duplicate keys; Cedar's reader would keep the last.
            unique_keys(json).map_err(|e| RequestError::Context(format!("the context: {e}")))?;
            Context::from_json_str(json, schema.map(|s| (s, action)))
                .map(|c| (c, None))
                .map_err(context_error)
        }
    }
}

/// The fast reader's context with the extension values the action's context type expects
/// built from their strings, as Cedar's reader builds them (see `Shapes::build_extensions`).
fn with_extensions(
    read: (Context, Option<Arc<str>>),
    action: &EntityUid,
    reader: &RequestReader<'_>,
) -> (Context, Option<Arc<str>>) {
    let built = match (&read.1, reader.shapes) {
        (Some(_), Some(shapes)) => shapes.build_extensions(action.as_ref(), read.0.as_ref()),
        _ => None,
    };
    match built {
        Some(context) => (Context::from(context), read.1),
        None => read,
    }
}

/// The contexts a batch has read, by their JSON text: the checks of one page often share one.
/// Only readings that do not depend on the request's action are kept: the fast reader's, and
/// any without a schema.
#[derive(Default)]
pub(crate) struct ContextCache<'p>(
    HashMap<&'p str, (Context, Option<Arc<str>>), foldhash::quality::RandomState>,
);

impl<'p> ContextCache<'p> {
    fn read(
        &mut self,
        json: &'p str,
        action: &EntityUid,
        reader: &RequestReader<'_>,
    ) -> Result<(Context, Option<Arc<str>>), RequestError> {
        let read = match self.0.get(json) {
            Some(read) => read.clone(),
            None => {
                let read = read_untyped_context(json, action, reader.schema)?;
                if reader.schema.is_none() || read.1.is_some() {
                    self.0.insert(json, read.clone());
                }
                read
            }
        };
        Ok(with_extensions(read, action, reader))
    }
}

impl Request {
    /// Cedar's reading of a context the fast reader read and the schema refused; `None` when the
    /// context did not come from the fast reader.
    pub(crate) fn reread_context(&self, schema: &Schema) -> Option<Result<Context, RequestError>> {
        let json = self.plain_context_json.as_deref()?;
        Some(Context::from_json_str(json, Some((schema, &self.action))).map_err(context_error))
    }
}

fn context_error(e: ContextJsonError) -> RequestError {
    match e {
        // Reading the context against the schema needs the action first.
        ContextJsonError::MissingAction(e) => RequestError::invalid(&e),
        e => RequestError::context(&e),
    }
}

/// Per-request entities in Cedar's entity JSON format. Like Cedar, an entity given twice
/// identically counts once; given twice differently, it is an error.
fn parse_entities(
    items: Vec<&RawValue>,
    reader: &RequestReader<'_>,
) -> Result<Vec<Entity>, RequestError> {
    reader.limits.check_entities(items.len())?;
    let mut seen = Seen::default();
    let mut entities: Vec<Entity> = Vec::with_capacity(items.len());
    for (n, json) in items.into_iter().enumerate() {
        let entity = match plain_entity(json.get(), reader) {
            Some(entity) => entity,
            None => {
                // The fast reader refuses duplicate keys; Cedar's parser would keep the last.
                let refused = |e: &dyn std::fmt::Display| {
                    RequestError::Entities(format!("entities[{n}]: {e}"))
                };
                unique_keys(json.get()).map_err(|e| refused(&e))?;
                let value: serde_json::Value =
                    serde_json::from_str(json.get()).map_err(|e| refused(&e))?;
                parse_entity(value, reader.schema).map_err(|e| at_entity(n, &e))?
            }
        };
        if seen.first_time(&entity, n, &entities, entities.len())? {
            entities.push(Entity::from(entity));
        }
    }
    Ok(entities)
}

impl Request {
    /// Checks a typed request's own entities as the JSON path checks what it reads: their
    /// number, each against the schema (an action entity must be the schema's own, so a request
    /// cannot regroup actions), and no uid given twice differently.
    pub(crate) fn check_entities(&self, reader: &RequestReader<'_>) -> Result<(), RequestError> {
        check_entities(&self.entities, reader)
    }
}

/// Checks a request's own entities: their number, each against the schema, and no uid given
/// twice differently.
pub(crate) fn check_entities(
    entities: &[Entity],
    reader: &RequestReader<'_>,
) -> Result<(), RequestError> {
    reader.limits.check_entities(entities.len())?;
    let mut seen = Seen::default();
    for (n, entity) in entities.iter().enumerate() {
        if let Some(schema) = reader.schema {
            validate_entity(entity.as_ref(), schema, reader.shapes)
                .map_err(|e| at_entity(n, &e))?;
        }
        seen.first_time(entity.as_ref(), n, entities, n)?;
    }
    Ok(())
}

fn at_entity(n: usize, e: &RequestError) -> RequestError {
    RequestError::Entities(format!("entities[{n}]: {}", e.message()))
}

/// The uids of a request's entities met so far: where each was first kept, and its position
/// in the request.
#[derive(Default)]
struct Seen(HashMap<EntityUID, (usize, usize)>);

impl Seen {
    /// Whether `entity` (the `n`th of the request, kept at `kept[at]` if new) is new; `false`
    /// when an identical one is in `kept` already; an error when a different one with its uid
    /// is.
    fn first_time(
        &mut self,
        entity: &ast::Entity,
        n: usize,
        kept: &[Entity],
        at: usize,
    ) -> Result<bool, RequestError> {
        match self.0.get(entity.uid()) {
            Some(&(at, _)) if kept[at].as_ref().deep_eq(entity) => Ok(false),
            Some(&(_, first)) => Err(RequestError::Entities(format!(
                "entities[{n}]: entity `{}` is already given, differently, in entities[{first}]",
                entity.uid()
            ))),
            None => {
                self.0.insert(entity.uid().clone(), (at, n));
                Ok(true)
            }
        }
    }
}

/// A request entity in Cedar's entity JSON, read without Cedar's entity parser (whose untagged
/// value enum builds and discards an error per value). Only an entity whose attributes and tags
/// are plain JSON (see `context`), whose type names the bundle knows, and which (with a schema)
/// conforms to the schema: Cedar's schema-guided reading of such JSON is the plain one. `None`
/// leaves the entity to Cedar's parser, which decides and words any error.
fn plain_entity(json: &str, reader: &RequestReader<'_>) -> Option<ast::Entity> {
    let entity = serde_json::from_str::<WireEntity>(json)
        .ok()?
        .into_entity(&mut |name| reader.types.0.get(name).cloned())?;
    if let Some(schema) = reader.schema {
        validate_entity(&entity, schema, reader.shapes).ok()?;
    }
    Some(entity)
}

/// An entity in Cedar's entity JSON whose attributes and tags are plain JSON: what
/// `plain_entity` reads, and the static entities' fast loader (which, with a schema, reads
/// entity references too: `REFS`, see `context`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WireEntity<const REFS: bool = false> {
    uid: WireRef,
    attrs: PlainRecord<REFS>,
    parents: Vec<WireRef>,
    #[serde(default)]
    tags: PlainRecord<REFS>,
}

impl<const REFS: bool> WireEntity<REFS> {
    /// The entity, with type names resolved by `resolve`; `None` if one does not resolve or a
    /// reference is not `{"type", "id"}` or `{"__entity": ...}`. Nothing is validated.
    pub(crate) fn into_entity(
        self,
        resolve: &mut dyn FnMut(&str) -> Option<EntityTypeName>,
    ) -> Option<ast::Entity> {
        let mut uid = |r: WireRef| -> Option<EntityUID> {
            let (type_name, id) = match (r.type_name, r.id, r.entity) {
                (Some(t), Some(id), None) => (t, id),
                (None, None, Some(e)) => (e.type_name, e.id),
                _ => return None,
            };
            Some(EntityUid::from_type_name_and_id(resolve(&type_name)?, EntityId::new(id)).into())
        };
        let own = uid(self.uid)?;
        let parents: HashSet<EntityUID> = self
            .parents
            .into_iter()
            .map(&mut uid)
            .collect::<Option<_>>()?;
        let values = |record: PlainRecord<REFS>| {
            record
                .0
                .into_iter()
                .map(|(k, v)| (k, PartialValue::Value(v)))
        };
        Some(ast::Entity::new_with_attr_partial_value(
            own,
            values(self.attrs),
            HashSet::new(),
            parents,
            values(self.tags),
        ))
    }
}

/// How a bundle reads requests: against its schema (when it validates requests), with its
/// entity type names parsed once.
pub(crate) struct RequestReader<'a> {
    pub(crate) limits: &'a Limits,
    pub(crate) schema: Option<&'a Schema>,
    pub(crate) shapes: Option<&'a Shapes>,
    pub(crate) types: &'a TypeNames,
}

/// Entity type names known to a bundle (its schema's, its entities', its policies'), parsed
/// once: Cedar's name parser is the costliest step of reading a small request.
#[derive(Default)]
pub(crate) struct TypeNames(foldhash::HashMap<String, EntityTypeName>);

impl TypeNames {
    pub(crate) fn new(names: impl IntoIterator<Item = EntityTypeName>) -> Self {
        Self(names.into_iter().map(|n| (n.to_string(), n)).collect())
    }

    /// The entity `type_name::"id"`, parsing the type name only if the bundle does not know it.
    fn uid(&self, field: &str, type_name: &str, id: &str) -> Result<EntityUid, RequestError> {
        let parsed = match self.0.get(type_name) {
            Some(known) => known.clone(),
            None => EntityTypeName::from_str(type_name).map_err(|_| {
                RequestError::Malformed(format!(
                    "`{field}`: `{type_name}` is not an entity type name"
                ))
            })?,
        };
        Ok(EntityUid::from_type_name_and_id(parsed, EntityId::new(id)))
    }
}

/// The request JSON of the contract. A field given twice is refused (serde's derive does), and
/// so is a key given twice in the context or in an entity (see `crate::wire::json`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest<'a> {
    #[serde(default)]
    principal: Option<WireRef>,
    action: WireRef,
    resource: WireRef,
    #[serde(default, borrow)]
    context: Option<&'a RawValue>,
    #[serde(default, borrow)]
    entities: Vec<&'a RawValue>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
}

/// An entity reference: `{"type": ..., "id": ...}`, or `{"__entity": {"type": ..., "id": ...}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRef {
    #[serde(rename = "type", default)]
    type_name: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "__entity", default)]
    entity: Option<TypeAndId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeAndId {
    #[serde(rename = "type")]
    type_name: String,
    id: String,
}

impl WireRef {
    fn uid(self, field: &str, types: &TypeNames) -> Result<EntityUid, RequestError> {
        match (self.type_name, self.id, self.entity) {
            (Some(t), Some(id), None) => types.uid(field, &t, &id),
            (None, None, Some(e)) => types.uid(field, &e.type_name, &e.id),
            _ => Err(RequestError::Malformed(format!(
                "`{field}` must be {{\"type\": ..., \"id\": ...}}"
            ))),
        }
    }
}
