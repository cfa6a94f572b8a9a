//! The engine (exact policy index, per-request entity layering) against plain cedar-policy on
//! generated policy sets, entity graphs and requests: decision, reason set and error-policy set
//! must be identical, and a request whose entities Cedar rejects must be rejected.
//!
//! A batch of the same requests must answer each as a single call does.
//!
//! The reference merges the request's entities into the static ones (a request entity replaces
//! the static entity with its uid), parses the merged list in one go and calls
//! `Authorizer::is_authorized` over the whole policy set.

use std::collections::BTreeSet;
use std::str::FromStr;

use arbiter::{BundleFile, Effect, Engine};
use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicyId, PolicySet, Request, SlotId,
};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::DecideJson;

const USERS: usize = 6;
const GROUPS: usize = 4;
const DOCS: usize = 4;
const ACTIONS: usize = 4;

fn uid(ty: &str, id: String) -> Value {
    json!({"type": ty, "id": id})
}

fn user(i: usize) -> Value {
    uid("User", format!("u{i}"))
}

fn group(i: usize) -> Value {
    uid("Group", format!("g{i}"))
}

fn doc(i: usize) -> Value {
    uid("Doc", format!("d{i}"))
}

fn action(i: usize) -> Value {
    // a0..a3 are actions, ag0 and ag1 action groups, a9 an action nobody declares; without a
    // schema an action may be of any type: Op::"o0" is a static entity in action groups
    // (directly or through Mid::"m0"), Op::"o1" only ever comes with a request.
    match i {
        0..4 => uid("Action", format!("a{i}")),
        4 | 5 => uid("Action", format!("ag{}", i - 4)),
        6 => uid("Action", "a9".into()),
        7 => uid("Op", "o0".into()),
        _ => uid("Op", "o1".into()),
    }
}

/// Actions a request may name: every kind `action` makes.
const REQUEST_ACTIONS: usize = 9;

fn mid() -> Value {
    uid("Mid", "m0".into())
}

/// An action of another type than `Action` (`Op::"o0"` or `Op::"o1"`), in action groups and
/// now and then in `Mid::"m0"`.
fn op_entity(i: usize) -> impl Strategy<Value = Value> {
    (subset(2), any::<bool>()).prop_map(move |(groups, in_mid)| {
        let mut parents: Vec<Value> = groups.into_iter().map(|g| action(4 + g)).collect();
        if in_mid {
            parents.push(mid());
        }
        json!({"uid": action(7 + i), "attrs": {}, "parents": parents})
    })
}

/// `Mid::"m0"`, an entity of a third type between an action and its groups.
fn mid_entity() -> impl Strategy<Value = Value> {
    subset(2).prop_map(|groups| {
        json!({"uid": mid(), "attrs": {}, "parents": groups.into_iter().map(|g| action(4 + g)).collect::<Vec<_>>()})
    })
}

fn principal_scope() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("principal".to_owned()),
        (0..USERS).prop_map(|i| format!(r#"principal == User::"u{i}""#)),
        (0..GROUPS).prop_map(|g| format!(r#"principal in Group::"g{g}""#)),
        Just("principal is User".to_owned()),
        (0..GROUPS).prop_map(|g| format!(r#"principal is User in Group::"g{g}""#)),
    ]
}

fn action_scope() -> impl Strategy<Value = String> {
    let name = |i: usize| {
        if i < ACTIONS {
            format!(r#"Action::"a{i}""#)
        } else {
            format!(r#"Action::"ag{}""#, i - ACTIONS)
        }
    };
    prop_oneof![
        Just("action".to_owned()),
        (0..ACTIONS + 2).prop_map(move |i| format!("action == {}", name(i))),
        prop::collection::btree_set(0..ACTIONS + 2, 1..3).prop_map(move |set| {
            format!(
                "action in [{}]",
                set.into_iter().map(name).collect::<Vec<_>>().join(", ")
            )
        }),
    ]
}

fn resource_scope() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("resource".to_owned()),
        (0..DOCS).prop_map(|i| format!(r#"resource == Doc::"d{i}""#)),
        (0..GROUPS).prop_map(|g| format!(r#"resource in Group::"g{g}""#)),
        Just("resource is Doc".to_owned()),
        (0..DOCS).prop_map(|i| format!(r#"resource in Doc::"d{i}""#)),
    ]
}

/// Conditions that read attributes through references, literals and the context, so that a
/// store missing a reachable entity would show (as a different decision or error).
fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("true".to_owned()),
        (0..5i64).prop_map(|n| format!("principal.level > {n}")),
        Just("resource.owner == principal".to_owned()),
        (0..5i64).prop_map(|n| format!("resource.owner.level >= {n}")),
        (0..5i64).prop_map(|n| format!("principal.manager.level < {n}")),
        (0..5i64).prop_map(|n| format!("context.who.level == {n}")),
        (0..USERS, 0..5i64).prop_map(|(i, n)| format!(r#"User::"u{i}".level > {n}"#)),
        (0..GROUPS).prop_map(|g| format!(r#"resource.owner in Group::"g{g}""#)),
        (0..GROUPS).prop_map(|g| format!(r#"context.who in Group::"g{g}""#)),
        Just("principal in resource.owner".to_owned()),
        (0..GROUPS).prop_map(|g| format!(r#"principal.manager in Group::"g{g}""#)),
        (0..5i64).prop_map(|n| format!("context.x + principal.level > {n}")),
        Just(r#"action in Action::"ag0""#.to_owned()),
        Just(r#"resource has owner && resource.owner has manager"#.to_owned()),
    ]
}

fn policy() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        principal_scope(),
        action_scope(),
        resource_scope(),
        condition(),
        any::<bool>(),
    )
        .prop_map(|(permit, p, a, r, c, unless)| {
            let effect = if permit { "permit" } else { "forbid" };
            let clause = if unless { "unless" } else { "when" };
            format!("{effect}({p}, {a}, {r}) {clause} {{ {c} }};")
        })
}

/// A template with both slots, and the links made from it.
fn template_with_links() -> impl Strategy<Value = (String, Vec<(usize, usize)>)> {
    (any::<bool>(), condition(), prop::collection::vec((0..USERS + GROUPS, 0..DOCS + GROUPS), 0..4)).prop_map(
        |(permit, c, links)| {
            let effect = if permit { "permit" } else { "forbid" };
            (format!(r#"{effect}(principal in ?principal, action, resource in ?resource) when {{ {c} }};"#), links)
        },
    )
}

fn slot_principal(i: usize) -> Value {
    if i < USERS {
        user(i)
    } else {
        group(i - USERS)
    }
}

fn slot_resource(i: usize) -> Value {
    if i < DOCS {
        doc(i)
    } else {
        group(i - DOCS)
    }
}

fn subset(len: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::btree_set(0..len.max(1), 0..3)
        .prop_map(move |s| s.into_iter().filter(|&i| i < len).collect())
}

fn user_entity(i: usize) -> impl Strategy<Value = Value> {
    (0..5i64, prop::option::of(0..USERS + 1), subset(GROUPS)).prop_map(move |(level, manager, parents)| {
        let mut attrs = json!({"level": level});
        if let Some(m) = manager {
            attrs["manager"] = json!({"__entity": user(m)});
        }
        json!({"uid": user(i), "attrs": attrs, "parents": parents.into_iter().map(group).collect::<Vec<_>>()})
    })
}

fn group_entity(i: usize, parent_bound: usize) -> impl Strategy<Value = Value> {
    subset(parent_bound).prop_map(move |parents| json!({"uid": group(i), "attrs": {}, "parents": parents.into_iter().map(group).collect::<Vec<_>>()}))
}

fn doc_entity(i: usize) -> impl Strategy<Value = Value> {
    (0..USERS + 1, subset(GROUPS)).prop_map(move |(owner, parents)| {
        json!({"uid": doc(i), "attrs": {"owner": {"__entity": user(owner)}}, "parents": parents.into_iter().map(group).collect::<Vec<_>>()})
    })
}

fn action_entity(i: usize) -> impl Strategy<Value = Value> {
    subset(2).prop_map(move |groups| {
        json!({"uid": action(i), "attrs": {}, "parents": groups.into_iter().map(|g| action(4 + g)).collect::<Vec<_>>()})
    })
}

/// Static entities: users u0..u4 (u5 only ever comes with a request), groups in a DAG, docs,
/// actions in action groups, `Op::"o0"` and `Mid::"m0"`.
fn static_entities() -> impl Strategy<Value = Vec<Value>> {
    let users: Vec<_> = (0..USERS - 1).map(user_entity).collect();
    let groups: Vec<_> = (0..GROUPS).map(|i| group_entity(i, i)).collect();
    let docs: Vec<_> = (0..DOCS).map(doc_entity).collect();
    let actions: Vec<_> = (0..ACTIONS).map(action_entity).collect();
    (users, groups, docs, actions, op_entity(0), mid_entity()).prop_map(|(u, g, d, a, op, m)| {
        let mut all: Vec<Value> = u.into_iter().chain(g).chain(d).chain(a).collect();
        all.extend([op, m]);
        all.push(json!({"uid": action(4), "attrs": {}, "parents": []}));
        all.push(json!({"uid": action(5), "attrs": {}, "parents": []}));
        all
    })
}

/// Entities a request may bring: new or replacing users, groups (possibly closing a cycle),
/// docs, and now and then an action (of either type) or `Mid::"m0"` with other groups.
fn request_entity() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0..USERS).prop_flat_map(user_entity),
        2 => (0..GROUPS + 1).prop_flat_map(|i| group_entity(i, GROUPS)),
        2 => (0..DOCS + 1).prop_flat_map(doc_entity),
        3 => (0..ACTIONS).prop_flat_map(action_entity),
        // Actions of another type, and the entity between them and their groups.
        2 => (0..2usize).prop_flat_map(op_entity),
        1 => mid_entity(),
        // New entities only (no replacement): the store is built without Cedar's upsert.
        3 => user_entity(USERS - 1),
        2 => group_entity(GROUPS, GROUPS),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    policies: Vec<String>,
    templates: Vec<(String, Vec<(usize, usize)>)>,
    entities: Vec<Value>,
    requests: Vec<(usize, usize, usize, i64, usize, Vec<Value>)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(policy(), 0..12),
        prop::collection::vec(template_with_links(), 0..2),
        static_entities(),
        prop::collection::vec(
            (
                0..USERS + GROUPS,
                0..REQUEST_ACTIONS,
                0..DOCS + GROUPS,
                0..4i64,
                0..USERS + 1,
                prop::collection::vec(request_entity(), 0..4),
            ),
            1..8,
        ),
    )
        .prop_map(|(policies, templates, entities, requests)| Case {
            policies,
            templates,
            entities,
            requests,
        })
}

/// Cedar's own answer, or `None` when Cedar rejects the merged entities.
fn reference(
    set: &PolicySet,
    statics: &[Value],
    own: &[Value],
    request: &Request,
) -> Option<(Decision, BTreeSet<String>, BTreeSet<String>)> {
    let replaced: BTreeSet<String> = own.iter().map(|e| e["uid"].to_string()).collect();
    let merged: Vec<Value> = statics
        .iter()
        .filter(|e| !replaced.contains(&e["uid"].to_string()))
        .chain(own)
        .cloned()
        .collect();
    let entities = Entities::from_json_value(Value::Array(merged), None).ok()?;
    let response = Authorizer::new().is_authorized(request, set, &entities);
    Some((
        response.decision(),
        response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect(),
        response
            .diagnostics()
            .errors()
            .map(
                |cedar_policy::AuthorizationError::PolicyEvaluationError(e)| {
                    e.policy_id().to_string()
                },
            )
            .collect(),
    ))
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let mut text = case.policies.join("\n");
    let mut links = Vec::new();
    for (position, (template, template_links)) in (case.policies.len()..).zip(&case.templates) {
        text.push('\n');
        text.push_str(template);
        for (n, (p, r)) in template_links.iter().enumerate() {
            links.push(json!({
                "template_id": format!("policy{position}"),
                "link_id": format!("link{position}_{n}"),
                "args": {"?principal": slot_principal(*p), "?resource": slot_resource(*r)},
            }));
        }
    }
    let engine = Engine::from_files([
        BundleFile::new("policies.cedar", text.clone()),
        BundleFile::new(
            "entities.json",
            Value::Array(case.entities.clone()).to_string(),
        ),
        BundleFile::new("links.json", Value::Array(links.clone()).to_string()),
    ])
    .map_err(|e| TestCaseError::fail(format!("bundle does not load: {e}")))?;

    let mut set = PolicySet::from_str(&text).expect("generated policies parse");
    for link in &links {
        let values = [
            (
                SlotId::principal(),
                EntityUid::from_json(link["args"]["?principal"].clone()).unwrap(),
            ),
            (
                SlotId::resource(),
                EntityUid::from_json(link["args"]["?resource"].clone()).unwrap(),
            ),
        ];
        set.link(
            PolicyId::new(link["template_id"].as_str().unwrap()),
            PolicyId::new(link["link_id"].as_str().unwrap()),
            values.into_iter().collect(),
        )
        .expect("generated links are valid");
    }

    for (p, a, r, x, who, own) in &case.requests {
        // Principals are mostly users, now and then a group (so `is` scopes filter).
        let (p, a, r) = (slot_principal(*p), action(*a), slot_resource(*r));
        let context = json!({"x": x, "who": {"__entity": user(*who)}});
        let json_request = json!({"principal": p, "action": a, "resource": r, "context": context, "entities": own});
        let request = Request::new(
            EntityUid::from_json(p.clone()).unwrap(),
            EntityUid::from_json(a.clone()).unwrap(),
            EntityUid::from_json(r.clone()).unwrap(),
            Context::from_json_value(context, None).unwrap(),
            None,
        )
        .unwrap();
        let expected = reference(&set, &case.entities, own, &request);
        let got = engine.decide_json(&json_request.to_string());
        // The typed path answers as the JSON path does (entities Cedar's builder refuses, such
        // as a cycle, cannot be given to it).
        let typed: Option<Vec<cedar_policy::Entity>> = own
            .iter()
            .map(|e| cedar_policy::Entity::from_json_value(e.clone(), None).ok())
            .collect();
        if let Some(typed) = typed {
            let typed = arbiter::Request::new(
                EntityUid::from_json(p.clone()).unwrap(),
                EntityUid::from_json(a.clone()).unwrap(),
                EntityUid::from_json(r.clone()).unwrap(),
            )
            .with_context(Context::from_json_value(json_request["context"].clone(), None).unwrap())
            .with_entities(typed);
            match (engine.authorize(&typed), &got) {
                (Ok(t), Ok(j)) => prop_assert_eq!(&t, j, "typed and JSON: {}", json_request),
                (Err(t), Err(j)) => prop_assert_eq!(t.kind(), j.kind(), "{}", json_request),
                (t, j) => prop_assert!(false, "typed {:?}, JSON {:?}: {}", t, j, json_request),
            }
        }
        match (expected, got) {
            (None, Err(e)) => prop_assert_eq!(e.kind(), "invalid_entities"),
            (None, Ok(d)) => prop_assert!(
                false,
                "cedar rejects the entities, arbiter decided {}",
                d.to_json()
            ),
            (Some(_), Err(e)) => prop_assert!(false, "arbiter failed: {e} on {json_request}"),
            (Some((decision, reasons, errors)), Ok(d)) => {
                let got_reasons: BTreeSet<String> = d.reasons.iter().cloned().collect();
                let got_errors: BTreeSet<String> =
                    d.errors.iter().filter_map(|e| e.policy.clone()).collect();
                let want = if decision == Decision::Allow {
                    Effect::Allow
                } else {
                    Effect::Deny
                };
                prop_assert_eq!(d.decision, want, "request {}", json_request);
                prop_assert_eq!(got_reasons, reasons, "request {}", json_request);
                prop_assert_eq!(got_errors, errors, "request {}", json_request);
            }
        }
    }

    // The same requests as parts in one batch, twice over (so the batch meets contexts it has
    // read and requests it has decided): every answer is the one a single call gives.
    let read: Vec<_> = case
        .requests
        .iter()
        .map(|(p, a, r, x, who, own)| {
            let pair = |v: Value| {
                let text = |key: &str| v[key].as_str().unwrap().to_owned();
                (text("type"), text("id"))
            };
            let context = json!({"x": x, "who": {"__entity": user(*who)}}).to_string();
            let own = (!own.is_empty()).then(|| Value::Array(own.clone()).to_string());
            (
                pair(slot_principal(*p)),
                pair(action(*a)),
                pair(slot_resource(*r)),
                context,
                own,
            )
        })
        .collect();
    let parts: Vec<arbiter::RequestParts<'_>> = read
        .iter()
        .map(|(p, a, r, context, own)| arbiter::RequestParts {
            principal: Some((&p.0, &p.1)),
            action: (&a.0, &a.1),
            resource: (&r.0, &r.1),
            context_json: Some(context),
            entities_json: own.as_deref(),
            token: None,
            request_id: None,
        })
        .collect();
    let batch: Vec<_> = parts.iter().chain(&parts).copied().collect();
    for (parts, answer) in batch.iter().zip(engine.authorize_parts_batch(&batch)) {
        match (engine.authorize_parts(parts), answer) {
            (Ok(single), Ok(answer)) => prop_assert_eq!(single, answer, "{:?}", parts),
            // Kinds only: which vertex of an entity cycle Cedar names varies from call to call.
            (Err(single), Err(answer)) => {
                prop_assert_eq!(single.kind(), answer.kind(), "{:?}", parts)
            }
            (single, answer) => prop_assert!(
                false,
                "{:?}: {:?} alone, {:?} in a batch",
                parts,
                single,
                answer
            ),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_cedar_on_generated_bundles_and_requests(case in case()) {
        check(&case)?;
    }
}
