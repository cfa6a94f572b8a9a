//! The Docs benchmark bundle (`benches/bundles/docs`), written independently of the default one
//! in other Cedar idioms (set literals, `containsAny`, `has` chains, records, extension values,
//! action groups): every request of its `requests.jsonl` and of its decision tests, decided by
//! the engine and by plain cedar-policy over the same files, must agree on the decision, the
//! reasons and the policies that errored.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::str::FromStr;

use arbiter::Engine;
use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request, Schema};
use serde_json::Value;

use crate::support::DecideJson;

fn dir() -> PathBuf {
    [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "benches",
        "bundles",
        "docs",
    ]
    .iter()
    .collect()
}

fn read(name: &str) -> String {
    let path = dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Cedar's decision as `(allowed, reasons, errored policies)`, policies named by `@id`; `None`
/// when Cedar refuses the request or its entities.
fn cedar(
    request: &Value,
    schema: &Schema,
    set: &PolicySet,
    statics: &Entities,
) -> Option<(bool, BTreeSet<String>, BTreeSet<String>)> {
    let uid = |field: &str| EntityUid::from_json(request[field].clone()).ok();
    let action = uid("action")?;
    let context = Context::from_json_value(request["context"].clone(), Some((schema, &action)));
    let request_entities = match request.get("entities") {
        None => Entities::empty(),
        Some(e) => Entities::from_json_value(e.clone(), Some(schema)).ok()?,
    };
    let store = statics
        .clone()
        .upsert_entities(request_entities, Some(schema))
        .ok()?;
    let request = Request::new(
        uid("principal")?,
        action,
        uid("resource")?,
        context.ok()?,
        Some(schema),
    )
    .ok()?;
    let response = Authorizer::new().is_authorized(&request, set, &store);
    let name = |id: &cedar_policy::PolicyId| {
        set.policy(id)
            .and_then(|p| p.annotation("id"))
            .unwrap_or_else(|| panic!("{id} has no @id"))
            .to_owned()
    };
    Some((
        response.decision() == cedar_policy::Decision::Allow,
        response.diagnostics().reason().map(name).collect(),
        response
            .diagnostics()
            .errors()
            .map(|cedar_policy::AuthorizationError::PolicyEvaluationError(e)| name(e.policy_id()))
            .collect(),
    ))
}

#[test]
fn the_docs_bundle_decides_as_cedar_does() {
    let engine = Engine::from_bundle_dir(dir()).unwrap();
    let schema = Schema::from_cedarschema_str(&read("schema.cedarschema"))
        .unwrap()
        .0;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cedar"))
        .collect();
    files.sort();
    let text: Vec<String> = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let set = PolicySet::from_str(&text.join("\n")).unwrap();
    let statics = Entities::from_json_str(&read("entities.json"), Some(&schema)).unwrap();

    let mut requests: Vec<Value> = read("requests.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut tests: Vec<PathBuf> = std::fs::read_dir(dir().join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    tests.sort();
    for path in tests {
        let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        requests.extend(
            file["cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["request"].clone()),
        );
    }
    assert!(requests.len() >= 300, "{} requests", requests.len());

    let (mut allowed, mut denied, mut refused) = (0, 0, 0);
    for request in &requests {
        let ours = engine.decide_json(&request.to_string());
        match (cedar(request, &schema, &set, &statics), ours) {
            (Some((allow, reasons, errors)), Ok(decision)) => {
                assert_eq!(decision.allowed(), allow, "{request}");
                assert_eq!(
                    decision.reasons.iter().cloned().collect::<BTreeSet<_>>(),
                    reasons,
                    "{request}"
                );
                let ours: BTreeSet<String> = decision
                    .errors
                    .iter()
                    .filter_map(|e| e.policy.clone())
                    .collect();
                assert_eq!(ours, errors, "{request}");
                if allow {
                    allowed += 1;
                } else {
                    denied += 1;
                }
            }
            (None, Err(_)) => refused += 1,
            (cedar, ours) => panic!("cedar {cedar:?}, arbiter {ours:?}: {request}"),
        }
    }
    // The requests reach both answers, and Cedar's refusals are few (the tests' invalid ones).
    assert!(
        allowed > 100 && denied > 100 && refused < 10,
        "{allowed} {denied} {refused}"
    );
}
