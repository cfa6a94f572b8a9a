//! List queries: "which resources of this type may this principal act on?", answered as every
//! resource, none, or a condition on the resource written as SQL through the bundle's
//! `sql/mapping.json`.
//!
//! The condition comes from Cedar's type-aware partial evaluation (cedar-policy's experimental
//! `tpe`, pinned with cedar-policy; this module is the only user): the principal, action,
//! context and entities are known, as in a check, and the resource alone is unknown. The
//! residual policies are then combined as Cedar decides, allowed where some permit holds and no
//! forbid does, and written as SQL (see [`sql`]). Anything the mapping cannot express exactly
//! is an `untranslatable` error naming the policy and the expression.

pub(crate) mod mapping;
pub(crate) mod sql;

use std::collections::BTreeMap;
use std::sync::Arc;

use cedar_policy::{Context, Entity, EntityTypeName, EntityUid};
use cedar_policy_core::ast::{self, Effect, EntityUID, PolicyID};
use cedar_policy_core::entities::Entities;
use cedar_policy_core::tpe;
use cedar_policy_core::tpe::residual::Residual;
use smol_str::SmolStr;

use crate::bundle::Bundle;
use crate::wire::error::{ErrorKind, RequestError};
use crate::wire::request::{Request, RequestReader};
pub use sql::{Dialect, SqlValue};

/// A list query: a check request whose resource is known only by its type.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    /// Who asks.
    pub principal: EntityUid,
    /// What they want to do.
    pub action: EntityUid,
    /// The type of the resources asked about.
    pub resource_type: EntityTypeName,
    /// The request's context.
    pub context: Context,
    /// Per-request entities, layered over the bundle's as in a check.
    pub entities: Vec<Entity>,
}

/// Why a query has no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request is malformed or does not conform to the schema (as for a check).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The bundle cannot answer queries for this request, or its mapping cannot express the
    /// residual exactly: the message names the policy and the expression.
    #[error("untranslatable: {0}")]
    Untranslatable(String),
    /// Arbiter failed inside (a caught panic).
    #[error("internal: {0}")]
    Internal(String),
}

impl QueryError {
    /// Its kind in the error table.
    pub fn error_kind(&self) -> ErrorKind {
        match self {
            Self::Request(e) => e.error_kind(),
            Self::Untranslatable(_) => ErrorKind::Untranslatable,
            Self::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Stable snake_case kind.
    pub fn kind(&self) -> &'static str {
        self.error_kind().as_str()
    }

    /// Stable numeric code.
    pub fn code(&self) -> u32 {
        self.error_kind().code()
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> &str {
        match self {
            Self::Request(e) => e.message(),
            Self::Untranslatable(m) | Self::Internal(m) => m,
        }
    }

    /// `{"kind", "code", "message"}`, as every binding reports errors.
    pub fn to_json_value(&self) -> serde_json::Value {
        serde_json::json!({"kind": self.kind(), "code": self.code(), "message": self.message()})
    }
}

/// A query's answer before it is written in a dialect.
pub enum Query {
    /// Every resource of the type is allowed.
    All,
    /// No resource is.
    None,
    /// Those for which the condition holds.
    Where(Condition),
}

/// The residual policies of a query, with what writing them as SQL needs.
pub struct Condition {
    bundle: Arc<Bundle>,
    resource_type: ast::EntityType,
    permits: Vec<(PolicyID, Arc<Residual>)>,
    forbids: Vec<(PolicyID, Arc<Residual>)>,
    /// The known entities, for `principal in resource`.
    store: Entities,
}

/// A query written as SQL: `SELECT <table>.id FROM <table> WHERE <sql>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SqlQuery {
    /// `all`, `none` or `where`.
    pub kind: &'static str,
    /// The WHERE clause (`TRUE` for `all`, `FALSE` for `none`).
    pub sql: String,
    /// Its parameters, in placeholder order.
    pub params: Vec<SqlValue>,
}

impl SqlQuery {
    /// `{"kind", "sql", "params"}`, as `arbiter query` prints it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings, integers and booleans serialize")
    }
}

impl Query {
    /// The answer as SQL in `dialect`.
    pub fn to_sql(&self, dialect: Dialect) -> Result<SqlQuery, QueryError> {
        let (kind, sql, params) = match self {
            Self::All => ("all", "TRUE".to_owned(), Vec::new()),
            Self::None => ("none", "FALSE".to_owned(), Vec::new()),
            Self::Where(c) => match c.to_sql(dialect)? {
                // The residual folded to a constant.
                (sql, _) if sql == "FALSE" => ("none", sql, Vec::new()),
                (sql, _) if sql == "TRUE" => ("all", sql, Vec::new()),
                (sql, params) => ("where", sql, params),
            },
        };
        Ok(SqlQuery { kind, sql, params })
    }
}

impl Condition {
    fn to_sql(&self, dialect: Dialect) -> Result<(String, Vec<SqlValue>), QueryError> {
        let mapping = self.bundle.sql_mapping.as_ref().ok_or_else(|| {
            QueryError::Untranslatable(format!(
                "the bundle has no `{}` to write queries as SQL",
                mapping::SQL_MAPPING
            ))
        })?;
        let ancestors = |uid: &EntityUID| match self.store.entity(uid) {
            cedar_policy_core::entities::Dereference::Data(e) => {
                Some(e.ancestors().cloned().collect())
            }
            _ => None,
        };
        let mut t = sql::Translator::new(mapping, dialect, &self.resource_type, &ancestors)
            .map_err(QueryError::Untranslatable)?;
        let mut each = |policies: &[(PolicyID, Arc<Residual>)]| {
            policies
                .iter()
                .map(|(id, r)| {
                    t.holds(r).map_err(|e| {
                        QueryError::Untranslatable(format!(
                            "policy `{id}`: cannot write `{}` as SQL: {}",
                            e.expression, e.why
                        ))
                    })
                })
                .collect::<Result<Vec<String>, _>>()
        };
        let any = |conditions: Vec<String>| {
            conditions
                .iter()
                .fold("FALSE".to_owned(), |all, c| sql::or(&all, c))
        };
        let permitted = any(each(&self.permits)?);
        let forbidden = any(each(&self.forbids)?);
        let text = match forbidden.as_str() {
            "FALSE" => permitted,
            "TRUE" => "FALSE".to_owned(),
            _ => sql::and(&permitted, &sql::not(&forbidden)),
        };
        Ok(t.finish(&text))
    }

    /// The residual policies, as Cedar text: `(permit|forbid, id, condition)`.
    pub fn residuals(&self) -> Vec<(&'static str, String, String)> {
        let show = |effect: &'static str, (id, r): &(PolicyID, Arc<Residual>)| {
            (
                effect,
                id.to_string(),
                ast::Expr::from(r.as_ref().clone()).to_string(),
            )
        };
        self.permits
            .iter()
            .map(|p| show("permit", p))
            .chain(self.forbids.iter().map(|f| show("forbid", f)))
            .collect()
    }
}

impl QueryRequest {
    /// Reads a query given as request JSON whose `resource` names a `type` and no `id`.
    pub(crate) fn from_json(json: &str, reader: &RequestReader<'_>) -> Result<Self, RequestError> {
        let mut value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| RequestError::Malformed(e.to_string()))?;
        let resource = value
            .get_mut("resource")
            .and_then(|r| r.as_object_mut())
            .ok_or_else(|| {
                RequestError::Malformed("missing `resource` (an object with a `type`)".into())
            })?;
        if resource.contains_key("id") {
            return Err(RequestError::Malformed(
                "a query's `resource` names a `type` and no `id`".into(),
            ));
        }
        // Read as a check of one placeholder resource, so every other field reads the same.
        resource.insert("id".into(), "".into());
        if value.get("token").is_some() {
            return Err(RequestError::Malformed(
                "a query names its `principal`; `token` is not read by queries".into(),
            ));
        }
        let request = Request::from_json(&value.to_string(), reader)?;
        let principal = request
            .principal
            .clone()
            .ok_or_else(|| RequestError::Malformed("missing `principal`".into()))?;
        // The context as the schema types it, read again by Cedar's reader where the fast one
        // guessed otherwise, as a check reads it.
        let context = match reader.schema {
            None => request.context.clone(),
            Some(schema) => match cedar_policy::Request::new(
                principal.clone(),
                request.action.clone(),
                request.resource.clone(),
                request.context.clone(),
                Some(schema),
            ) {
                Ok(_) => request.context.clone(),
                Err(
                    e @ (cedar_policy::RequestValidationError::InvalidContext(_)
                    | cedar_policy::RequestValidationError::TypeOfContext(_)),
                ) => match request.reread_context(schema) {
                    Some(reread) => reread?,
                    None => return Err(RequestError::validation(e)),
                },
                Err(e) => return Err(RequestError::validation(e)),
            },
        };
        Ok(Self {
            principal,
            action: request.action,
            resource_type: request.resource.type_name().clone(),
            context,
            entities: request.entities,
        })
    }
}

/// Partially evaluates `request` against `bundle` (its entities already checked as a check's
/// are).
pub(crate) fn plan(bundle: Arc<Bundle>, request: &QueryRequest) -> Result<Query, QueryError> {
    let schema = bundle
        .schema
        .as_ref()
        .ok_or_else(|| QueryError::Untranslatable("queries need the bundle's schema".into()))?;
    let principal: &EntityUID = request.principal.as_ref();
    let action: &EntityUID = request.action.as_ref();
    let resource_type: ast::EntityType =
        ast::EntityType::from(ast::Name::from(request.resource_type.as_ref().clone()));
    // The context as the schema types it (a check of a placeholder resource of the type).
    let placeholder = EntityUid::from_type_name_and_id(
        request.resource_type.clone(),
        cedar_policy::EntityId::new(""),
    );
    let checked = cedar_policy::Request::new(
        request.principal.clone(),
        request.action.clone(),
        placeholder,
        request.context.clone(),
        Some(schema),
    )
    .map_err(RequestError::validation)?;
    let ast_request: &ast::Request = checked.as_ref();
    let context: Option<Arc<BTreeMap<SmolStr, ast::Value>>> = match ast_request.context() {
        Some(ast::Context::Value(record)) => Some(record.clone()),
        _ => {
            return Err(
                RequestError::Context("the context is not a record of values".into()).into(),
            )
        }
    };
    let mut seeds = vec![principal.clone(), action.clone()];
    if let Some(record) = &context {
        record
            .values()
            .for_each(|v| crate::bundle::entities::push_value_references(v, &mut seeds));
    }
    let own: Vec<Arc<ast::Entity>> = request
        .entities
        .iter()
        .map(|e| Arc::new(e.as_ref().clone()))
        .collect();
    let hierarchy_may_change = bundle.entities.may_regroup(action, &own);
    seeds.extend_from_slice(bundle.index.literals(action, hierarchy_may_change));
    let store = bundle.entities.layered(seeds, own)?;
    // Only the policies whose scope can match a request of these types.
    let policies = bundle.index.for_types(
        principal.entity_type(),
        action,
        &resource_type,
        hierarchy_may_change,
    );
    let partial_request = tpe::request::PartialRequest::new(
        principal.clone().into(),
        action.clone(),
        tpe::request::PartialEntityUID {
            ty: resource_type.clone(),
            eid: None,
        },
        context,
        schema.as_ref(),
    )
    .map_err(|e| RequestError::invalid(&e))?;
    let partial_entities =
        tpe::entities::PartialEntities::from_concrete(store.clone(), schema.as_ref())
            .map_err(|e| RequestError::entities(&e))?;
    let response = tpe::is_authorized(
        &policies,
        &partial_request,
        &partial_entities,
        schema.as_ref(),
    )
    .map_err(|e| QueryError::Untranslatable(format!("partial evaluation failed: {e}")))?;

    let (mut permits, mut forbids) = (Vec::new(), Vec::new());
    let mut permitted = false;
    for policy in response.policies() {
        let residual = policy.get_residual();
        if residual.is_false() || residual.is_error() {
            continue;
        }
        let id = policy.get_policy_id().clone();
        match (policy.get_effect(), residual.is_true()) {
            (Effect::Forbid, true) => return Ok(Query::None),
            (Effect::Permit, true) => permitted = true,
            (Effect::Permit, false) => permits.push((id, residual)),
            (Effect::Forbid, false) => forbids.push((id, residual)),
        }
    }
    if !permitted && permits.is_empty() {
        return Ok(Query::None);
    }
    // The same query writes the same SQL (TPE's order is a hash map's).
    permits.sort_by(|a, b| a.0.cmp(&b.0));
    forbids.sort_by(|a, b| a.0.cmp(&b.0));
    if permitted && forbids.is_empty() {
        return Ok(Query::All);
    }
    if permitted {
        // Some permit holds everywhere: only the forbids narrow it.
        permits = vec![(PolicyID::from_string("(always)"), Arc::new(true_residual()))];
    }
    Ok(Query::Where(Condition {
        bundle,
        resource_type,
        permits,
        forbids,
        store,
    }))
}

/// A residual that is concretely true.
fn true_residual() -> Residual {
    Residual::Concrete {
        value: ast::Value::from(true),
        ty: cedar_policy_core::validator::types::Type::primitive_boolean(),
    }
}
