//! Static entities, and the per-request entity store layered over them.
//!
//! A request without entities of its own is evaluated against the bundle's static store as it
//! is. A request with entities gets a small store of its own: the slice of static entities the
//! request can reach (its principal, action and resource, entities named in its context or in
//! the conditions of the policies it may evaluate, everything reachable from those through
//! attributes and tags, and all their ancestors), with the request's entities upserted on top.
//! Cedar can only dereference entities it reaches that way, so the slice decides exactly as the
//! whole store with the request's entities upserted would, without copying or re-closing it.
//! When the request's entities are all new, their ancestors are closed here and no upsert runs.
//!
//! Static entities in plain JSON are read without Cedar's entity parser (`plain_entities`);
//! anything else goes through it.

// foldhash (randomly seeded per process), not SipHash: a request that brings entities builds
// these maps and looks up the static ones, and this is most of its cost.
use hashbrown::{HashMap, HashSet};
use std::borrow::Borrow;
use std::sync::Arc;

use cedar_policy::{EntityTypeName, Schema};
use cedar_policy_core::ast::{self, EntityUID, Literal, PartialValue, Value, ValueKind};
use cedar_policy_core::entities::conformance::EntitySchemaConformanceChecker;
use cedar_policy_core::entities::Schema as _;
use cedar_policy_core::entities::{Entities, EntityJsonParser, NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;
use cedar_policy_core::validator::CoreSchema;

use crate::bundle::BundleFile;
use crate::evaluation::context::canonical_type_name;
use crate::evaluation::shapes::Shapes;
use crate::wire::error::{LoadError, Problem, RequestError};
use crate::wire::request::WireEntity;

/// The bundle's entities (including the schema's action entities), closed under `in`.
pub(crate) struct StaticEntities {
    by_uid: HashMap<EntityUID, Arc<ast::Entity>>,
    /// Ancestors named by static entities but absent from the store. A request entity with one
    /// of these uids changes static entities' ancestors, so its store takes Cedar's full upsert.
    dangling: HashSet<EntityUID>,
    /// The same entities as one Cedar store, sharing their data with `by_uid`.
    store: Entities,
}

impl StaticEntities {
    /// Parses `entities.json` (when present) against the schema (when present); the schema's
    /// action entities are added either way, and so are `more` (read from other bundle files,
    /// already checked against the schema), whose uids must be new.
    pub(crate) fn load(
        file: Option<&BundleFile>,
        schema: Option<&Schema>,
        shapes: Option<&Shapes>,
        more: Vec<ast::Entity>,
    ) -> Result<Self, LoadError> {
        let (path, text) = match file {
            Some(f) => (f.path.as_str(), crate::bundle::text(f)?),
            None => ("entities.json", "[]"),
        };
        let parsed: Vec<Arc<ast::Entity>> = match plain_entities(text, schema, shapes) {
            Some(parsed) => parsed,
            None => {
                // The fast reader refuses duplicate keys; Cedar's parser would keep the last.
                crate::wire::json::unique_keys(text).map_err(|e| {
                    LoadError::Entities(vec![crate::bundle::json_problem(path, &e)])
                })?;
                let core_schema = schema.map(|s| CoreSchema::new(s.as_ref()));
                EntityJsonParser::new(
                    core_schema.as_ref(),
                    Extensions::all_available(),
                    TCComputation::ComputeNow,
                )
                .from_json_str(text)
                .map_err(|e| LoadError::Entities(vec![entities_problem(path, text, &e)]))?
                .into_iter()
                .map(Arc::new)
                .collect()
            }
        };
        let mut by_uid: HashMap<EntityUID, Arc<ast::Entity>> =
            parsed.into_iter().map(|e| (e.uid().clone(), e)).collect();
        for entity in more {
            let uid = entity.uid().clone();
            if by_uid.insert(uid.clone(), Arc::new(entity)).is_some() {
                return Err(LoadError::Entities(vec![Problem::in_file(
                    path,
                    format!("{uid} is also defined by another bundle file"),
                )]));
            }
        }
        let store = Entities::new()
            .add_entities(
                by_uid.values().cloned(),
                None::<&NoEntitiesSchema>,
                TCComputation::AssumeAlreadyComputed,
                Extensions::all_available(),
            )
            .map_err(|e| LoadError::Entities(vec![entities_problem(path, text, &e)]))?;
        let dangling = by_uid
            .values()
            .flat_map(|e| e.ancestors())
            .filter(|uid| !by_uid.contains_key(*uid))
            .cloned()
            .collect();
        Ok(Self {
            by_uid,
            dangling,
            store,
        })
    }

    /// Every entity as Cedar entity JSON, sorted by uid.
    pub(crate) fn to_json(&self) -> String {
        let mut entities: Vec<&Arc<ast::Entity>> = self.by_uid.values().collect();
        entities.sort_by_key(|e| e.uid().to_string());
        let values: Vec<serde_json::Value> = entities
            .iter()
            .filter_map(|e| e.to_json_value().ok())
            .collect();
        serde_json::Value::Array(values).to_string()
    }

    /// Whether a request's own entities can give `action` other ancestors than this store
    /// does: one of them is the action itself or one of its (static) ancestors. Whatever the
    /// entity types, so that it holds without a schema too.
    pub(crate) fn may_regroup(&self, action: &EntityUID, own: &[Arc<ast::Entity>]) -> bool {
        if own.is_empty() {
            return false;
        }
        let statics = self.by_uid.get(action);
        own.iter()
            .any(|e| e.uid() == action || statics.is_some_and(|a| a.is_descendant_of(e.uid())))
    }

    /// The static entity `uid`, if any.
    pub(crate) fn get(&self, uid: &EntityUID) -> Option<&ast::Entity> {
        self.by_uid.get(uid).map(Arc::as_ref)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_uid.len()
    }

    /// The whole static store.
    pub(crate) fn store(&self) -> &Entities {
        &self.store
    }

    /// A store for one request: the static slice reachable from `seeds` and from the request's
    /// own entities, with those upserted over it. The request's entities must already conform
    /// to the schema, if any (see [`validate_entity`]).
    pub(crate) fn layered(
        &self,
        seeds: impl IntoIterator<Item = EntityUID>,
        request_entities: Vec<Arc<ast::Entity>>,
    ) -> Result<Entities, RequestError> {
        let overlay: HashMap<&EntityUID, &Arc<ast::Entity>> =
            request_entities.iter().map(|e| (e.uid(), e)).collect();
        let mut queue: Vec<EntityUID> = seeds.into_iter().collect();
        queue.extend(overlay.keys().map(|uid| (*uid).clone()));
        let mut seen: HashSet<EntityUID> = HashSet::new();
        let mut slice: Vec<Arc<ast::Entity>> = Vec::new();
        while let Some(uid) = queue.pop() {
            if seen.contains(&uid) {
                continue;
            }
            // The static version is kept even when the request replaces it, so that the upsert
            // below strips the edges it gave its descendants.
            if let Some(entity) = self.by_uid.get(&uid) {
                push_references(entity, &mut queue);
                queue.extend(entity.ancestors().cloned());
                slice.push(Arc::clone(entity));
            }
            if let Some(entity) = overlay.get(&uid) {
                push_references(entity, &mut queue);
                queue.extend(entity.parents().cloned());
            }
            seen.insert(uid);
        }
        drop(overlay); // it borrows request_entities, which the store takes below
        if let Some(closed) = self.closed_over_static(&request_entities) {
            // The request's entities neither replace nor extend static ones: their ancestors
            // are closed here, and one store is built with no transitive-closure repair.
            return Entities::new()
                .add_entities(
                    slice.into_iter().chain(closed),
                    None::<&NoEntitiesSchema>,
                    TCComputation::AssumeAlreadyComputed,
                    Extensions::all_available(),
                )
                .map_err(|e| RequestError::entities(&e));
        }
        let statics = Entities::new()
            .add_entities(
                slice,
                None::<&NoEntitiesSchema>,
                TCComputation::AssumeAlreadyComputed,
                Extensions::all_available(),
            )
            .map_err(|e| RequestError::entities(&e))?;
        statics
            .upsert_entities(
                request_entities,
                None::<&NoEntitiesSchema>,
                TCComputation::ComputeNow,
                Extensions::all_available(),
            )
            .map_err(|e| RequestError::entities(&e))
    }

    /// The request's entities with their ancestors closed over each other and the static store,
    /// when that is all Cedar's upsert would do: no request entity shares a uid with a static
    /// one (or another request entity) or with a dangling static ancestor, and their parents
    /// form no cycle (Cedar words that error). `None` otherwise.
    fn closed_over_static(&self, request: &[Arc<ast::Entity>]) -> Option<Vec<Arc<ast::Entity>>> {
        if request
            .iter()
            .any(|e| self.by_uid.contains_key(e.uid()) || self.dangling.contains(e.uid()))
        {
            return None;
        }
        let indirect = indirect_ancestors(request, |uid| self.get(uid))?;
        Some(
            request
                .iter()
                .zip(indirect)
                .map(|(entity, indirect)| {
                    let mut entity = Arc::clone(entity);
                    if !indirect.is_empty() {
                        let entity = Arc::make_mut(&mut entity);
                        indirect
                            .into_iter()
                            .for_each(|a| entity.add_indirect_ancestor(a));
                    }
                    entity
                })
                .collect(),
        )
    }
}

fn entities_problem(path: &str, text: &str, e: &dyn miette::Diagnostic) -> Problem {
    Problem::from_diagnostic(path, text, e)
}

/// Parses one request entity in Cedar's entity JSON format, guided by the schema if given.
pub(crate) fn parse_entity(
    json: serde_json::Value,
    schema: Option<&Schema>,
) -> Result<ast::Entity, RequestError> {
    let core_schema = schema.map(|s| CoreSchema::new(s.as_ref()));
    EntityJsonParser::new(
        core_schema.as_ref(),
        Extensions::all_available(),
        TCComputation::ComputeNow,
    )
    .single_from_json_value(json)
    .map_err(|e| RequestError::entities(&e))
}

/// The static entities read without Cedar's entity parser, as Cedar's parser would read them:
/// only when every entity is plain (see `WireEntity`), no type is an action type, every type name
/// is written as Cedar writes it, no uid repeats, every entity (with a schema) is vouched for by
/// the compiled shapes, and the hierarchy has no cycle. `None` leaves the whole file to Cedar's
/// parser, which decides and words any error.
fn plain_entities(
    text: &str,
    schema: Option<&Schema>,
    shapes: Option<&Shapes>,
) -> Option<Vec<Arc<ast::Entity>>> {
    // Entity references only where the compiled shapes will check that the schema expects them.
    match (schema, shapes) {
        (Some(_), Some(_)) => plain_entities_of::<true>(text, schema, shapes),
        _ => plain_entities_of::<false>(text, schema, shapes),
    }
}

fn plain_entities_of<const REFS: bool>(
    text: &str,
    schema: Option<&Schema>,
    shapes: Option<&Shapes>,
) -> Option<Vec<Arc<ast::Entity>>> {
    let wire: Vec<WireEntity<REFS>> = serde_json::from_str(text).ok()?;
    let mut names: HashMap<String, Option<EntityTypeName>> = HashMap::new();
    let mut resolve = |name: &str| -> Option<EntityTypeName> {
        names
            .entry(name.to_owned())
            .or_insert_with(|| canonical_type_name(name))
            .clone()
    };
    let mut entities = Vec::with_capacity(wire.len());
    for entity in wire {
        let entity = entity.into_entity(&mut resolve)?;
        let fine = !entity.uid().entity_type().is_action()
            && (schema.is_none() || shapes.is_some_and(|s| s.vouch_entity(&entity)));
        if !fine {
            return None;
        }
        entities.push(entity);
    }
    // What Cedar's parser computes: each entity's ancestors, closed (a repeated uid or a
    // cycle leaves the file to it).
    let indirect = indirect_ancestors(&entities, |_| None)?;
    let mut closed: Vec<Arc<ast::Entity>> = entities
        .into_iter()
        .zip(indirect)
        .map(|(mut entity, indirect)| {
            indirect
                .into_iter()
                .for_each(|a| entity.add_indirect_ancestor(a));
            Arc::new(entity)
        })
        .collect();
    if let Some(schema) = schema {
        closed.extend(CoreSchema::new(schema.as_ref()).action_entities());
    }
    Some(closed)
}

/// The indirect ancestors (the ancestors that are not parents) of each of `entities`, closed
/// over each other and over `outside`: the entity with a uid none of them has, its ancestors
/// already closed. `None` when two share a uid or their parents form a cycle (Cedar decides
/// and words those).
fn indirect_ancestors<'o, E: Borrow<ast::Entity>>(
    entities: &[E],
    outside: impl Fn(&EntityUID) -> Option<&'o ast::Entity>,
) -> Option<Vec<HashSet<EntityUID>>> {
    let entity = |n: usize| entities[n].borrow();
    let index: HashMap<&EntityUID, usize> = entities
        .iter()
        .enumerate()
        .map(|(n, e)| (e.borrow().uid(), n))
        .collect();
    if index.len() != entities.len() {
        return None;
    }
    // Depth-first, children after their parents; a parent still open is a cycle.
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![0u8; entities.len()];
    let mut indirect: Vec<HashSet<EntityUID>> = vec![HashSet::new(); entities.len()];
    let mut stack: Vec<(usize, bool)> = Vec::new();
    for root in 0..entities.len() {
        stack.push((root, false));
        while let Some((n, parents_done)) = stack.pop() {
            if parents_done {
                let mut closed = HashSet::new();
                for parent in entity(n).parents() {
                    match index.get(parent) {
                        Some(&p) => {
                            closed.extend(entity(p).parents().chain(indirect[p].iter()).cloned())
                        }
                        None => {
                            if let Some(outside) = outside(parent) {
                                closed.extend(outside.ancestors().cloned());
                            }
                        }
                    }
                }
                closed.retain(|a| !entity(n).parents().any(|p| p == a));
                indirect[n] = closed;
                state[n] = DONE;
                continue;
            }
            match state[n] {
                DONE => continue,
                OPEN => return None,
                _ => {}
            }
            state[n] = OPEN;
            stack.push((n, true));
            for parent in entity(n).parents() {
                if let Some(&p) = index.get(parent) {
                    match state[p] {
                        OPEN => return None,
                        DONE => {}
                        _ => stack.push((p, false)),
                    }
                }
            }
        }
    }
    Some(indirect)
}

/// Checks a request entity against the schema as Cedar's upsert would: vouched for by the
/// compiled shapes, else by Cedar's conformance checker, which words the error.
pub(crate) fn validate_entity(
    entity: &ast::Entity,
    schema: &Schema,
    shapes: Option<&Shapes>,
) -> Result<(), RequestError> {
    if shapes.is_some_and(|s| s.vouch_entity(entity)) {
        return Ok(());
    }
    EntitySchemaConformanceChecker::new(
        &CoreSchema::new(schema.as_ref()),
        Extensions::all_available(),
    )
    .validate_entity(entity)
    .map_err(|e| RequestError::entities(&e))
}

/// Queues every entity named in the attributes and tags of `entity`.
fn push_references(entity: &ast::Entity, queue: &mut Vec<EntityUID>) {
    for (_, value) in entity.attrs().chain(entity.tags()) {
        if let PartialValue::Value(value) = value {
            push_value_references(value, queue);
        }
    }
}

/// Queues every entity named anywhere inside `value`.
pub(crate) fn push_value_references(value: &Value, queue: &mut Vec<EntityUID>) {
    match value.value_kind() {
        ValueKind::Lit(Literal::EntityUID(uid)) => queue.push(uid.as_ref().clone()),
        ValueKind::Lit(_) | ValueKind::ExtensionValue(_) => {}
        ValueKind::Set(set) => set.iter().for_each(|v| push_value_references(v, queue)),
        ValueKind::Record(record) => record
            .values()
            .for_each(|v| push_value_references(v, queue)),
    }
}
