//! The engine's fast condition evaluator and its schema shapes against plain cedar-policy, on
//! generated expressions of every kind Cedar has (well and badly typed, overflowing, over
//! missing entities and attributes, tags, extension values, set and record literals) and on
//! generated contexts for a schema: the decision, the satisfied policies and the policies that
//! error must be Cedar's, and a request must be refused exactly when Cedar refuses it.
//!
//! Long: the expression and context generators and the comparisons that use them belong
//! together.

use std::collections::BTreeSet;
use std::str::FromStr;

use arbiter::{BundleFile, Effect, Engine};
use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, Schema,
};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::DecideJson;

/// Leaves: literals of every type, the request variables, and attribute reads.
fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("true".to_owned()),
        Just("false".to_owned()),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(3),
            Just(-2),
            Just(i64::MAX),
            Just(i64::MIN + 1)
        ]
        .prop_map(|n| n.to_string()),
        prop_oneof![Just("a"), Just("b"), Just(""), Just("ab")].prop_map(|s| format!("{s:?}")),
        (0..4usize).prop_map(|i| format!(r#"User::"u{i}""#)),
        (0..2usize).prop_map(|i| format!(r#"Group::"g{i}""#)),
        Just(r#"Action::"view""#.to_owned()),
        Just("principal".to_owned()),
        Just("resource".to_owned()),
        Just("action".to_owned()),
        Just("context".to_owned()),
        attr().prop_map(|a| format!("principal.{a}")),
        attr().prop_map(|a| format!("resource.{a}")),
        attr().prop_map(|a| format!("context.{a}")),
        Just(r#"decimal("1.5")"#.to_owned()),
        Just(r#"ip("10.0.0.1")"#.to_owned()),
        Just("[]".to_owned()),
        // Extension calls: booleans from constructed values, attributes, and errors.
        Just(r#"ip("10.0.0.1").isInRange(ip("10.0.0.0/8"))"#.to_owned()),
        Just(r#"ip("10.0.0.1").isLoopback()"#.to_owned()),
        Just(r#"decimal("1.5").lessThan(decimal("2.0"))"#.to_owned()),
        attr().prop_map(|a| format!(r#"principal.{a}.greaterThan(decimal("1.0"))"#)),
        attr().prop_map(|a| format!(r#"context.{a}.isInRange(ip("10.0.0.0/8"))"#)),
        Just(r#"ip("nope").isLoopback()"#.to_owned()),
        comparison(),
        membership(),
    ]
    .boxed()
    .prop_union(comparison().boxed())
    .or(membership().boxed())
}

/// Comparisons whose operands are often equal, where `<` and `<=` differ.
fn comparison() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("principal"), Just("resource"), Just("context")],
        cmp(),
        -1..4i64,
    )
        .prop_map(|(var, op, n)| format!("{var}.level {op} {n}"))
}

/// Hierarchy and set membership over the entity graph.
fn membership() -> impl Strategy<Value = String> {
    let entity = prop_oneof![
        Just("principal"),
        Just("resource"),
        Just("principal.manager"),
        Just("context.manager"),
        Just(r#"User::"u3""#),
    ];
    let group = prop_oneof![
        Just(r#"[Group::"g0", User::"u1"]"#),
        Just(r#"[Group::"g1", "a"]"#),
        Just(r#"Group::"g0""#),
        Just(r#"Group::"g1""#),
        Just(r#"User::"u1""#),
        Just("principal.owners"),
        Just("resource.owners"),
        Just("principal.manager"),
        Just("principal.tags"),
    ];
    let set = prop_oneof![
        Just(r#"["a", "b", "b"]"#),
        Just(r#"[User::"u1", Group::"g1", 2]"#),
        Just("principal.tags"),
        Just("context.tags"),
        Just("resource.tags"),
        Just("principal.owners"),
    ];
    let element = prop_oneof![
        Just(r#""a""#),
        Just(r#""b""#),
        Just(r#"User::"u1""#),
        Just(r#"Group::"g1""#),
        Just("principal.manager"),
        Just("2"),
        Just("principal.rec"),
        Just("principal.a"),
        Just("[]"),
        Just(r#"decimal("1.0")"#),
    ];
    prop_oneof![
        (entity, group).prop_map(|(e, g)| format!("{e} in {g}")),
        (set.clone(), element).prop_map(|(s, x)| format!("{s}.contains({x})")),
        (
            set.clone(),
            set,
            prop_oneof![Just("containsAll"), Just("containsAny")]
        )
            .prop_map(|(a, b, m)| format!("{a}.{m}({b})")),
    ]
}

fn attr() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("level"),
        Just("name"),
        Just("tags"),
        Just("manager"),
        Just("rec"),
        Just("flag"),
        Just("a"),
        Just("owners"),
        Just("missing"),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 48, 3, |inner| {
        let two = (inner.clone(), inner.clone());
        prop_oneof![
            (inner.clone(), attr()).prop_map(|(e, a)| format!("({e}).{a}")),
            (inner.clone(), attr()).prop_map(|(e, a)| format!("({e}) has {a}")),
            (inner.clone(), attr(), attr()).prop_map(|(e, a, b)| format!("({e}) has {a}.{b}")),
            (
                two.clone(),
                prop_oneof![
                    Just("&&"),
                    Just("||"),
                    Just("=="),
                    Just("!="),
                    Just("<"),
                    Just("<="),
                    Just(">"),
                    Just(">="),
                    Just("+"),
                    Just("-"),
                    Just("*"),
                    Just("in"),
                ]
            )
                .prop_map(|((a, b), op)| format!("({a}) {op} ({b})")),
            (
                two.clone(),
                prop_oneof![
                    Just("contains"),
                    Just("containsAll"),
                    Just("containsAny"),
                    Just("lessThan"),
                ]
            )
                .prop_map(|((a, b), m)| format!("({a}).{m}({b})")),
            inner.clone().prop_map(|e| format!("!({e})")),
            inner.clone().prop_map(|e| format!("-({e})")),
            inner.clone().prop_map(|e| format!("({e}).isEmpty()")),
            inner.clone().prop_map(|e| format!("({e}) is User")),
            inner.clone().prop_map(|e| format!(r#"({e}) like "a*""#)),
            inner.clone().prop_map(|e| format!(r#"({e}).hasTag("t")"#)),
            inner.clone().prop_map(|e| format!(r#"({e}).getTag("t")"#)),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("if ({a}) then ({b}) else ({c})")),
            two.clone().prop_map(|(a, b)| format!("[{a}, {b}]")),
            two.prop_map(|(a, b)| format!("{{a: {a}, level: {b}}}")),
        ]
    })
}

/// Mostly well-typed boolean conditions (so that values, not only errors, are compared).
fn condition() -> impl Strategy<Value = String> {
    let long = long_expr();
    let string = prop_oneof![
        Just(r#""a""#.to_owned()),
        Just(r#""ab""#.to_owned()),
        prop_oneof![Just("principal"), Just("resource"), Just("context")]
            .prop_map(|v| format!("{v}.name")),
        entity_expr().prop_map(|e| format!(r#"{e}.getTag("t")"#)),
    ];
    let set = prop_oneof![
        Just("principal.tags"),
        Just("resource.tags"),
        Just("context.tags"),
        Just("principal.owners"),
        Just(r#"["a", "b"]"#),
        Just("[]"),
        Just(r#"[User::"u1", principal]"#),
    ];
    let leaf = prop_oneof![
        comparison(),
        membership(),
        (long.clone(), cmp(), long).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        (string.clone(), string.clone()).prop_map(|(a, b)| format!("{a} == {b}")),
        string.prop_map(|a| format!(r#"{a} like "a*""#)),
        (entity_expr(), entity_expr()).prop_map(|(a, b)| format!("{a} == {b}")),
        (entity_expr(), attr()).prop_map(|(e, a)| format!("{e} has {a}")),
        entity_expr().prop_map(|e| format!("{e} is User")),
        entity_expr().prop_map(|e| format!(r#"{e}.hasTag("t")"#)),
        (
            set.clone(),
            set.clone(),
            prop_oneof![Just("containsAll"), Just("containsAny"), Just("==")]
        )
            .prop_map(|(a, b, m)| if m == "==" {
                format!("{a} == {b}")
            } else {
                format!("{a}.{m}({b})")
            }),
        set.prop_map(|a| format!("{a}.isEmpty()")),
        Just("context.flag".to_owned()),
        Just(r#"principal.a == User::"u1".a"#.to_owned()),
        Just("principal.rec == context.rec".to_owned()),
        Just(r#"principal.rec == {a: 1, level: 2}"#.to_owned()),
    ];
    leaf.prop_recursive(3, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) || ({b})")),
            inner.clone().prop_map(|a| format!("!({a})")),
            (inner.clone(), inner.clone(), inner)
                .prop_map(|(a, b, c)| format!("if {a} then {b} else {c}")),
        ]
    })
}

fn cmp() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("<"),
        Just("<="),
        Just(">"),
        Just(">="),
        Just("=="),
        Just("!=")
    ]
}

fn long_expr() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        (-1..4i64).prop_map(|n| n.to_string()),
        Just(i64::MAX.to_string()),
        prop_oneof![
            Just("principal"),
            Just("resource"),
            Just("context"),
            Just("principal.manager")
        ]
        .prop_map(|v| format!("{v}.level")),
        Just("principal.rec.level".to_owned()),
    ];
    leaf.prop_recursive(2, 6, 2, |inner| {
        (
            inner.clone(),
            prop_oneof![Just("+"), Just("-"), Just("*")],
            inner,
        )
            .prop_map(|(a, op, b)| format!("({a} {op} {b})"))
    })
    .boxed()
}

fn entity_expr() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("principal"),
        Just("resource"),
        Just("principal.manager"),
        Just("context.manager"),
        Just(r#"User::"u0""#),
        Just(r#"User::"u3""#),
        Just(r#"Group::"g1""#),
    ]
}

fn user(i: usize) -> Value {
    json!({"type": "User", "id": format!("u{i}")})
}

fn entities() -> Value {
    json!([
        {"uid": user(0), "parents": [{"type": "Group", "id": "g0"}],
         "attrs": {"level": 3, "name": "ab", "tags": ["a", "b"], "manager": {"__entity": user(1)},
                   "rec": {"a": 1, "level": 2}, "flag": true,
                   "owners": [{"__entity": user(1)}, {"__entity": {"type": "Group", "id": "g1"}}]},
         "tags": {"t": "a"}},
        {"uid": user(1), "parents": [{"type": "Group", "id": "g1"}],
         "attrs": {"level": i64::MAX, "name": "b", "tags": [], "flag": false, "a": {"__extn": {"fn": "decimal", "arg": "2.5"}}},
         "tags": {}},
        {"uid": user(2), "parents": [], "attrs": {"level": -1, "manager": {"__entity": user(3)}}},
        {"uid": {"type": "Group", "id": "g0"}, "parents": [{"type": "Group", "id": "g1"}], "attrs": {}},
        {"uid": {"type": "Group", "id": "g1"}, "parents": [], "attrs": {"tags": ["a"]}},
    ])
}

fn contexts() -> Vec<Value> {
    vec![
        json!({}),
        json!({"level": 2, "name": "a", "tags": ["a"], "flag": true,
               "manager": {"__entity": user(0)}, "rec": {"a": 5, "level": 0}}),
        json!({"level": "3", "a": [1, [2]], "owners": [{"__entity": user(3)}],
               "tags": {"__extn": {"fn": "ip", "arg": "10.1.1.1"}}}),
    ]
}

type Outcome = (Effect, BTreeSet<String>, BTreeSet<String>);

fn cedar_outcome(set: &PolicySet, entities: &Entities, request: &Request) -> Outcome {
    let response = Authorizer::new().is_authorized(request, set, entities);
    let decision = match response.decision() {
        Decision::Allow => Effect::Allow,
        Decision::Deny => Effect::Deny,
    };
    let reasons = response
        .diagnostics()
        .reason()
        .map(|id| id.to_string())
        .collect();
    let errors = response
        .diagnostics()
        .errors()
        .map(|cedar_policy::AuthorizationError::PolicyEvaluationError(e)| e.policy_id().to_string())
        .collect();
    (decision, reasons, errors)
}

fn arbiter_outcome(engine: &Engine, request: &str) -> Outcome {
    let d = engine.decide_json(request).expect("the request is valid");
    let reasons = d.reasons.iter().cloned().collect();
    let errors = d.errors.iter().filter_map(|e| e.policy.clone()).collect();
    (d.decision, reasons, errors)
}

fn check_conditions(conditions: &[(bool, String)]) -> Result<(), TestCaseError> {
    let text: String = conditions
        .iter()
        .map(|(permit, c)| {
            let effect = if *permit { "permit" } else { "forbid" };
            format!("{effect}(principal, action, resource) when {{ {c} }};\n")
        })
        .collect();
    let set = PolicySet::from_str(&text);
    prop_assume!(set.is_ok(), "not Cedar syntax: {}", text);
    let set = set.unwrap();
    let engine = Engine::from_files([
        BundleFile::new("policies.cedar", text.clone()),
        BundleFile::new("entities.json", entities().to_string()),
    ])
    .map_err(|e| TestCaseError::fail(format!("bundle does not load: {e}")))?;
    let store = Entities::from_json_value(entities(), None).unwrap();
    for context in contexts() {
        for (p, r) in [(user(0), user(1)), (user(1), user(0)), (user(3), user(2))] {
            let request = Request::new(
                EntityUid::from_json(p.clone()).unwrap(),
                EntityUid::from_str(r#"Action::"view""#).unwrap(),
                EntityUid::from_json(r.clone()).unwrap(),
                Context::from_json_value(context.clone(), None).unwrap(),
                None,
            )
            .unwrap();
            let json_request = json!({"principal": p, "action": {"type": "Action", "id": "view"},
                                      "resource": r, "context": context});
            prop_assert_eq!(
                arbiter_outcome(&engine, &json_request.to_string()),
                cedar_outcome(&set, &store, &request),
                "policies:\n{}request {}",
                text,
                json_request
            );
        }
    }
    Ok(())
}

const SCHEMA: &str = r#"
entity Group;
entity User in [Group] { level: Long, at?: __cedar::decimal };
entity Color enum ["red", "blue"];
action view appliesTo {
  principal: [User], resource: [User, Group],
  context: { level: Long, name?: String, flag?: Bool, tags?: Set<String>,
             manager?: User, color?: Color, at?: __cedar::decimal,
             rec?: { a: Long, b?: Set<User>, when?: __cedar::datetime },
             ip?: __cedar::ipaddr, ips?: Set<__cedar::ipaddr>, span?: __cedar::duration }
};
action other appliesTo { principal: [User], resource: [User], context: {} };
"#;

/// Context values close to the schema's shape, right and wrong.
fn context_value() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just(("level", json!(1))),
        Just(("level", json!("1"))),
        Just(("name", json!("n"))),
        Just(("name", json!(1))),
        Just(("flag", json!(false))),
        Just(("tags", json!(["a", "b"]))),
        Just(("tags", json!(["a", 2]))),
        Just(("tags", json!([]))),
        Just(("manager", json!({"__entity": user(0)}))),
        Just((
            "manager",
            json!({"__entity": {"type": "Group", "id": "g0"}})
        )),
        Just(("color", json!({"__entity": {"type": "Color", "id": "red"}}))),
        Just((
            "color",
            json!({"__entity": {"type": "Color", "id": "green"}})
        )),
        Just(("at", json!({"__extn": {"fn": "decimal", "arg": "1.0"}}))),
        Just(("at", json!({"fn": "decimal", "arg": "1.0"}))),
        // Strings the schema reads as extension values, right and wrong.
        Just(("at", json!("2.5"))),
        Just(("at", json!("1.23456"))),
        Just(("at", json!(2))),
        Just(("ip", json!("10.1.2.3"))),
        Just(("ip", json!("192.168.0.1/16"))),
        Just(("ip", json!("::1"))),
        Just(("ip", json!("10.1.2"))),
        Just(("ips", json!(["10.0.0.1", "172.16.0.1"]))),
        Just(("ips", json!(["10.0.0.1", "nope"]))),
        Just(("span", json!("1h30m"))),
        Just(("span", json!("1x"))),
        Just(("rec", json!({"a": 1, "when": "2024-10-15T11:35:00Z"}))),
        Just(("rec", json!({"a": 1, "when": "yesterday"}))),
        Just(("rec", json!({"a": 1}))),
        Just(("rec", json!({"a": 1, "b": [{"__entity": user(1)}]}))),
        Just(("rec", json!({"a": 1, "c": 2}))),
        Just(("rec", json!({"b": []}))),
        Just(("extra", json!(true))),
    ];
    prop::collection::vec(field, 0..5).prop_map(|fields| {
        Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    })
}

/// Request entities for the schema's types, right and wrong, at most one per uid.
fn request_entities() -> impl Strategy<Value = Value> {
    let g = |i: usize| json!({"type": "Group", "id": format!("g{i}")});
    let u0 = prop_oneof![
        Just(json!({"uid": user(0), "attrs": {"level": 1}, "parents": [g(0)]})),
        Just(json!({"uid": user(0), "attrs": {"level": 3}, "parents": [g(1)]})),
        Just(json!({"uid": user(0), "attrs": {"level": "1"}, "parents": []})),
        Just(json!({"uid": user(0), "attrs": {}, "parents": []})),
        Just(json!({"uid": user(0), "attrs": {"level": 1, "extra": 2}, "parents": []})),
        Just(
            json!({"uid": user(0), "attrs": {"level": 1}, "parents": [{"type": "Nope", "id": "x"}]})
        ),
        Just(json!({"uid": user(0), "attrs": {"level": 1}, "parents": [], "tags": {"t": "x"}})),
        Just(
            json!({"uid": {"__entity": user(0)}, "attrs": {"level": 5}, "parents": [{"__entity": g(1)}]})
        ),
        Just(
            json!({"uid": user(0), "attrs": {"level": {"__extn": {"fn": "decimal", "arg": "1.0"}}}, "parents": []})
        ),
        Just(json!({"uid": user(0), "attrs": {"level": 2}})),
        Just(
            json!({"uid": user(0), "attrs": {"level": 2, "at": {"fn": "decimal", "arg": "1.5"}}, "parents": []})
        ),
    ];
    let g0 = prop_oneof![
        Just(json!({"uid": g(0), "attrs": {}, "parents": [g(1)]})),
        Just(json!({"uid": g(0), "attrs": {}, "parents": []})),
        Just(json!({"uid": g(0), "attrs": {"x": 1}, "parents": []})),
        Just(json!({"uid": g(0), "attrs": {}, "parents": [user(1)]})),
    ];
    let other = prop_oneof![
        Just(json!({"uid": {"type": "Action", "id": "view"}, "attrs": {}, "parents": []})),
        // An action entity that regroups the action: the schema's own says otherwise.
        Just(
            json!({"uid": {"type": "Action", "id": "view"}, "attrs": {}, "parents": [{"type": "Action", "id": "other"}]})
        ),
        Just(json!({"uid": {"type": "Color", "id": "red"}, "attrs": {}, "parents": []})),
        Just(json!({"uid": user(1), "attrs": {"level": 9}, "parents": [g(0)]})),
        Just(json!({"uid": {"type": "Nope", "id": "n"}, "attrs": {}, "parents": []})),
    ];
    (
        prop::option::of(u0),
        prop::option::of(g0),
        prop::option::of(other),
    )
        .prop_map(|(a, b, c)| Value::Array([a, b, c].into_iter().flatten().collect()))
}

fn check_shapes(
    action: &str,
    principal: Value,
    resource: Value,
    context: Value,
    entities: Value,
) -> Result<(), TestCaseError> {
    let policies = r#"permit(principal, action == Action::"view", resource) when { context has name };
        permit(principal in Group::"g1", action == Action::"view", resource);
        forbid(principal, action == Action::"view", resource) when { context.level > 2 };
        forbid(principal, action == Action::"view", resource) when { principal has level && principal.level > 2 };
        permit(principal, action == Action::"view", resource) when { context has ip && context.ip.isInRange(ip("10.0.0.0/8")) };
        permit(principal, action == Action::"view", resource) when { context has ips && context.ips.contains(ip("172.16.0.1")) };
        forbid(principal, action == Action::"view", resource) when { context has at && context.at.greaterThan(decimal("2.0")) };
        permit(principal, action == Action::"view", resource) when { context has span && context.span == duration("90m") };
        permit(principal, action == Action::"view", resource) when { context has rec && context.rec has when && context.rec.when < datetime("2025-01-01") };"#;
    let engine = Engine::from_files([
        BundleFile::new("policies.cedar", policies),
        BundleFile::new("schema.cedarschema", SCHEMA),
        BundleFile::new("entities.json", "[]"),
    ])
    .map_err(|e| TestCaseError::fail(format!("bundle does not load: {e}")))?;
    let schema = Schema::from_cedarschema_str(SCHEMA).unwrap().0;
    let action_uid = EntityUid::from_json(json!({"type": "Action", "id": action})).unwrap();
    let store =
        Entities::from_json_value(entities.clone(), Some(&schema)).map_err(|e| e.to_string());
    let cedar = Context::from_json_value(context.clone(), Some((&schema, &action_uid)))
        .map_err(|e| e.to_string())
        .and_then(|c| {
            Request::new(
                EntityUid::from_json(principal.clone()).unwrap(),
                action_uid.clone(),
                EntityUid::from_json(resource.clone()).unwrap(),
                c,
                Some(&schema),
            )
            .map_err(|e| e.to_string())
        });
    let json_request = json!({"principal": principal, "action": {"type": "Action", "id": action},
                              "resource": resource, "context": context, "entities": entities});
    let got = engine.decide_json(&json_request.to_string());

    // The typed path, with entities built as a host may build them (without the schema, so
    // nothing has checked them): never a decision where the JSON path refuses, never another.
    let typed_entities = entities
        .as_array()
        .unwrap()
        .iter()
        .map(|e| cedar_policy::Entity::from_json_value(e.clone(), None).ok())
        .collect::<Option<Vec<_>>>();
    let typed_context = Context::from_json_value(context.clone(), Some((&schema, &action_uid)));
    if let (Some(typed_entities), Ok(typed_context)) = (typed_entities, typed_context) {
        let typed = arbiter::Request::new(
            EntityUid::from_json(principal.clone()).unwrap(),
            action_uid.clone(),
            EntityUid::from_json(resource.clone()).unwrap(),
        )
        .with_context(typed_context)
        .with_entities(typed_entities);
        if let Ok(typed) = engine.authorize(&typed) {
            match &got {
                Ok(d) => prop_assert_eq!(&typed, d, "typed and JSON: {}", json_request),
                Err(e) => prop_assert!(
                    false,
                    "typed path decided {:?}, the JSON path refuses ({}): {}",
                    typed,
                    e,
                    json_request
                ),
            }
        }
    }
    match (cedar.and_then(|r| store.map(|s| (r, s))), got) {
        (Ok((request, store)), Ok(d)) => {
            let set = PolicySet::from_str(policies).unwrap();
            let (decision, reasons, errors) = cedar_outcome(&set, &store, &request);
            prop_assert_eq!(d.decision, decision, "request {}", json_request);
            prop_assert_eq!(d.reasons.iter().cloned().collect::<BTreeSet<_>>(), reasons);
            prop_assert_eq!(
                d.errors
                    .iter()
                    .filter_map(|e| e.policy.clone())
                    .collect::<BTreeSet<_>>(),
                errors
            );
        }
        (Err(_), Err(e)) => prop_assert!(
            matches!(
                e.kind(),
                "invalid_request" | "invalid_context" | "invalid_entities"
            ),
            "{} for {}",
            e.kind(),
            json_request
        ),
        (Ok(_), Err(e)) => prop_assert!(
            false,
            "cedar accepts, arbiter refuses ({e}): {json_request}"
        ),
        (Err(e), Ok(_)) => prop_assert!(
            false,
            "cedar refuses ({e}), arbiter decides: {json_request}"
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn fast_evaluation_agrees_with_cedar(
        conditions in prop::collection::vec(
            (prop::bool::weighted(0.8), prop_oneof![4 => condition(), 1 => expr()]),
            1..6,
        )
    ) {
        check_conditions(&conditions)?;
    }

    #[test]
    fn request_shapes_agree_with_cedar_validation(
        action in prop_oneof![Just("view"), Just("other"), Just("nope")],
        principal in prop_oneof![Just(user(0)), Just(json!({"type": "Group", "id": "g0"})), Just(json!({"type": "Nope", "id": "x"}))],
        resource in prop_oneof![Just(user(1)), Just(json!({"type": "Group", "id": "g0"})), Just(json!({"type": "Color", "id": "red"}))],
        context in context_value(),
        entities in request_entities(),
    ) {
        check_shapes(action, principal, resource, context, entities)?;
    }

    #[test]
    fn request_entities_agree_with_cedar(entities in request_entities()) {
        check_shapes("view", user(0), user(1), json!({"level": 1, "name": "n"}), entities)?;
    }
}

/// The condition generator reaches the fast path's interesting outcomes: with conditions drawn
/// from it (as the property test draws them), some requests are allowed, some denied by a
/// forbid, and some policies error. A generator that lost one of these would let the property
/// test pass without ever comparing that outcome with Cedar.
#[test]
fn strings_the_schema_types_as_extension_values_read_as_cedar_reads_them() {
    for context in [
        json!({"level": 1, "ip": "10.1.2.3"}),
        json!({"level": 1, "ip": "11.1.2.3"}),
        json!({"level": 1, "ip": "10.1.2"}),
        json!({"level": 1, "ips": ["10.0.0.1", "172.16.0.1"]}),
        json!({"level": 1, "at": "2.5"}),
        json!({"level": 1, "at": "1.5"}),
        json!({"level": 1, "span": "1h30m"}),
        json!({"level": 1, "rec": {"a": 1, "when": "2024-10-15T11:35:00Z"}}),
        json!({"level": 1, "rec": {"a": 1, "when": "2026-10-15"}}),
    ] {
        check_shapes("view", user(0), user(1), context, json!([])).unwrap();
    }
}

#[test]
fn the_condition_generator_reaches_allows_forbids_and_errors() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut allowed, mut forbidden, mut erred) = (0, 0, 0);
    for _ in 0..200 {
        let condition = condition().new_tree(&mut runner).unwrap().current();
        let text = format!(
            "@id(\"p\") permit(principal, action, resource);\n@id(\"f\") forbid(principal, action, resource) when {{ {condition} }};"
        );
        let Ok(engine) = Engine::from_files([
            BundleFile::new("policies.cedar", text),
            BundleFile::new("entities.json", entities().to_string()),
        ]) else {
            continue;
        };
        for context in contexts() {
            let request = json!({"principal": user(0), "action": {"type": "Action", "id": "view"},
                                 "resource": user(1), "context": context});
            let d = engine.decide_json(&request.to_string()).unwrap();
            match (d.decision, d.reasons.as_slice(), d.errors.is_empty()) {
                (_, _, false) => erred += 1,
                (Effect::Allow, _, _) => allowed += 1,
                (Effect::Deny, [forbid], _) if forbid == "f" => forbidden += 1,
                _ => {}
            }
        }
    }
    assert!(
        allowed > 0 && forbidden > 0 && erred > 0,
        "allowed {allowed}, forbidden {forbidden}, erred {erred}"
    );
}
