//! Requests: the typed form, and the contract's JSON wire form that every language shares.

use std::collections::HashMap;

use cedar_policy_core::ast::EntityUID;

use cedar_policy::{Context, ContextJsonError, Entity, EntityUid, Schema};
use serde::Deserialize;

use crate::entities::parse_entity;
use crate::error::RequestError;

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

    /// Parses the contract's request JSON. With a schema, the context and entities are read
    /// the way the schema types them (so `__entity` and `__extn` escapes may be implicit).
    pub(crate) fn from_json(json: &str, schema: Option<&Schema>) -> Result<Self, RequestError> {
        let wire: WireRequest =
            serde_json::from_str(json).map_err(|e| RequestError::Malformed(e.to_string()))?;

        let principal = wire
            .principal
            .map(|p| entity_ref("principal", p))
            .transpose()?;
        let action = entity_ref("action", wire.action)?;
        let resource = entity_ref("resource", wire.resource)?;
        let context = match wire.context {
            None => Context::empty(),
            Some(json) => Context::from_json_value(json, schema.map(|s| (s, &action))).map_err(
                |e| match e {
                    // Reading the context against the schema needs the action first.
                    ContextJsonError::MissingAction(e) => RequestError::invalid(&e),
                    e => RequestError::context(&e),
                },
            )?,
        };
        let mut seen: HashMap<EntityUID, (usize, usize)> = HashMap::new();
        let mut entities: Vec<Entity> = Vec::with_capacity(wire.entities.len());
        for (n, json) in wire.entities.into_iter().enumerate() {
            let entity = parse_entity(json, schema)
                .map_err(|e| RequestError::Entities(format!("entities[{n}]: {}", e.message())))?;
            // Like Cedar, an entity given twice identically counts once.
            match seen.get(entity.uid()) {
                Some(&(at, _)) if entities[at].as_ref().deep_eq(&entity) => continue,
                Some(&(_, first)) => {
                    return Err(RequestError::Entities(format!(
                        "entities[{n}]: entity `{}` is already given, differently, in entities[{first}]",
                        entity.uid()
                    )))
                }
                None => {
                    seen.insert(entity.uid().clone(), (entities.len(), n));
                    entities.push(Entity::from(entity));
                }
            }
        }
        Ok(Self {
            principal,
            action,
            resource,
            context,
            entities,
            token: wire.token,
        })
    }
}

/// The request JSON of the contract.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    #[serde(default)]
    principal: Option<serde_json::Value>,
    action: serde_json::Value,
    resource: serde_json::Value,
    #[serde(default)]
    context: Option<serde_json::Value>,
    #[serde(default)]
    entities: Vec<serde_json::Value>,
    #[serde(default)]
    token: Option<String>,
}

/// `{"type": ..., "id": ...}` or `{"__entity": {"type": ..., "id": ...}}`.
fn entity_ref(field: &str, json: serde_json::Value) -> Result<EntityUid, RequestError> {
    EntityUid::from_json(json).map_err(|e| {
        RequestError::Malformed(format!(
            "`{field}`: {}",
            crate::error::one_line(&e.to_string())
        ))
    })
}
