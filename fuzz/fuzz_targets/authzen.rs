//! AuthZEN bodies through the default bundle (`Engine::authzen_*`): any body never panics and
//! is answered with JSON or refused; an evaluation allows only when the same request as
//! contract JSON allows; a batch answers no item past the one its semantics stop at; a search
//! returns only candidates it was given.
//!
//! Input: a selector byte (evaluation, evaluations, resource search), then the body.
#![no_main]

use arbiter_fuzz::default_engine;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// The contract request an evaluation body asks for, built apart from the engine's reading.
fn contract_request(body: &Value) -> Value {
    let mut entities = Vec::new();
    for part in ["subject", "resource"] {
        if let Some(attrs) = body[part].get("properties").filter(|p| p.is_object()) {
            entities.push(
                json!({"uid": {"type": body[part]["type"], "id": body[part]["id"]},
                                 "attrs": attrs, "parents": []}),
            );
        }
    }
    let context = match &body["context"] {
        Value::Null => json!({}),
        context => context.clone(),
    };
    json!({"principal": {"type": body["subject"]["type"], "id": body["subject"]["id"]},
           "action": {"type": "Gitlab::Action", "id": body["action"]["name"]},
           "resource": {"type": body["resource"]["type"], "id": body["resource"]["id"]},
           "context": context, "entities": entities})
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(body) = std::str::from_utf8(rest) else {
        return;
    };
    let engine = default_engine();
    let call = match selector % 3 {
        0 => arbiter::Engine::authzen_evaluation,
        1 => arbiter::Engine::authzen_evaluations,
        _ => arbiter::Engine::authzen_search_resource,
    };
    let Ok(answer) = call(engine, body, None) else {
        return;
    };
    let answered: Value = serde_json::from_str(&answer.json).expect("an answer is JSON");
    let asked: Value = serde_json::from_str(body).expect("an answered body is JSON");
    let single = answered.get("decision").is_some();
    if single {
        assert_eq!(answered["decision"], answer.allowed, "{answered}");
        if answer.allowed {
            let request = contract_request(&asked).to_string();
            let decision = engine
                .authorize_json(&request)
                .expect("the allowed request reads");
            assert!(
                decision.contains(r#""decision":"allow""#),
                "AuthZEN allowed {body} but the request as JSON is {decision}"
            );
        }
    } else if let Some(items) = answered.get("evaluations").and_then(Value::as_array) {
        let asked_items = asked["evaluations"].as_array().map_or(0, Vec::len);
        assert!(items.len() <= asked_items, "{answered}");
        let decisions: Vec<bool> = items.iter().map(|i| i["decision"] == true).collect();
        let (last, before) = decisions
            .split_last()
            .expect("a batch with items answers some");
        match asked["options"]["evaluations_semantic"].as_str() {
            Some("deny_on_first_deny") => {
                assert!(before.iter().all(|d| *d), "{answered}");
                assert!(!*last || items.len() == asked_items, "{answered}");
            }
            Some("permit_on_first_permit") => {
                assert!(before.iter().all(|d| !d), "{answered}");
                assert!(*last || items.len() == asked_items, "{answered}");
            }
            _ => assert_eq!(items.len(), asked_items, "{answered}"),
        }
        assert_eq!(answer.allowed, decisions.iter().all(|d| *d));
    } else {
        let results = answered["results"]
            .as_array()
            .expect("a search answers results");
        let candidates = asked["resources"].as_array();
        for result in results {
            let id = &result["id"];
            assert!(
                candidates.is_some_and(|c| c.iter().any(|c| c == id || c["id"] == *id)),
                "{id} was not a candidate: {body}"
            );
        }
    }
});
