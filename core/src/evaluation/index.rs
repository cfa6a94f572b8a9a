//! The exact policy index: for a request, the policies whose scope can match it.
//!
//! Every policy is filed under each action its action scope can match (known actions: the
//! schema's, the static store's and those named in scopes; any other action can only match
//! policies with an unconstrained action), and within an action under one anchor: its resource
//! or principal when the scope pins it with `==`, else the entity its resource or principal must
//! be `in`, else nowhere in particular. A request looks up its action, then the anchors its
//! principal and resource (and their ancestors) can satisfy. A request whose own entities can
//! regroup its action is matched against every policy. Scope constraints never error, so
//! leaving out a policy whose scope cannot match changes neither the decision, nor the reasons,
//! nor the errors.

use std::collections::BTreeSet;

// foldhash, not SipHash: every decision looks up its action and its anchors here.
use hashbrown::HashMap;
use std::sync::Arc;

use cedar_policy::{ActionConstraint, PolicySet, PrincipalConstraint, ResourceConstraint, Schema};
use cedar_policy_core::ast::{self, EntityType, EntityUID, ExprKind, Literal};
use cedar_policy_core::entities::{Dereference, Entities};

use crate::bundle::entities::StaticEntities;
use crate::evaluation::eval::Store;

#[derive(Clone, Copy)]
enum Anchor {
    ResourceEq = 0,
    PrincipalEq = 1,
    ResourceIn = 2,
    PrincipalIn = 3,
}

/// The policies one action can reach.
#[derive(Default)]
struct ActionPolicies {
    /// Policies whose principal and resource scopes pin nothing (only `is` or nothing).
    unanchored: Vec<usize>,
    /// Per anchor kind (indexed by `Anchor as usize`): anchor entity -> policies.
    anchored: [HashMap<EntityUID, Vec<usize>>; 4],
    /// Entities named in the conditions of these policies (per-request stores must hold them).
    literals: Vec<EntityUID>,
}

impl ActionPolicies {
    fn insert(&mut self, n: usize, anchor: Option<(Anchor, EntityUID)>) {
        match anchor {
            Some((anchor, uid)) => self.anchored[anchor as usize]
                .entry(uid)
                .or_default()
                .push(n),
            None => self.unanchored.push(n),
        }
    }
}

/// A policy prepared for evaluation: its condition (scope and body as one expression, what
/// Cedar's evaluator rebuilds on every call) built once, the same without the action scope
/// (for when the index has already matched the action), and the entity types its scope demands
/// of the principal and the resource (`is T`, or `== T::"x"`), if any.
pub(crate) struct IndexedPolicy {
    pub(crate) policy: Arc<ast::Policy>,
    /// The policy id as decisions report it.
    pub(crate) id: String,
    /// The values of a linked policy's template slots, as literals for the fast evaluator.
    pub(crate) slots: Vec<(ast::SlotId, Literal)>,
    condition: ast::Expr,
    condition_past_action: ast::Expr,
    /// Positions in `PolicyIndex::types`.
    principal_type: Option<usize>,
    resource_type: Option<usize>,
}

pub(crate) struct PolicyIndex {
    policies: Vec<IndexedPolicy>,
    /// The entity types policies' scopes demand, each once: a request's principal and resource
    /// types are looked up here once, and each policy's demand is a position to compare.
    types: Vec<EntityType>,
    by_action: HashMap<EntityUID, ActionPolicies>,
    /// Actions known at load time to nobody: only unconstrained-action policies apply.
    other_actions: ActionPolicies,
    /// Every policy, for requests whose own entities may change the action hierarchy.
    everything: ActionPolicies,
}

impl PolicyIndex {
    pub(crate) fn build(
        set: &PolicySet,
        schema: Option<&Schema>,
        entities: &StaticEntities,
    ) -> Self {
        let mut known: BTreeSet<EntityUID> = BTreeSet::new();
        if let Some(schema) = schema {
            known.extend(schema.actions().map(|a| a.as_ref().clone()));
        }
        known.extend(
            entities
                .store()
                .iter()
                .map(|e| e.uid())
                .filter(|uid| uid.entity_type().is_action())
                .cloned(),
        );
        let mut groups: BTreeSet<EntityUID> = BTreeSet::new();
        for policy in set.policies() {
            match policy.action_constraint() {
                ActionConstraint::Any => {}
                ActionConstraint::Eq(a) => {
                    known.insert(a.as_ref().clone());
                }
                ActionConstraint::In(list) => {
                    groups.extend(list.iter().map(|a| a.as_ref().clone()))
                }
            }
        }
        // Without a schema, a request's action may be any entity: one of another type than
        // `Action` is in a group when the static store says so, and must find those policies.
        known.extend(
            entities
                .store()
                .iter()
                .filter(|e| e.ancestors().any(|a| groups.contains(a)))
                .map(|e| e.uid().clone()),
        );
        known.extend(groups);

        let mut index = Self {
            policies: Vec::new(),
            types: Vec::new(),
            by_action: known
                .iter()
                .map(|a| (a.clone(), ActionPolicies::default()))
                .collect(),
            other_actions: ActionPolicies::default(),
            everything: ActionPolicies::default(),
        };
        for (n, policy) in set.policies().enumerate() {
            let anchor = anchor(policy);
            let literals = condition_literals(policy.as_ref());
            let mut file = |bucket: &mut ActionPolicies| {
                bucket.insert(n, anchor.clone());
                bucket.literals.extend(literals.iter().cloned());
            };
            file(&mut index.everything);
            match policy.action_constraint() {
                ActionConstraint::Any => {
                    index.by_action.values_mut().for_each(&mut file);
                    file(&mut index.other_actions);
                }
                ActionConstraint::Eq(a) => {
                    // Every action named in a scope was made known above.
                    if let Some(bucket) = index.by_action.get_mut(a.as_ref()) {
                        file(bucket);
                    }
                }
                ActionConstraint::In(list) => {
                    let groups: Vec<&EntityUID> = list.iter().map(|a| a.as_ref()).collect();
                    for (action, bucket) in index.by_action.iter_mut() {
                        if groups.iter().any(|g| is_in(entities.store(), action, g)) {
                            file(bucket);
                        }
                    }
                }
            }
            let ast_policy = policy.as_ref().clone();
            let template = ast_policy.template();
            // Cedar's condition is `principal && (action && (resource && body))`. Scope
            // constraints never error, and a policy is only selected when the index has matched
            // its action scope, its anchor and the types its scope demands (see `select`), so
            // those constraints are true and left out; the others stay.
            let body = template
                .non_scope_constraints()
                .cloned()
                .unwrap_or_else(|| ast::Expr::val(true));
            // Per scope: the type it demands (if any), and whether the index leaves anything
            // of it unmatched (an `in`, or an `==` other than the anchor).
            let (principal_type, principal_left) = match policy.principal_constraint() {
                PrincipalConstraint::Any => (None, false),
                PrincipalConstraint::Is(t) => (Some(t.as_ref().clone()), false),
                PrincipalConstraint::IsIn(t, _) => (Some(t.as_ref().clone()), true),
                PrincipalConstraint::Eq(uid) => (
                    Some(uid.as_ref().entity_type().clone()),
                    !matches!(anchor, Some((Anchor::PrincipalEq, _))),
                ),
                PrincipalConstraint::In(_) => (None, true),
            };
            // A resource `==` is always the anchor (see `anchor`).
            let (resource_type, resource_left) = match policy.resource_constraint() {
                ResourceConstraint::Any => (None, false),
                ResourceConstraint::Is(t) => (Some(t.as_ref().clone()), false),
                ResourceConstraint::IsIn(t, _) => (Some(t.as_ref().clone()), true),
                ResourceConstraint::Eq(uid) => (Some(uid.as_ref().entity_type().clone()), false),
                ResourceConstraint::In(_) => (None, true),
            };
            let condition_past_action = [
                principal_left.then(|| template.principal_constraint().as_expr()),
                resource_left.then(|| template.resource_constraint().as_expr()),
            ]
            .into_iter()
            .flatten()
            .rev()
            .fold(body, |rest, scope| ast::Expr::and(scope, rest));
            let principal_type = principal_type.map(|t| index.type_position(&t));
            let resource_type = resource_type.map(|t| index.type_position(&t));
            index.policies.push(IndexedPolicy {
                condition: ast_policy.condition(),
                condition_past_action,
                id: ast_policy.id().to_string(),
                slots: ast_policy
                    .env()
                    .iter()
                    .map(|(slot, uid)| (*slot, Literal::EntityUID(Arc::new(uid.clone()))))
                    .collect(),
                policy: Arc::new(ast_policy),
                principal_type,
                resource_type,
            });
        }
        for bucket in index
            .by_action
            .values_mut()
            .chain([&mut index.other_actions, &mut index.everything])
        {
            bucket.literals.sort();
            bucket.literals.dedup();
        }
        index
    }

    /// The position of `t` in `types`, added if new.
    fn type_position(&mut self, t: &EntityType) -> usize {
        match self.types.iter().position(|known| known == t) {
            Some(n) => n,
            None => {
                self.types.push(t.clone());
                self.types.len() - 1
            }
        }
    }

    /// Whether policy `p`'s scope admits a principal and a resource of the types at these
    /// positions in `types` (`None`: a type no scope demands).
    fn fits(p: &IndexedPolicy, principal: Option<usize>, resource: Option<usize>) -> bool {
        p.principal_type.is_none_or(|t| Some(t) == principal)
            && p.resource_type.is_none_or(|t| Some(t) == resource)
    }

    fn position(&self, t: &EntityType) -> Option<usize> {
        self.types.iter().position(|known| known == t)
    }

    /// Entities named in the conditions of the policies `action` can reach.
    pub(crate) fn literals(&self, action: &EntityUID, hierarchy_may_change: bool) -> &[EntityUID] {
        &self.bucket(action, hierarchy_may_change).literals
    }

    /// The policies whose scope can match some request of `action` by a principal of type
    /// `principal` on a resource of type `resource` (a list query's): those filed under the
    /// action whose scope demands no other principal or resource type. A policy left out is
    /// false for every such request.
    pub(crate) fn for_types(
        &self,
        principal: &EntityType,
        action: &EntityUID,
        resource: &EntityType,
        hierarchy_may_change: bool,
    ) -> ast::PolicySet {
        let bucket = self.bucket(action, hierarchy_may_change);
        let mut numbers: BTreeSet<usize> = bucket.unanchored.iter().copied().collect();
        for anchored in &bucket.anchored {
            numbers.extend(anchored.values().flatten());
        }
        let mut set = ast::PolicySet::new();
        let (principal, resource) = (self.position(principal), self.position(resource));
        for n in numbers {
            let p = &self.policies[n];
            if Self::fits(p, principal, resource) {
                // Policies of one valid set: adding them to a new one cannot clash.
                set.add(p.policy.as_ref().clone())
                    .expect("a policy of a valid set");
            }
        }
        set
    }

    fn bucket(&self, action: &EntityUID, hierarchy_may_change: bool) -> &ActionPolicies {
        if hierarchy_may_change {
            &self.everything
        } else {
            self.by_action.get(action).unwrap_or(&self.other_actions)
        }
    }

    /// The policies whose scope can match a request, given the store it is evaluated against
    /// (a policy left out is one whose scope is false for this request, so it neither holds
    /// nor errors), each with the condition to evaluate.
    /// `hierarchy_may_change` says the request brings entities that may give its action other
    /// ancestors than the static store does (see `StaticEntities::may_regroup`).
    pub(crate) fn select(
        &self,
        principal: &EntityUID,
        action: &EntityUID,
        resource: &EntityUID,
        store: Store<'_>,
        hierarchy_may_change: bool,
    ) -> Vec<(&IndexedPolicy, &ast::Expr)> {
        let bucket = self.bucket(action, hierarchy_may_change);
        let mut selected: Vec<usize> = Vec::with_capacity(bucket.unanchored.len() + 8);
        selected.extend_from_slice(&bucket.unanchored);
        if bucket.anchored.iter().any(|m| !m.is_empty()) {
            let mut lookup = |anchor: Anchor, uid: &EntityUID| {
                if let Some(found) = bucket.anchored[anchor as usize].get(uid) {
                    selected.extend_from_slice(found);
                }
            };
            lookup(Anchor::ResourceEq, resource);
            lookup(Anchor::PrincipalEq, principal);
            for (anchor, uid) in [
                (Anchor::ResourceIn, resource),
                (Anchor::PrincipalIn, principal),
            ] {
                lookup(anchor, uid);
                if let Some(Some(entity)) = store.lookup(uid) {
                    for ancestor in entity.ancestors() {
                        lookup(anchor, ancestor);
                    }
                }
            }
        }
        // The unanchored policies are in order; anchored ones, when any match, join them.
        if selected.len() > bucket.unanchored.len() {
            selected.sort_unstable();
        }
        let (principal_type, resource_type) = (
            self.position(principal.entity_type()),
            self.position(resource.entity_type()),
        );
        selected
            .iter()
            .map(|&n| &self.policies[n])
            .filter(|p| Self::fits(p, principal_type, resource_type))
            .map(|p| {
                // An action bucket holds only policies whose action scope the static hierarchy
                // satisfies; with action entities in the request, the whole condition is needed.
                let condition = if hierarchy_may_change {
                    &p.condition
                } else {
                    &p.condition_past_action
                };
                (p, condition)
            })
            .collect()
    }
}

/// The one anchor a policy is filed under, most selective first.
fn anchor(policy: &cedar_policy::Policy) -> Option<(Anchor, EntityUID)> {
    let resource = policy.resource_constraint();
    let principal = policy.principal_constraint();
    match (&resource, &principal) {
        (ResourceConstraint::Eq(r), _) => Some((Anchor::ResourceEq, r.as_ref().clone())),
        (_, PrincipalConstraint::Eq(p)) => Some((Anchor::PrincipalEq, p.as_ref().clone())),
        (ResourceConstraint::In(r) | ResourceConstraint::IsIn(_, r), _) => {
            Some((Anchor::ResourceIn, r.as_ref().clone()))
        }
        (_, PrincipalConstraint::In(p) | PrincipalConstraint::IsIn(_, p)) => {
            Some((Anchor::PrincipalIn, p.as_ref().clone()))
        }
        _ => None,
    }
}

/// `action in group` against the static store, as Cedar evaluates it.
fn is_in(store: &Entities, action: &EntityUID, group: &EntityUID) -> bool {
    action == group
        || matches!(store.entity(action), Dereference::Data(e) if e.is_descendant_of(group))
}

/// Entity literals in the `when`/`unless` conditions (scope literals never need entity data).
fn condition_literals(policy: &ast::Policy) -> Vec<EntityUID> {
    policy
        .non_scope_constraints()
        .into_iter()
        .flat_map(|e| e.subexpressions())
        .filter_map(|e| match e.expr_kind() {
            ExprKind::Lit(Literal::EntityUID(uid)) => Some(uid.as_ref().clone()),
            _ => None,
        })
        .collect()
}
