//! HTTP requests as a proxy sees them, through the default bundle's `http.json`
//! (`Engine::authorize_http`): any method, target, headers and peer never panic, decide the same
//! twice, and allow only through a route of the file for that method, on a normalized path, for
//! a principal, with no error but a policy's (as every decision), with the principal header the
//! file names.
//!
//! Input: a first line `METHOD TARGET`, then `name: value` header lines; a line `peer ID` sets
//! the mTLS peer's identity.
#![no_main]

use std::sync::OnceLock;

use arbiter::HttpRequest;
use arbiter_fuzz::{check_decision_json, default_engine};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Each route of the default `http.json`: its name and methods.
fn routes() -> &'static Vec<(String, Vec<String>)> {
    static ROUTES: OnceLock<Vec<(String, Vec<String>)>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let file: Value =
            serde_json::from_str(include_str!("../../policies/gitlab/http.json")).unwrap();
        file["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let methods = match &r["method"] {
                    Value::String(m) => vec![m.clone()],
                    Value::Array(ms) => ms.iter().map(|m| m.as_str().unwrap().to_owned()).collect(),
                    _ => unreachable!(),
                };
                (r["name"].as_str().unwrap().to_owned(), methods)
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let Some((method, target)) = lines.next().and_then(|l| l.split_once(' ')) else {
        return;
    };
    let mut headers = Vec::new();
    let mut peer = None;
    for line in lines {
        if let Some(id) = line.strip_prefix("peer ") {
            peer = Some(id);
        } else if let Some((name, value)) = line.split_once(": ") {
            headers.push((name, value));
        }
    }
    let request = HttpRequest {
        method,
        path: target,
        headers: &headers,
        peer,
        request_id: None,
    };
    let engine = default_engine();
    let answer = engine.authorize_http(&request);
    assert_eq!(
        answer,
        engine.authorize_http(&request),
        "decided differently twice"
    );
    let Ok(answer) = answer else {
        return;
    };
    check_decision_json(&answer.decision.to_json());
    if !answer.decision.allowed() {
        assert!(answer.headers.is_empty(), "a deny carries no headers");
        return;
    }
    assert!(
        routes()
            .iter()
            .any(|(name, methods)| *name == answer.route && methods.iter().any(|m| m == method)),
        "allowed through no route of http.json for {method}: {answer:?}"
    );
    let path = target.split('?').next().unwrap_or_default();
    assert!(
        path.starts_with('/')
            && !path[1..]
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".."),
        "allowed on an unnormalized path {path}"
    );
    let principal = answer
        .principal
        .as_ref()
        .expect("an allow names its principal");
    assert!(answer
        .headers
        .iter()
        .any(|(name, value)| name == "x-arbiter-principal"
            && value.as_deref() == Some(principal.to_string().as_str())));
});
