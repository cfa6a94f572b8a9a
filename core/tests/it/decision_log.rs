//! Decision logs: one event per decision with what an operator needs (request id, bundle,
//! principal, action, resource, decision, policy ids, error kinds, token id, latency), never a
//! token or a secret, sensitive attributes masked; sampling, rate limit and a failing sink
//! never change a decision.

use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use arbiter::decision_log::MASKED;
use arbiter::{
    ffi, BundleFile, CallError, DecisionLogOptions, Engine, Minter, RequestParts, SigningKey,
};

use crate::support::DecideJson;

const NOW: i64 = 1_800_000_000;
const SECRET: [u8; 32] = [7; 32];

/// Members of `Team::"core"` may read; a `forbid` whose condition errors for a request without
/// `level`; JWTs (HS256) name the principal.
fn engine() -> Engine {
    let schema = r#"
        entity Team;
        entity User in [Team];
        entity Doc;
        action read appliesTo { principal: User, resource: Doc,
            context: { ip: String, level?: Long, profile?: { email: String, plan: String } } };
    "#;
    let policies = r#"
        @id("team-reads") permit (principal in Team::"core", action, resource);
        @id("low-level") forbid (principal, action, resource) when { context.level < 0 };
    "#;
    let tokens = json!({"jwt": {"issuers": [
        {"issuer": "https://hs.example", "algorithms": ["HS256"], "hmac_secret_file": "keys/hs.b64",
         "secret_encoding": "base64", "required_claims": ["exp", "sub"],
         "principal": {"type": "User", "id_claim": "sub"}}]}});
    let manifest = json!({"name": "docs", "version": "7",
        "validate_policies": false, "sensitive_attributes": ["ip", "email"]});
    Engine::from_files([
        BundleFile::new("schema.cedarschema", schema),
        BundleFile::new("p.cedar", policies),
        BundleFile::new(
            "entities.json",
            r#"[{"uid": {"type": "User", "id": "ann"}, "attrs": {}, "parents": [{"type": "Team", "id": "core"}]}]"#,
        ),
        BundleFile::new("tokens.json", tokens.to_string()),
        BundleFile::new("keys/hs.b64", STANDARD.encode(SECRET)),
        BundleFile::new("manifest.json", manifest.to_string()),
    ])
    .unwrap()
    .with_fixed_time(NOW)
}

fn request(principal: &str, context: Value) -> Value {
    json!({
        "principal": {"type": "User", "id": principal},
        "action": {"type": "Action", "id": "read"},
        "resource": {"type": "Doc", "id": "d1"},
        "context": context,
    })
}

/// Collects the events of `engine`'s decision log, parsed.
fn collect(engine: &Engine, options: DecisionLogOptions) -> Arc<Mutex<Vec<Value>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    engine
        .set_decision_log(options, move |event| {
            assert!(!event.contains('\n'), "one line per event: {event}");
            let parsed: Value = serde_json::from_str(event).expect("an event is JSON");
            sink.lock().unwrap().push(parsed);
        })
        .unwrap();
    events
}

fn logged(engine: &Engine) -> Value {
    serde_json::to_value(engine.metrics().decision_log).unwrap()
}

#[test]
fn an_event_names_the_request_bundle_decision_and_latency() {
    let e = engine();
    let events = collect(&e, DecisionLogOptions::default());
    let mut r = request(
        "ann",
        json!({"ip": "10.1.2.3", "profile": {"email": "ann@example.com", "plan": "gold"}}),
    );
    r["request_id"] = json!("req-42");
    let decision = e.decide_json(&r.to_string()).unwrap();
    assert!(decision.allowed());
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["request_id"], "req-42");
    assert_eq!(event["bundle"], json!({"name": "docs", "version": "7"}));
    assert_eq!(event["principal"], json!({"type": "User", "id": "ann"}));
    assert_eq!(event["action"], json!({"type": "Action", "id": "read"}));
    assert_eq!(event["resource"], json!({"type": "Doc", "id": "d1"}));
    assert_eq!(event["decision"], "allow");
    assert_eq!(event["reasons"], json!(["team-reads"]));
    // The policy that errors (no `level`) is named with its kind, never its message.
    assert_eq!(
        event["errors"],
        json!([{"kind": "policy_evaluation", "policy": "low-level"}])
    );
    assert_eq!(event["token_id"], Value::Null);
    let latency = event["latency_us"].as_f64().unwrap();
    assert!(latency > 0.0 && latency < 10e6, "{latency}");
    assert!(event["time"].as_str().unwrap().starts_with("20"));
    // Sensitive attributes are masked wherever they are; the rest is as the request gave it.
    assert_eq!(
        event["context"],
        json!({"ip": MASKED, "profile": {"email": MASKED, "plan": "gold"}})
    );
    let text = event.to_string();
    assert!(!text.contains("10.1.2.3") && !text.contains("ann@example.com"));
    assert_eq!(logged(&e)["logged"], 1);
}

#[test]
fn a_token_is_logged_by_its_id_and_never_itself() {
    let e = engine();
    let events = collect(&e, DecisionLogOptions::default());
    let minter = Minter::new(
        "https://hs.example",
        SigningKey::from_hmac_secret("k", "HS256", &SECRET).unwrap(),
    );
    let claims = json!({"sub": "ann", "jti": "token-7"});
    let token = minter
        .mint(claims.as_object().unwrap().clone(), 60, NOW)
        .unwrap();
    let mut r = request("ann", json!({"ip": "10.1.2.3"}));
    r.as_object_mut().unwrap().remove("principal");
    r["token"] = json!(token);
    assert!(e.decide_json(&r.to_string()).unwrap().allowed());
    // A token that does not verify: a deny with the failure's kind, and no id to trust.
    r["token"] = json!(format!("{token}x"));
    r["principal"] = json!({"type": "User", "id": "ann"});
    let refused = e.decide_json(&r.to_string()).unwrap();
    assert!(!refused.allowed());

    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2);
    // The principal the token named, though the request named none.
    assert_eq!(events[0]["principal"], json!({"type": "User", "id": "ann"}));
    assert_eq!(events[0]["token_id"], "token-7");
    assert_eq!(events[1]["decision"], "deny");
    assert_eq!(events[1]["token_id"], Value::Null);
    assert_eq!(
        events[1]["errors"],
        json!([{"kind": refused.errors[0].kind.as_str()}])
    );
    let secret = STANDARD.encode(SECRET);
    for event in events.iter() {
        let text = event.to_string();
        let signature = token.rsplit('.').next().unwrap();
        assert!(!text.contains(signature), "the token leaked: {text}");
        assert!(!text.contains(&token[..20]), "the token leaked: {text}");
        assert!(!text.contains(&secret), "the secret leaked: {text}");
    }
}

#[test]
fn every_call_that_decides_logs_each_decision_and_explain_does_not() {
    let e = engine();
    let events = collect(&e, DecisionLogOptions::default());
    let ann = request("ann", json!({"ip": "1"}));
    e.authorize_json(&ann.to_string()).unwrap();
    let batch = json!([ann, {"nonsense": true}, request("bo", json!({"ip": "2"}))]);
    e.authorize_json_batch(&batch.to_string()).unwrap();
    let parts = arbiter::RequestParts {
        principal: Some(("User", "bo")),
        action: ("Action", "read"),
        resource: ("Doc", "d1"),
        context_json: Some(r#"{"ip": "3"}"#),
        entities_json: None,
        token: None,
        request_id: Some("parts-1"),
    };
    e.authorize_parts(&parts).unwrap();
    e.authorize_parts_batch(&[parts, parts]);
    e.explain_json(&ann.to_string()).unwrap();
    // A request that cannot be decided is an error of the call, not a decision.
    assert!(e.authorize_json("{}").is_err());

    let events = events.lock().unwrap();
    let principals: Vec<&str> = events
        .iter()
        .map(|e| e["principal"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(principals, ["ann", "ann", "bo", "bo", "bo", "bo"]);
    assert_eq!(events[3]["request_id"], "parts-1");
    assert_eq!(events[2]["decision"], "deny");
    assert_eq!(events[2]["reasons"], json!([]));
}

#[test]
fn sampling_keeps_a_request_ids_decisions_together() {
    let e = engine();
    let events = collect(
        &e,
        DecisionLogOptions {
            sample_rate: 0.5,
            max_events_per_second: None,
        },
    );
    for n in 0..200 {
        for _ in 0..3 {
            let mut r = request("ann", json!({"ip": "1"}));
            r["request_id"] = json!(format!("web-{n}"));
            e.authorize_json(&r.to_string()).unwrap();
        }
    }
    let events = events.lock().unwrap();
    let mut per_id = std::collections::BTreeMap::<String, usize>::new();
    for event in events.iter() {
        *per_id
            .entry(event["request_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(per_id.values().all(|&n| n == 3), "{per_id:?}");
    assert!((60..140).contains(&per_id.len()), "{} ids", per_id.len());
    let counts = logged(&e);
    assert_eq!(counts["logged"], events.len());
    assert_eq!(counts["sampled_out"], 600 - events.len());

    let e = engine();
    let none = collect(
        &e,
        DecisionLogOptions {
            sample_rate: 0.0,
            max_events_per_second: None,
        },
    );
    e.authorize_json(&request("ann", json!({"ip": "1"})).to_string())
        .unwrap();
    assert!(none.lock().unwrap().is_empty());
    assert_eq!(logged(&e)["sampled_out"], 1);
}

#[test]
fn the_rate_limit_caps_events_and_counts_the_rest() {
    let e = engine();
    let events = collect(
        &e,
        DecisionLogOptions {
            sample_rate: 1.0,
            max_events_per_second: Some(5),
        },
    );
    let start = std::time::Instant::now();
    let r = request("ann", json!({"ip": "1"})).to_string();
    for _ in 0..200 {
        assert!(e.decide_json(&r).unwrap().allowed());
    }
    // A burst of 5, then one more each 200 ms that passed.
    let allowance = 5 + (start.elapsed().as_millis() / 200) as usize;
    let n = events.lock().unwrap().len();
    assert!(
        (5..=allowance).contains(&n),
        "{n} events, allowance {allowance}"
    );
    let counts = logged(&e);
    assert_eq!(counts["logged"], n);
    assert_eq!(counts["rate_limited"], 200 - n);
    let scrape = e.metrics().to_prometheus();
    assert!(scrape.contains(&format!(
        "arbiter_decision_log_events_total{{result=\"rate_limited\"}} {}",
        200 - n
    )));
}

#[test]
fn a_panicking_sink_drops_its_event_never_the_decision() {
    let e = engine();
    e.set_decision_log(DecisionLogOptions::default(), |_| panic!("sink broke"))
        .unwrap();
    let d = e
        .decide_json(&request("ann", json!({"ip": "1"})).to_string())
        .unwrap();
    assert!(d.allowed());
    assert!(d.errors.iter().all(|e| e.policy.is_some()));
    assert_eq!(logged(&e)["sink_panicked"], 1);
    assert_eq!(e.metrics().internal_errors, 0);
}

#[test]
fn clearing_the_log_stops_events_and_bad_options_change_nothing() {
    let e = engine();
    let events = collect(&e, DecisionLogOptions::default());
    let r = request("ann", json!({"ip": "1"})).to_string();
    e.authorize_json(&r).unwrap();
    let refused = e.set_decision_log(
        DecisionLogOptions {
            sample_rate: 2.0,
            max_events_per_second: None,
        },
        |_| {},
    );
    assert!(refused.unwrap_err().to_string().contains("sample_rate"));
    e.authorize_json(&r).unwrap();
    assert_eq!(events.lock().unwrap().len(), 2, "the old sink still logs");
    e.clear_decision_log();
    e.authorize_json(&r).unwrap();
    assert_eq!(events.lock().unwrap().len(), 2);
}

#[test]
fn a_log_to_the_caller_hands_each_call_its_own_events() {
    let e = engine();
    ffi::log_to_caller(&e, DecisionLogOptions::default()).unwrap();
    let r = request("ann", json!({"ip": "1"})).to_string();
    let one = ffi::authorize_json(&e, &r);
    assert!(one.answer.unwrap().contains("allow"));
    assert_eq!(one.events.len(), 1);
    assert!(
        one.events[0].contains(r#""decision":"allow""#),
        "{}",
        one.events[0]
    );

    let batch = ffi::authorize_json_batch(&e, &format!("[{r},{r},7]"));
    assert!(batch.answer.is_ok());
    assert_eq!(
        batch.events.len(),
        2,
        "the element that is no request logs nothing"
    );
    let parts = RequestParts {
        principal: Some(("User", "ann")),
        action: ("Action", "read"),
        resource: ("Doc", "d"),
        context_json: Some(r#"{"ip": "1"}"#),
        entities_json: None,
        token: None,
        request_id: Some("req-9"),
    };
    let typed = ffi::authorize_parts(&e, &parts);
    assert!(typed.answer.unwrap().allowed());
    assert!(typed.events[0].contains(r#""request_id":"req-9""#));
    let read =
        ffi::authorize_read_batch(&e, &[Ok(parts), Err(CallError::malformed("no")), Ok(parts)]);
    assert_eq!(read.answer.len(), 3);
    assert_eq!(read.events.len(), 2);

    // Calls on other threads at the same time get their own events, never another's.
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|n| {
                let (e, r) = (&e, &r);
                s.spawn(move || {
                    (0..=n)
                        .map(|_| ffi::authorize_json(e, r).events.len())
                        .sum::<usize>()
                })
            })
            .collect();
        for (n, t) in threads.into_iter().enumerate() {
            assert_eq!(t.join().unwrap(), n + 1);
        }
    });

    // A call outside `ffi` decides as ever; its event, which no one can take, is counted.
    e.authorize_json(&r).unwrap();
    assert_eq!(e.metrics().decision_log["unclaimed"], 1);
    assert_eq!(e.metrics().decision_log["logged"], 1 + 2 + 1 + 2 + 10);

    // With a sink set, the sink has them and the calls hand none back.
    let events = collect(&e, DecisionLogOptions::default());
    assert!(ffi::authorize_json(&e, &r).events.is_empty());
    assert_eq!(events.lock().unwrap().len(), 1);
}

#[test]
fn with_a_candidate_bundle_an_event_says_what_it_decided() {
    let e = engine();
    let events = collect(&e, DecisionLogOptions::default());
    let r = request("ann", json!({"ip": "1"})).to_string();
    e.authorize_json(&r).unwrap();
    // A candidate that lets nobody in: it disagrees, and says why.
    e.set_candidate_from_files([BundleFile::new(
        "p.cedar",
        r#"@id("nobody") forbid (principal, action, resource);"#,
    )])
    .unwrap();
    e.authorize_json(&r).unwrap();
    // One that lets everybody in agrees on ann.
    e.set_candidate_from_files([BundleFile::new(
        "p.cedar",
        r#"@id("all") permit (principal, action, resource);"#,
    )])
    .unwrap();
    e.authorize_json(&r).unwrap();
    // One whose schema does not know the request: the kind of its error.
    e.set_candidate_from_files([
        BundleFile::new("p.cedar", ""),
        BundleFile::new("schema.cedarschema", "entity Other; action nothing;"),
    ])
    .unwrap();
    e.authorize_json(&r).unwrap();

    let events = events.lock().unwrap();
    assert_eq!(events[0].get("shadow"), None, "no candidate, no shadow");
    assert_eq!(
        events[3]["shadow"],
        json!({"agrees": false, "error": "invalid_request"})
    );
    assert_eq!(
        events[1]["shadow"],
        json!({"agrees": false, "decision": "deny", "reasons": ["nobody"]})
    );
    assert_eq!(
        events[2]["shadow"],
        json!({"agrees": true, "decision": "allow", "reasons": ["all"]})
    );
    assert!(events.iter().all(|e| e["decision"] == "allow"));
}
