//! The engine's public behaviour: loading, errors that name their file and line, atomic
//! reload, per-request entities, batches, validation switches and concurrency.
//!
//! Long: each case is a bundle and a request or two around the fixtures at the top; splitting it
//! by feature would copy those fixtures into every part.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arbiter::{BundleFile, DecisionErrorKind, Effect, Engine, Entity, EntityUid, Request};
use serde_json::{json, Value};

use crate::support::DecideJson;

const SCHEMA: &str = r#"
entity Team;
entity User in [Team] = { active: Bool };
entity Doc = { owner: User };
action read, write appliesTo { principal: User, resource: Doc, context: { level?: Long } };
"#;

const POLICIES: &str = r#"
@id("owner-reads")
permit (principal, action == Action::"read", resource) when { resource.owner == principal };
@id("team-writes")
permit (principal in Team::"core", action == Action::"write", resource);
forbid (principal, action, resource) unless { principal.active };
"#;

const ENTITIES: &str = r#"[
 {"uid": {"type": "Team", "id": "core"}, "attrs": {}, "parents": []},
 {"uid": {"type": "User", "id": "ann"}, "attrs": {"active": true}, "parents": [{"type": "Team", "id": "core"}]},
 {"uid": {"type": "User", "id": "bo"}, "attrs": {"active": true}, "parents": []},
 {"uid": {"type": "Doc", "id": "d1"}, "attrs": {"owner": {"type": "User", "id": "bo"}}, "parents": []}
]"#;

fn files(policies: &str) -> Vec<BundleFile> {
    vec![
        BundleFile::new("schema.cedarschema", SCHEMA),
        BundleFile::new("policies/main.cedar", policies),
        BundleFile::new("entities.json", ENTITIES),
        BundleFile::new("manifest.json", r#"{"name": "docs", "version": "7"}"#),
    ]
}

fn engine() -> Engine {
    Engine::from_files(files(POLICIES)).expect("test bundle loads")
}

fn request(principal: &str, action: &str, resource: &str) -> Value {
    json!({
        "principal": {"type": "User", "id": principal},
        "action": {"type": "Action", "id": action},
        "resource": {"type": "Doc", "id": resource},
    })
}

fn decide(engine: &Engine, request: &Value) -> (Effect, Vec<String>) {
    let d = engine
        .decide_json(&request.to_string())
        .expect("request is valid");
    (d.decision, d.reasons)
}

#[test]
fn decisions_carry_determining_policy_ids() {
    let e = engine();
    assert_eq!(
        decide(&e, &request("bo", "read", "d1")),
        (Effect::Allow, vec!["owner-reads".into()])
    );
    assert_eq!(
        decide(&e, &request("ann", "read", "d1")),
        (Effect::Deny, vec![])
    );
    assert_eq!(
        decide(&e, &request("ann", "write", "d1")),
        (Effect::Allow, vec!["team-writes".into()])
    );
}

#[test]
fn unannotated_policies_are_numbered_by_position() {
    let mut r = request("ghost", "read", "d1");
    r["entities"] = json!([{"uid": {"type": "User", "id": "ghost"}, "attrs": {"active": false}, "parents": []}]);
    // The third policy has no @id: it is Cedar's policy2.
    assert_eq!(
        decide(&engine(), &r),
        (Effect::Deny, vec!["policy2".into()])
    );
}

#[test]
fn authorize_json_speaks_the_contract_wire_format() {
    let answer: Value = serde_json::from_str(
        &engine()
            .authorize_json(&request("bo", "read", "d1").to_string())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        answer,
        json!({"decision": "allow", "reasons": ["owner-reads"], "errors": []})
    );
}

#[test]
fn typed_requests_decide_like_json_ones() {
    let uid = |t: &str, id: &str| EntityUid::from_json(json!({"type": t, "id": id})).unwrap();
    let e = engine();
    let d = e
        .authorize(&Request::new(
            uid("User", "bo"),
            uid("Action", "read"),
            uid("Doc", "d1"),
        ))
        .unwrap();
    assert!(d.allowed());
    let blocked = Entity::from_json_value(
        json!({"uid": {"type": "User", "id": "bo"}, "attrs": {"active": false}, "parents": []}),
        None,
    )
    .unwrap();
    let d = e
        .authorize(
            &Request::new(uid("User", "bo"), uid("Action", "read"), uid("Doc", "d1"))
                .with_entities(vec![blocked]),
        )
        .unwrap();
    assert_eq!(
        (d.decision, d.reasons),
        (Effect::Deny, vec!["policy2".to_owned()])
    );
}

#[test]
fn request_entities_replace_static_ones_for_that_request_only() {
    let e = engine();
    let mut r = request("ann", "write", "d1");
    // ann leaves the team for this request: team-writes no longer applies.
    r["entities"] =
        json!([{"uid": {"type": "User", "id": "ann"}, "attrs": {"active": true}, "parents": []}]);
    assert_eq!(decide(&e, &r).0, Effect::Deny);
    assert_eq!(decide(&e, &request("ann", "write", "d1")).0, Effect::Allow);
    // A new document owned by ann, only in this request.
    let mut r = request("ann", "read", "d2");
    r["entities"] = json!([{"uid": {"type": "Doc", "id": "d2"}, "attrs": {"owner": {"type": "User", "id": "ann"}}, "parents": []}]);
    assert_eq!(decide(&e, &r), (Effect::Allow, vec!["owner-reads".into()]));
}

#[test]
fn evaluation_errors_are_reported_with_their_policy_and_deny() {
    let e = Engine::from_files([BundleFile::new(
        "p.cedar",
        r#"@id("needs-level") permit (principal, action, resource) when { context.level > 3 };"#,
    )])
    .unwrap();
    let d = e
        .decide_json(&json!({"principal": {"type": "User", "id": "a"}, "action": {"type": "Action", "id": "read"}, "resource": {"type": "Doc", "id": "d"}}).to_string())
        .unwrap();
    assert_eq!(d.decision, Effect::Deny);
    assert_eq!(d.errors.len(), 1);
    assert_eq!(d.errors[0].kind, DecisionErrorKind::PolicyEvaluation);
    assert_eq!(d.errors[0].policy.as_deref(), Some("needs-level"));
    assert!(
        d.errors[0].message.contains("level"),
        "{}",
        d.errors[0].message
    );
}

#[test]
fn malformed_and_invalid_requests_are_call_errors_with_kinds() {
    let e = engine();
    let kind = |json: &str| e.authorize_json(json).unwrap_err().kind();
    assert_eq!(kind("{not json"), "malformed_request");
    assert_eq!(
        kind(
            r#"{"action": {"type": "Action", "id": "read"}, "resource": {"type": "Doc", "id": "d1"}}"#
        ),
        "malformed_request"
    );
    let mut r = request("bo", "read", "d1");
    r["colour"] = json!("blue");
    assert_eq!(kind(&r.to_string()), "malformed_request");
    assert_eq!(
        kind(&request("bo", "delete", "d1").to_string()),
        "invalid_request"
    );
    let mut r = request("bo", "read", "d1");
    r["principal"] = json!({"type": "Robot", "id": "r2"});
    assert_eq!(kind(&r.to_string()), "invalid_request");
    let mut r = request("bo", "read", "d1");
    r["context"] = json!({"level": "high"});
    assert_eq!(kind(&r.to_string()), "invalid_context");
    let mut r = request("bo", "read", "d1");
    r["entities"] =
        json!([{"uid": {"type": "User", "id": "x"}, "attrs": {"active": "yes"}, "parents": []}]);
    let err = e.authorize_json(&r.to_string()).unwrap_err();
    assert_eq!(err.kind(), "invalid_entities");
    assert!(err.message().contains("entities[0]"), "{err}");
    let mut r = request("bo", "read", "d1");
    r["entities"] = json!([
        {"uid": {"type": "User", "id": "x"}, "attrs": {"active": true}, "parents": []},
        {"uid": {"type": "User", "id": "x"}, "attrs": {"active": false}, "parents": []}
    ]);
    assert!(e
        .authorize_json(&r.to_string())
        .unwrap_err()
        .message()
        .contains("already given"));
}

#[test]
fn a_token_nobody_can_verify_denies() {
    let e = engine();
    let mut r = request("bo", "read", "d1");
    r["token"] = json!("eyJhbGciOiJub25lIn0.e30.");
    let d = e.decide_json(&r.to_string()).unwrap();
    assert_eq!(d.decision, Effect::Deny);
    assert_eq!(d.errors[0].kind, DecisionErrorKind::UnknownIssuer);
    r.as_object_mut().unwrap().remove("principal");
    assert_eq!(
        e.decide_json(&r.to_string()).unwrap().decision,
        Effect::Deny
    );
}

#[test]
fn batch_answers_every_element_in_order() {
    let e = engine();
    let batch =
        json!([request("bo", "read", "d1"), {"nonsense": true}, request("ann", "read", "d1")]);
    let answers: Vec<Value> =
        serde_json::from_str(&e.authorize_json_batch(&batch.to_string()).unwrap()).unwrap();
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0]["decision"], "allow");
    assert_eq!(answers[1]["error"]["kind"], "malformed_request");
    assert_eq!(answers[1]["error"]["code"], 200);
    assert_eq!(answers[2]["decision"], "deny");
    assert_eq!(
        e.authorize_json_batch("{}").unwrap_err().kind(),
        "malformed_request"
    );

    let uid = |t: &str, id: &str| EntityUid::from_json(json!({"type": t, "id": id})).unwrap();
    let typed = [
        Request::new(uid("User", "bo"), uid("Action", "read"), uid("Doc", "d1")),
        Request::new(uid("User", "bo"), uid("Action", "fly"), uid("Doc", "d1")),
    ];
    let results = e.authorize_batch(&typed);
    assert!(results[0].as_ref().unwrap().allowed());
    assert_eq!(results[1].as_ref().unwrap_err().kind(), "invalid_request");
}

#[test]
fn load_errors_name_the_file_and_line() {
    let err = Engine::from_files(files(
        "permit (principal, action, resource);\npermit (principal, action resource);",
    ))
    .err()
    .unwrap();
    assert_eq!((err.kind(), err.code()), ("policy_parse", 102));
    let p = &err.problems()[0];
    assert_eq!((p.file.as_str(), p.line), ("policies/main.cedar", Some(2)));

    let err = Engine::from_files(files("permit (principal, action, resource);\n\npermit (principal, action, resource) when { principal.age > 3 };"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), "policy_validation");
    let p = &err.problems()[0];
    assert_eq!((p.file.as_str(), p.line), ("policies/main.cedar", Some(3)));
    assert!(p.message.contains("age"), "{p}");

    let mut bad_entities = files(POLICIES);
    bad_entities[2] = BundleFile::new(
        "entities.json",
        r#"[{"uid": {"type": "User", "id": "x"}, "attrs": {"active": 1}, "parents": []}]"#,
    );
    let err = Engine::from_files(bad_entities).err().unwrap();
    assert_eq!(err.kind(), "entities");
    assert!(err.to_string().starts_with("entities.json"), "{err}");
    assert!(err.to_string().contains("active"), "{err}");

    let mut bad_schema = files(POLICIES);
    bad_schema[0] = BundleFile::new(
        "schema.cedarschema",
        "entity User = { active: Bool };\nentity Doc = { owner: Usr };",
    );
    let err = Engine::from_files(bad_schema).err().unwrap();
    assert_eq!(err.kind(), "schema");

    let mut bad_manifest = files(POLICIES);
    bad_manifest[3] = BundleFile::new("manifest.json", "{\"name\": 3}");
    assert_eq!(
        Engine::from_files(bad_manifest).err().unwrap().kind(),
        "manifest"
    );

    let err = Engine::from_bundle_dir("/nonexistent/bundle")
        .err()
        .unwrap();
    assert_eq!(err.kind(), "io");
    assert!(err.to_string().contains("/nonexistent/bundle"), "{err}");
}

#[test]
fn validation_switches_let_unvalidated_bundles_run() {
    let loose = "permit (principal, action, resource) when { principal.age > 3 };";
    assert!(Engine::from_files(files(loose)).is_err());
    let mut off = files(loose);
    off[3] = BundleFile::new("manifest.json", r#"{"validate_policies": false}"#);
    let e = Engine::from_files(off).unwrap();
    let d = e
        .decide_json(&request("bo", "read", "d1").to_string())
        .unwrap();
    assert_eq!((d.decision, d.errors.len()), (Effect::Deny, 1));

    // With request validation off, a request the schema does not know is still decided.
    let mut lax = files(POLICIES);
    lax[3] = BundleFile::new("manifest.json", r#"{"validate_requests": false}"#);
    let e = Engine::from_files(lax).unwrap();
    assert_eq!(decide(&e, &request("bo", "fly", "d1")).0, Effect::Deny);
    assert!(engine()
        .authorize_json(&request("bo", "fly", "d1").to_string())
        .is_err());
}

#[test]
fn failed_reload_keeps_the_old_bundle_and_a_good_one_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let write = |files: &[BundleFile]| {
        for f in files {
            let path = dir.path().join(&f.path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, &f.contents).unwrap();
        }
    };
    write(&files(POLICIES));
    let e = Engine::from_bundle_dir(dir.path()).unwrap();
    assert_eq!(e.info().version.as_deref(), Some("7"));
    let before = decide(&e, &request("bo", "read", "d1"));

    write(&[BundleFile::new("policies/main.cedar", "permit (principal,")]);
    assert_eq!(
        e.reload_from_dir(dir.path()).unwrap_err().kind(),
        "policy_parse"
    );
    write(&[BundleFile::new(
        "policies/main.cedar",
        "permit (principal, action, resource) when { resource.pages > 1 };",
    )]);
    assert_eq!(
        e.reload_from_dir(dir.path()).unwrap_err().kind(),
        "policy_validation"
    );
    assert_eq!(
        e.reload_from_dir(dir.path().join("missing"))
            .unwrap_err()
            .kind(),
        "io"
    );
    assert_eq!(decide(&e, &request("bo", "read", "d1")), before);
    assert_eq!(e.info().policies, 3);

    write(&[
        BundleFile::new(
            "policies/main.cedar",
            r#"@id("all") permit (principal, action, resource);"#,
        ),
        BundleFile::new("manifest.json", r#"{"name": "docs", "version": "8"}"#),
    ]);
    e.reload_from_dir(dir.path()).unwrap();
    assert_eq!(e.info().version.as_deref(), Some("8"));
    assert_eq!(
        decide(&e, &request("ann", "read", "d1")),
        (Effect::Allow, vec!["all".into()])
    );
}

#[test]
fn decisions_during_reloads_always_see_one_whole_bundle() {
    // Version n permits reads through policy `v{n}` only, so a decision names the one version
    // it saw; a decision mixing two versions (or seeing none) would show as another answer.
    // Readers also check they never go back to an older version, and that a batch sees one.
    let version = |n: usize| {
        files(&format!(
            r#"@id("v{n}") permit (principal, action == Action::"read", resource);"#
        ))
    };
    let seen_version = |reasons: &[String]| -> usize {
        match reasons {
            [one] => one.strip_prefix('v').and_then(|n| n.parse().ok()),
            _ => None,
        }
        .unwrap_or_else(|| panic!("decision from no single bundle: {reasons:?}"))
    };
    const RELOADS: usize = 3_000;
    let engine = Arc::new(Engine::from_files(version(0)).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..6)
        .map(|thread| {
            let (engine, done) = (Arc::clone(&engine), Arc::clone(&done));
            std::thread::spawn(move || {
                let (mut latest, mut decisions) = (0, 0usize);
                let read = request("ann", "read", "d1").to_string();
                while !done.load(Ordering::Acquire) {
                    let seen = if thread % 2 == 0 {
                        let (effect, reasons) = decide_text(&engine, &read);
                        assert_eq!(effect, Effect::Allow);
                        seen_version(&reasons)
                    } else {
                        let batch: Value = serde_json::from_str(
                            &engine
                                .authorize_json_batch(&format!("[{read},{read},{read}]"))
                                .unwrap(),
                        )
                        .unwrap();
                        let versions: Vec<usize> = batch
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|d| {
                                seen_version(
                                    &serde_json::from_value::<Vec<String>>(d["reasons"].clone())
                                        .unwrap(),
                                )
                            })
                            .collect();
                        assert!(
                            versions.windows(2).all(|w| w[0] == w[1]),
                            "a batch saw {versions:?}"
                        );
                        versions[0]
                    };
                    assert!(seen >= latest, "went back from version {latest} to {seen}");
                    latest = seen;
                    decisions += 1;
                }
                (latest, decisions)
            })
        })
        .collect();
    for n in 1..=RELOADS {
        engine.reload_from_files(version(n)).unwrap();
        if n % 100 == 0 {
            assert!(engine.reload_from_files(files("permit (")).is_err());
        }
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        let (latest, decisions) = reader.join().unwrap();
        assert!(decisions > 0);
        assert!(latest <= RELOADS);
    }
    assert_eq!(
        decide(&engine, &request("ann", "read", "d1")),
        (Effect::Allow, vec![format!("v{RELOADS}")])
    );
}

#[test]
fn reloads_from_broken_directories_keep_the_old_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let write = |root: &std::path::Path, files: &[BundleFile]| {
        for f in files {
            let path = root.join(&f.path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, &f.contents).unwrap();
        }
    };
    write(dir.path(), &files(POLICIES));
    let engine = Engine::from_bundle_dir(dir.path()).unwrap();
    let probe = request("bo", "read", "d1");
    let before = decide(&engine, &probe);
    assert_eq!(before, (Effect::Allow, vec!["owner-reads".into()]));

    // Each case breaks a fresh copy of the good bundle; every reload fails with the kind named
    // and the engine keeps deciding with the bundle it had.
    type Break = Box<dyn Fn(&std::path::Path)>;
    let cases: Vec<(&str, Break)> = vec![
        // Half-written: files cut off mid-write, as by a copy that crashed.
        (
            "schema",
            Box::new(|root| {
                std::fs::write(root.join("schema.cedarschema"), &SCHEMA[..SCHEMA.len() / 2])
                    .unwrap()
            }),
        ),
        (
            "policy_parse",
            Box::new(|root| {
                std::fs::write(
                    root.join("policies/main.cedar"),
                    &POLICIES[..POLICIES.len() - 20],
                )
                .unwrap()
            }),
        ),
        (
            "entities",
            Box::new(|root| {
                std::fs::write(root.join("entities.json"), &ENTITIES[..ENTITIES.len() / 2]).unwrap()
            }),
        ),
        (
            "manifest",
            Box::new(|root| std::fs::write(root.join("manifest.json"), r#"{"name": "do"#).unwrap()),
        ),
        // Unreadable: a file that is a directory, a dangling symlink, bytes that are not UTF-8.
        (
            "io",
            Box::new(|root| {
                std::fs::remove_file(root.join("entities.json")).unwrap();
                std::fs::create_dir(root.join("entities.json")).unwrap();
            }),
        ),
        (
            "io",
            Box::new(|root| {
                std::fs::remove_file(root.join("policies/main.cedar")).unwrap();
                std::os::unix::fs::symlink(
                    root.join("gone.cedar"),
                    root.join("policies/main.cedar"),
                )
                .unwrap();
            }),
        ),
        (
            "io",
            Box::new(|root| {
                std::fs::write(
                    root.join("policies/main.cedar"),
                    b"permit (principal, action, resource) \xff;",
                )
                .unwrap()
            }),
        ),
        // Invalid: policies that parse but do not validate.
        (
            "policy_validation",
            Box::new(|root| {
                std::fs::write(
                    root.join("policies/main.cedar"),
                    "permit (principal, action, resource) when { resource.pages > 1 };",
                )
                .unwrap()
            }),
        ),
    ];
    // The copies are another version (8, other policy ids), so a reload that wrongly took one
    // would show in the version and the decision.
    let mut next = files(&POLICIES.replace("owner-reads", "owner-reads-v8"));
    next[3] = BundleFile::new("manifest.json", r#"{"name": "docs", "version": "8"}"#);
    let copies = tempfile::tempdir().unwrap();
    for (i, (kind, break_it)) in cases.iter().enumerate() {
        let copy = copies.path().join(format!("broken-{i}"));
        write(&copy, &next);
        break_it(&copy);
        let err = engine
            .reload_from_dir(&copy)
            .expect_err(&format!("case {i} loaded"));
        assert_eq!(err.kind(), *kind, "case {i}: {err}");
        assert!(
            !err.problems().is_empty(),
            "case {i}: the error names no file"
        );
        assert_eq!(decide(&engine, &probe), before, "case {i}");
        assert_eq!(engine.info().version.as_deref(), Some("7"));
    }
    assert!(engine.reload_from_dir(dir.path().join("missing")).is_err());
    assert_eq!(decide(&engine, &probe), before);
}

#[test]
fn the_default_gitlab_bundle_loads() {
    let e = Engine::gitlab_default().unwrap();
    let info = e.info();
    assert_eq!(info.name.as_deref(), Some("gitlab"));
    assert!(info.policies >= 40, "{info:?}");
    assert!(info.has_schema && info.validate_policies && info.validate_requests);
}

#[test]
fn contexts_typed_by_the_schema_read_as_cedar_reads_them() {
    // `from` is an entity and `ip` an extension value: given in the schema's implicit forms,
    // the fast context reader makes a record and a string of them, the schema refuses that, and
    // Cedar's reader reads them as it always does.
    let schema = r#"
entity User;
entity Doc;
action read appliesTo { principal: User, resource: Doc, context: { from: User, ip: ipaddr, n?: Long } };
"#;
    let policy = r#"@id("local") permit (principal, action, resource) when { context.ip.isLoopback() && context.from == principal };"#;
    let e = Engine::from_files([
        BundleFile::new("schema.cedarschema", schema),
        BundleFile::new("p.cedar", policy),
    ])
    .unwrap();
    let request = |context: Value| {
        json!({"principal": {"type": "User", "id": "u"}, "action": {"type": "Action", "id": "read"},
               "resource": {"type": "Doc", "id": "d"}, "context": context})
        .to_string()
    };
    let implicit = request(json!({"from": {"type": "User", "id": "u"}, "ip": "127.0.0.1"}));
    assert_eq!(
        decide_text(&e, &implicit),
        (Effect::Allow, vec!["local".to_owned()])
    );
    let explicit = request(
        json!({"from": {"__entity": {"type": "User", "id": "u"}}, "ip": {"__extn": {"fn": "ip", "arg": "127.0.0.1"}}}),
    );
    assert_eq!(
        decide_text(&e, &explicit),
        (Effect::Allow, vec!["local".to_owned()])
    );
    let wrong =
        request(json!({"from": {"type": "User", "id": "u"}, "ip": "127.0.0.1", "n": "seven"}));
    assert_eq!(
        e.authorize_json(&wrong).unwrap_err().kind(),
        "invalid_context"
    );
    let parts = arbiter::RequestParts {
        principal: Some(("User", "u")),
        action: ("Action", "read"),
        resource: ("Doc", "d"),
        context_json: Some(r#"{"from": {"type": "User", "id": "u"}, "ip": "127.0.0.1"}"#),
        entities_json: None,
        token: None,
        request_id: None,
    };
    assert!(e.authorize_parts(&parts).unwrap().allowed());
    // The batch of parts: each request on its own, a bad one answered with its error in place.
    let bad = arbiter::RequestParts {
        context_json: Some(r#"{"n": "seven"}"#),
        ..parts
    };
    let denied = arbiter::RequestParts {
        context_json: Some(r#"{"from": {"type": "User", "id": "u"}, "ip": "10.0.0.1"}"#),
        ..parts
    };
    let answers = e.authorize_parts_batch(&[parts, bad, denied]);
    assert!(answers[0].as_ref().unwrap().allowed());
    assert_eq!(answers[1].as_ref().unwrap_err().kind(), "invalid_context");
    assert!(!answers[2].as_ref().unwrap().allowed());
    // A batch a binding read: an element it could not read keeps its error, in place.
    let unread = arbiter::CallError::malformed("`action` is required");
    let answers = arbiter::ffi::authorize_read_batch(
        &e,
        &[Ok(denied), Err(unread.clone()), Ok(bad), Ok(parts)],
    )
    .answer;
    assert!(!answers[0].as_ref().unwrap().allowed());
    assert_eq!(answers[1], Err(unread));
    assert_eq!(
        answers[2].as_ref().unwrap_err().kind.as_str(),
        "invalid_context"
    );
    assert!(answers[3].as_ref().unwrap().allowed());

    // Plain JSON that the schema reads otherwise: the fast reader's string is refused, and
    // Cedar's reader makes an IP address of it.
    let schema = "entity User; entity Doc; action read appliesTo { principal: User, resource: Doc, context: { ip: ipaddr } };";
    let policy =
        r#"@id("local") permit (principal, action, resource) when { context.ip.isLoopback() };"#;
    let e = Engine::from_files([
        BundleFile::new("schema.cedarschema", schema),
        BundleFile::new("p.cedar", policy),
    ])
    .unwrap();
    assert_eq!(
        decide_text(&e, &request(json!({"ip": "127.0.0.1"}))),
        (Effect::Allow, vec!["local".to_owned()])
    );
    assert_eq!(
        decide_text(&e, &request(json!({"ip": "10.1.1.1"}))),
        (Effect::Deny, vec![])
    );
    let err = e
        .authorize_json(&request(json!({"ip": "not an address"})))
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_context", "{err}");
}

/// A batch reads a context given twice once and decides a request given twice once, yet answers,
/// counts and logs every element as a single call would: the same context text read against
/// the schema for two actions whose contexts differ, errors, entities and request ids.
#[test]
fn a_batch_shares_repeated_work_and_answers_as_single_calls() {
    let schema = "entity User; entity Doc { owner?: User }; \
        action read appliesTo { principal: User, resource: Doc, context: { ip: ipaddr, who?: User } }; \
        action note appliesTo { principal: User, resource: Doc, \
            context: { ip: String, who?: { type: String, id: String } } };";
    let policies = r#"
        @id("local") permit (principal, action == Action::"read", resource) when { context.ip.isLoopback() };
        @id("noted") permit (principal, action == Action::"note", resource) when { context.ip == "127.0.0.1" };
        @id("owner") permit (principal, action, resource) when { resource has owner && resource.owner == principal };
        @id("self") permit (principal, action == Action::"read", resource) when { context has who && context.who == principal };
        @id("named") permit (principal, action == Action::"note", resource) when { context has who && context.who.type == "User" };
    "#;
    let e = Engine::from_files([
        BundleFile::new("schema.cedarschema", schema),
        BundleFile::new("p.cedar", policies),
    ])
    .unwrap();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    e.set_decision_log(arbiter::DecisionLogOptions::default(), move |line: &str| {
        sink.lock().unwrap().push(line.to_owned())
    })
    .unwrap();
    let read = arbiter::RequestParts {
        principal: Some(("User", "u")),
        action: ("Action", "read"),
        resource: ("Doc", "d"),
        context_json: Some(r#"{"ip": "127.0.0.1"}"#),
        entities_json: None,
        token: None,
        request_id: Some("r1"),
    };
    let note = arbiter::RequestParts {
        action: ("Action", "note"),
        request_id: Some("r2"),
        ..read
    };
    let far = arbiter::RequestParts {
        context_json: Some(r#"{"ip": "10.0.0.1"}"#),
        ..read
    };
    let bad = arbiter::RequestParts {
        context_json: Some(r#"{"ip": 7}"#),
        ..read
    };
    let owned = arbiter::RequestParts {
        entities_json: Some(
            r#"[{"uid": {"type": "Doc", "id": "d"}, "attrs": {"owner": {"type": "User", "id": "u"}}, "parents": []}]"#,
        ),
        context_json: Some(r#"{"ip": "10.0.0.1"}"#),
        ..read
    };
    // Cedar reads this text per action: `who` is an entity for `read`, a record for `note`.
    let who = Some(r#"{"ip": "127.0.0.1", "who": {"type": "User", "id": "u"}}"#);
    let batch = [
        arbiter::RequestParts {
            context_json: who,
            ..read
        },
        arbiter::RequestParts {
            context_json: who,
            ..note
        },
        read,
        note,
        far,
        bad,
        owned,
        arbiter::RequestParts {
            request_id: Some("r3"),
            ..read
        },
        note,
        far,
        bad,
        far,
        owned,
    ];
    let singles: Vec<_> = batch.iter().map(|p| e.authorize_parts(p)).collect();
    let answers = e.authorize_parts_batch(&batch);
    assert_eq!(answers.len(), singles.len());
    for (n, (single, answer)) in singles.iter().zip(&answers).enumerate() {
        match (single, answer) {
            (Ok(single), Ok(answer)) => assert_eq!(single, answer, "element {n}"),
            (Err(single), Err(answer)) => {
                assert_eq!(single.to_string(), answer.to_string(), "element {n}")
            }
            _ => panic!("element {n}: {single:?} alone, {answer:?} in the batch"),
        }
    }
    let allowed: Vec<bool> = answers
        .iter()
        .map(|a| a.as_ref().is_ok_and(|d| d.allowed()))
        .collect();
    assert_eq!(
        allowed,
        [true, true, true, true, false, false, true, true, true, false, false, false, true]
    );
    let reasons = |n: usize| answers[n].as_ref().unwrap().reasons.clone();
    assert_eq!(
        (reasons(0), reasons(1)),
        (
            vec!["local".into(), "self".into()],
            vec!["named".into(), "noted".into()]
        )
    );
    // Every decision of both rounds counted and logged, each with its own request id.
    let decided = singles.iter().filter(|a| a.is_ok()).count() * 2;
    let counted: u64 = e.metrics().decisions.iter().map(|a| a.allow + a.deny).sum();
    assert_eq!(counted, decided as u64);
    let events = events.lock().unwrap();
    assert_eq!(events.len(), decided);
    let r3 = &events[decided / 2 + 6];
    assert!(r3.contains(r#""request_id":"r3""#), "{r3}");
}

fn decide_text(engine: &Engine, request: &str) -> (Effect, Vec<String>) {
    let d = engine.decide_json(request).expect("request is valid");
    (d.decision, d.reasons)
}

/// New request entities get ancestors through each other and through the static hierarchy; a
/// request entity that a static entity names as a (missing) parent extends that entity's
/// ancestors; a cycle among request entities is refused, as Cedar refuses it.
#[test]
fn request_entities_close_over_each_other_and_the_static_hierarchy() {
    let policies = r#"
        @id("in-top") permit (principal in Group::"top", action, resource in Group::"top");
    "#;
    let entities = json!([
        {"uid": {"type": "Group", "id": "top"}, "attrs": {}, "parents": []},
        {"uid": {"type": "Group", "id": "mid"}, "attrs": {}, "parents": [{"type": "Group", "id": "top"}]},
        {"uid": {"type": "User", "id": "old"}, "attrs": {}, "parents": [{"type": "Group", "id": "gone"}]},
        {"uid": {"type": "Doc", "id": "d"}, "attrs": {}, "parents": [{"type": "Group", "id": "mid"}]},
    ]);
    let engine = Engine::from_files([
        BundleFile::new("policies.cedar", policies),
        BundleFile::new("entities.json", entities.to_string()),
    ])
    .unwrap();
    let ask = |principal: &str, entities: Value| {
        let request = json!({"principal": {"type": "User", "id": principal},
            "action": {"type": "Action", "id": "read"},
            "resource": {"type": "Doc", "id": "new"}, "entities": entities});
        engine.decide_json(&request.to_string())
    };
    let group = |id: &str, parent: &str| {
        json!({"uid": {"type": "Group", "id": id}, "attrs": {},
               "parents": [{"type": "Group", "id": parent}]})
    };
    let user = |parent: &str| {
        json!({"uid": {"type": "User", "id": "new"}, "attrs": {},
               "parents": [{"type": "Group", "id": parent}]})
    };
    let doc = |parent: &str| {
        json!({"uid": {"type": "Doc", "id": "new"}, "attrs": {},
               "parents": [{"type": "Group", "id": parent}]})
    };
    // user -> g1 (request) -> mid (static) -> top; doc -> mid -> top.
    let d = ask("new", json!([user("g1"), group("g1", "mid"), doc("mid")])).unwrap();
    assert!(d.allowed(), "{}", d.to_json());
    // Listed children first, parents after: the order does not matter.
    let d = ask(
        "new",
        json!([doc("g2"), user("g1"), group("g2", "g1"), group("g1", "mid")]),
    )
    .unwrap();
    assert!(d.allowed(), "{}", d.to_json());
    // Without the link to `mid`, nothing reaches `top`.
    let d = ask(
        "new",
        json!([user("g1"), group("g1", "elsewhere"), doc("mid")]),
    )
    .unwrap();
    assert!(!d.allowed(), "{}", d.to_json());
    // A static user whose parent `gone` only the request defines.
    let d = ask("old", json!([group("gone", "mid"), doc("mid")])).unwrap();
    assert!(d.allowed(), "{}", d.to_json());
    let d = ask("old", json!([doc("mid")])).unwrap();
    assert!(!d.allowed(), "{}", d.to_json());
    // A cycle among the request's entities.
    let e = ask(
        "new",
        json!([user("g1"), group("g1", "g2"), group("g2", "g1"), doc("mid")]),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "invalid_entities", "{e}");
}

/// The default bundle's static entities (read by the fast loader) are the entities Cedar's
/// parser reads from the same file with the same schema, action entities included, and the
/// member roles of `member_roles.json`.
#[test]
fn static_entities_read_as_cedar_reads_them() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/gitlab");
    let read = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
    let schema = cedar_policy::Schema::from_cedarschema_str(&read("schema.cedarschema"))
        .unwrap()
        .0;
    let cedar =
        cedar_policy::Entities::from_json_str(&read("entities.json"), Some(&schema)).unwrap();
    let mut want: Vec<Value> = cedar.iter().map(|e| e.to_json_value().unwrap()).collect();
    let member_roles: Value = serde_json::from_str(&read("member_roles.json")).unwrap();
    for role in member_roles["roles"].as_array().unwrap() {
        want.push(json!({
            "uid": {"type": "Gitlab::MemberRole", "id": role["id"]},
            "attrs": {"name": role["name"], "base_access_level": role["base_access_level"],
                      "permissions": role["permissions"]},
            "parents": [],
        }));
    }
    let mut got: Vec<Value> =
        serde_json::from_str(&Engine::gitlab_default().unwrap().entities_json()).unwrap();
    let key = |v: &Value| v["uid"].to_string();
    want.sort_by_key(key);
    got.sort_by_key(key);
    // Parents are sets: compare them sorted.
    for v in want.iter_mut().chain(got.iter_mut()) {
        if let Some(parents) = v["parents"].as_array_mut() {
            parents.sort_by_key(|p| p.to_string());
        }
    }
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
}

/// Plain static entities take the fast loader: the same entities as Cedar's parser (the
/// schema's action entities added), the hierarchy closed, and non-conforming files refused with
/// Cedar's error.
#[test]
fn plain_static_entities_load_as_cedar_loads_them() {
    let schema = r#"
        entity Group in [Group];
        entity User in [Group] { level: Long, tags: Set<String> };
        action read appliesTo { principal: User, resource: Group };
    "#;
    let entities = json!([
        {"uid": {"type": "Group", "id": "top"}, "attrs": {}, "parents": []},
        {"uid": {"type": "Group", "id": "mid"}, "attrs": {}, "parents": [{"type": "Group", "id": "top"}]},
        {"uid": {"type": "User", "id": "u"}, "attrs": {"level": 2, "tags": ["a"]},
         "parents": [{"type": "Group", "id": "mid"}]},
    ]);
    let bundle = |entities: &Value| {
        Engine::from_files([
            BundleFile::new(
                "policies.cedar",
                r#"permit (principal in Group::"top", action, resource) when { principal.level > 1 };"#,
            ),
            BundleFile::new("schema.cedarschema", schema),
            BundleFile::new("entities.json", entities.to_string()),
        ])
    };
    let engine = bundle(&entities).unwrap();
    let request = json!({"principal": {"type": "User", "id": "u"}, "action": {"type": "Action", "id": "read"},
                         "resource": {"type": "Group", "id": "top"}});
    let d = engine.decide_json(&request.to_string()).unwrap();
    assert!(d.allowed(), "{}", d.to_json());

    assert_entities_as_cedar_reads_them(&engine, &entities, schema);

    // A wrong attribute type and a cycle: Cedar's errors, naming the file.
    let mut wrong = entities.clone();
    wrong[2]["attrs"]["level"] = json!("2");
    let e = bundle(&wrong).err().unwrap().to_string();
    assert!(e.contains("entities.json") && e.contains("level"), "{e}");
    let mut cycle = entities;
    cycle[0]["parents"] = json!([{"type": "Group", "id": "mid"}]);
    let e = bundle(&cycle).err().unwrap().to_string();
    assert!(e.contains("entities.json"), "{e}");
}

/// Entity references in static entities (`{"type", "id"}` and `__entity`, in attributes, sets,
/// records and tags) read as Cedar reads them where the schema expects an entity, and decide; a
/// record of that shape where the schema expects a record stays a record.
#[test]
fn static_entity_references_read_as_cedar_reads_them() {
    let schema = r#"
        entity Role;
        entity User { manager?: User, peers: Set<User>, home: { owner: User }, badge?: { type: String, id: String } } tags Role;
        action read appliesTo { principal: User, resource: User };
    "#;
    let user = |id: &str, attrs: Value, tags: Value| json!({"uid": {"type": "User", "id": id}, "attrs": attrs, "parents": [], "tags": tags});
    let refs = json!([
        {"uid": {"type": "Role", "id": "dev"}, "attrs": {}, "parents": []},
        user("a", json!({"peers": [], "home": {"owner": {"__entity": {"type": "User", "id": "a"}}}}), json!({})),
        user("b", json!({"manager": {"type": "User", "id": "a"}, "peers": [{"__entity": {"type": "User", "id": "a"}}],
                         "home": {"owner": {"type": "User", "id": "b"}}}),
             json!({"lead": {"type": "Role", "id": "dev"}})),
    ]);
    let mut badge = refs.clone();
    badge[1]["attrs"]["badge"] = json!({"type": "b", "id": "1"});
    for entities in [refs, badge] {
        let engine = Engine::from_files([
            BundleFile::new(
                "policies.cedar",
                r#"permit (principal, action, resource) when { resource has manager && resource.manager == principal && resource.peers.contains(principal) && resource.hasTag("lead") && resource.getTag("lead") == Role::"dev" };"#,
            ),
            BundleFile::new("schema.cedarschema", schema),
            BundleFile::new("entities.json", entities.to_string()),
        ])
        .unwrap();
        let request = json!({"principal": {"type": "User", "id": "a"}, "action": {"type": "Action", "id": "read"},
                             "resource": {"type": "User", "id": "b"}});
        let d = engine.decide_json(&request.to_string()).unwrap();
        assert!(d.allowed(), "{}", d.to_json());
        assert_entities_as_cedar_reads_them(&engine, &entities, schema);
    }
}

/// The engine's entities are those Cedar's parser reads from `entities` with `schema` (the
/// schema's action entities included).
fn assert_entities_as_cedar_reads_them(engine: &Engine, entities: &Value, schema: &str) {
    let schema = cedar_policy::Schema::from_cedarschema_str(schema)
        .unwrap()
        .0;
    let cedar = cedar_policy::Entities::from_json_value(entities.clone(), Some(&schema)).unwrap();
    let key = |v: &Value| v["uid"].to_string();
    let mut want: Vec<Value> = cedar.iter().map(|e| e.to_json_value().unwrap()).collect();
    let mut got: Vec<Value> = serde_json::from_str(&engine.entities_json()).unwrap();
    want.sort_by_key(key);
    got.sort_by_key(key);
    assert_eq!(got, want);
}

/// Requests and bundles past the engine's limits are refused before parsing, with errors that
/// name the limit; the limits are the engine's to set.
#[test]
fn limits_refuse_oversized_requests_and_bundles() {
    use arbiter::{Limits, RequestParts};
    let limits = Limits {
        max_request_bytes: 2_000,
        max_request_entities: 2,
        max_json_depth: 4,
        max_bundle_bytes: 1 << 20,
        max_batch_bytes: 8_000,
    };
    let engine = engine().with_limits(limits);
    assert_eq!(engine.limits(), limits);
    let mut big = request("ann", "read", "d1");
    big["context"] = json!({"level": 1, "pad": "x".repeat(3_000)});
    let e = engine.authorize_json(&big.to_string()).unwrap_err();
    assert_eq!(e.kind(), "malformed_request");
    assert!(e.to_string().contains("max_request_bytes"), "{e}");

    let mut deep = request("ann", "read", "d1");
    deep["context"] = json!({"level": [[[[1]]]]});
    let e = engine.authorize_json(&deep.to_string()).unwrap_err();
    assert!(e.to_string().contains("max_json_depth"), "{e}");

    let mut many = request("ann", "read", "d1");
    let team = |i: usize| json!({"uid": {"type": "Team", "id": format!("t{i}")}, "attrs": {}, "parents": []});
    many["entities"] = json!([team(1), team(2), team(3)]);
    let e = engine.authorize_json(&many.to_string()).unwrap_err();
    assert_eq!(e.kind(), "invalid_entities");
    assert!(e.to_string().contains("max_request_entities"), "{e}");
    many["entities"] = json!([team(1), team(2)]);
    assert!(engine.authorize_json(&many.to_string()).is_ok());

    // The same limits hold for parts and inside a batch, element by element.
    let pad = format!(r#"{{"pad": "{}"}}"#, "x".repeat(3_000));
    let parts = RequestParts {
        principal: Some(("User", "ann")),
        action: ("Action", "read"),
        resource: ("Doc", "d1"),
        context_json: Some(&pad),
        entities_json: None,
        token: None,
        request_id: None,
    };
    assert_eq!(
        engine.authorize_parts(&parts).unwrap_err().kind(),
        "malformed_request"
    );
    let batch: Value = serde_json::from_str(
        &engine
            .authorize_json_batch(&json!([big, request("ann", "write", "d1")]).to_string())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(batch[0]["error"]["kind"], "malformed_request");
    assert_eq!(batch[1]["decision"], "allow");
    // A batch past max_batch_bytes is refused whole, before its array is parsed.
    let e = engine
        .authorize_json_batch(&json!([big, big, big]).to_string())
        .unwrap_err();
    assert_eq!(e.kind(), "malformed_request");
    assert!(e.to_string().contains("max_batch_bytes"), "{e}");

    // A bundle past max_bundle_bytes does not load, and a reload past it keeps the old one.
    let small = Limits {
        max_bundle_bytes: 100,
        ..Limits::default()
    };
    let e = Engine::from_files_with_limits(files(POLICIES), small)
        .err()
        .unwrap();
    assert!(e.to_string().contains("max_bundle_bytes"), "{e}");
    let engine = engine.with_limits(small);
    assert!(engine.reload_from_files(files(POLICIES)).is_err());
    assert_eq!(
        decide(&engine, &request("ann", "write", "d1")).0,
        Effect::Allow
    );
}

#[test]
fn metrics_count_decisions_errors_tokens_and_reloads() {
    let erring = format!(
        "{POLICIES}\n@id(\"levels\") permit (principal, action == Action::\"write\", resource)\n  when {{ context has level && context.level * 4611686018427387904 > 0 }};"
    );
    let engine = Engine::from_files(files(&erring)).unwrap();
    let before = engine.metrics();
    assert_eq!(before.bundle.version.as_deref(), Some("7"));
    assert!(before.bundle.load_seconds > 0.0);
    assert_eq!(before.latency.count, 0);

    decide(&engine, &request("bo", "read", "d1")); // allow
    decide(&engine, &request("ann", "read", "d1")); // deny
    let mut overflowing = request("bo", "write", "d1");
    overflowing["context"] = json!({"level": 3});
    decide(&engine, &overflowing); // deny, `levels` errors (overflow)
    assert!(engine.authorize_json("{").is_err());
    let with_token = json!({"action": {"type": "Action", "id": "read"},
                            "resource": {"type": "Doc", "id": "d1"}, "token": "a.b.c"});
    assert!(!engine
        .decide_json(&with_token.to_string())
        .unwrap()
        .allowed());

    // A batch counts each of its requests once.
    let batch = format!("[{0},{0}]", request("bo", "write", "d1"));
    engine.authorize_json_batch(&batch).unwrap();
    let typed = Request::new(
        r#"User::"bo""#.parse().unwrap(),
        r#"Action::"write""#.parse().unwrap(),
        r#"Doc::"d1""#.parse().unwrap(),
    );
    engine.authorize_batch(&[typed.clone(), typed]);

    // Counters survive a reload; a failed reload is counted and changes nothing else.
    engine.reload_from_files(files(&erring)).unwrap();
    decide(&engine, &request("bo", "read", "d1"));
    assert!(engine.reload_from_files(files("permit (")).is_err());

    let m = engine.metrics();
    let action = |name: &str| {
        m.decisions
            .iter()
            .find(|d| d.action == name)
            .map(|d| (d.allow, d.deny))
    };
    assert_eq!(action("Action::read"), Some((2, 2)));
    assert_eq!(action("Action::write"), Some((0, 5)));
    assert_eq!(action("other"), Some((0, 0)));
    assert_eq!(m.request_errors["malformed_request"], 1);
    assert_eq!(m.request_errors["invalid_request"], 0);
    assert_eq!(m.token_failures["unknown_issuer"], 1);
    assert!(!m.token_failures.contains_key("policy_evaluation"));
    assert_eq!(m.policy_errors.get("levels"), Some(&1));
    assert_eq!(m.internal_errors, 0);
    assert_eq!(m.latency.count, 10);
    assert_eq!(m.latency.buckets.last().unwrap().count, 10);
    assert!(m.latency.sum_seconds > 0.0);
    assert_eq!((m.bundle.reloads, m.bundle.reload_failures), (1, 1));
    assert!(m.bundle.loaded_at_unix_seconds >= before.bundle.loaded_at_unix_seconds);

    let text = m.to_prometheus();
    for sample in [
        r#"arbiter_decisions_total{action="Action::read",decision="allow"} 2"#,
        r#"arbiter_token_failures_total{kind="unknown_issuer"} 1"#,
        r#"arbiter_policy_errors_total{policy="levels"} 1"#,
        r#"arbiter_bundle_info{name="docs",version="7"} 1"#,
        r#"arbiter_bundle_reloads_total{result="ok"} 1"#,
        "arbiter_decision_duration_seconds_count 10",
    ] {
        assert!(text.contains(sample), "missing {sample} in:\n{text}");
    }
    // Every sample line is `name{labels} value` or `name value`, with a finite or +Inf value.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    let json: Value = serde_json::from_str(&m.to_json()).unwrap();
    assert_eq!(json["policy_errors"]["levels"], 1);
}

#[test]
fn metrics_give_unknown_actions_one_label() {
    // Without a schema the bundle knows the actions its policies name; any other is `other`.
    let engine = Engine::from_files([BundleFile::new(
        "p.cedar",
        r#"permit (principal, action in [Action::"a", Action::"b"], resource);"#,
    )])
    .unwrap();
    for action in ["a", "b", "c", "d"] {
        let r = json!({"principal": {"type": "U", "id": "1"}, "action": {"type": "Action", "id": action},
                       "resource": {"type": "R", "id": "1"}});
        engine.authorize_json(&r.to_string()).unwrap();
    }
    let m = engine.metrics();
    let labels: Vec<(&str, u64, u64)> = m
        .decisions
        .iter()
        .map(|d| (d.action.as_str(), d.allow, d.deny))
        .collect();
    assert_eq!(
        labels,
        [("Action::a", 1, 0), ("Action::b", 1, 0), ("other", 0, 2)]
    );
}

/// Over every request of the default bundle's tests: the explanation carries the decision
/// `authorize` gives; its satisfied policies of the deciding effect are the reasons (and no
/// forbid is satisfied in an allow); its errored policies are the decision's error policies.
#[test]
fn explanations_agree_with_decisions() {
    let engine = Engine::gitlab_default().unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/gitlab/tests");
    let mut explained = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let tests: Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        for case in tests["cases"].as_array().unwrap() {
            let request = case["request"].to_string();
            let Ok(decision) = engine.decide_json(&request) else {
                assert!(engine.explain_json(&request).is_err());
                continue;
            };
            let e = engine
                .explain(&engine.read_request(&request).unwrap())
                .unwrap();
            assert_eq!(e.decision, decision, "{request}");
            assert_eq!(engine.explain_json(&request).unwrap(), e.to_json());
            let ids = |effect: &str, outcome: arbiter::Outcome| -> Vec<String> {
                e.policies
                    .iter()
                    .filter(|p| p.effect == effect && p.outcome == outcome)
                    .map(|p| p.id.clone())
                    .collect()
            };
            let forbids = ids("forbid", arbiter::Outcome::Satisfied);
            match decision.decision {
                Effect::Allow => {
                    assert!(forbids.is_empty());
                    assert_eq!(ids("permit", arbiter::Outcome::Satisfied), decision.reasons);
                }
                Effect::Deny => assert_eq!(forbids, decision.reasons, "{request}"),
            }
            let mut errored: Vec<String> = e
                .policies
                .iter()
                .filter(|p| p.outcome == arbiter::Outcome::Errored)
                .map(|p| p.id.clone())
                .collect();
            let mut error_policies: Vec<String> = decision
                .errors
                .iter()
                .filter_map(|x| x.policy.clone())
                .collect();
            errored.sort();
            error_policies.sort();
            assert_eq!(errored, error_policies, "{request}");
            for p in &e.policies {
                assert_eq!(
                    p.condition.is_none(),
                    p.outcome == arbiter::Outcome::Satisfied,
                    "{p:?}"
                );
            }
            explained += 1;
        }
    }
    assert!(explained > 500, "{explained}");
}

#[test]
fn a_candidate_bundle_is_compared_but_never_decides() {
    let engine = engine();
    assert_eq!(engine.shadow_report().candidate, None);
    // The candidate lets ann read d1 (the live bundle does not) and drops `owner-reads`.
    let candidate = files(
        r#"@id("ann-reads") permit (principal == User::"ann", action == Action::"read", resource);"#,
    );
    engine.set_candidate_from_files(candidate).unwrap();
    assert!(engine.set_candidate_from_files(files("permit (")).is_err());

    assert_eq!(
        decide(&engine, &request("ann", "read", "d1")),
        (Effect::Deny, vec![])
    );
    assert_eq!(
        decide(&engine, &request("bo", "read", "d1")),
        (Effect::Allow, vec!["owner-reads".into()])
    );
    assert_eq!(
        decide(&engine, &request("bo", "write", "d1")).0,
        Effect::Deny
    );
    let report = engine.shadow_report();
    assert_eq!(report.candidate.unwrap().version.as_deref(), Some("7"));
    assert_eq!((report.agreements, report.disagreements), (1, 2));
    let first = &report.recent[0];
    assert_eq!(
        (first.principal.as_deref(), first.action.as_str()),
        (Some(r#"User::"ann""#), r#"Action::"read""#)
    );
    assert_eq!(
        (
            first.live["decision"].as_str(),
            first.candidate["decision"].as_str()
        ),
        (Some("deny"), Some("allow"))
    );
    assert_eq!(report.recent[1].candidate["reasons"], json!([]));
    let m = engine.metrics();
    assert_eq!((m.shadow_agreements, m.shadow_disagreements), (1, 2));
    assert!(m
        .to_prometheus()
        .contains(r#"arbiter_shadow_decisions_total{result="disagree"} 2"#));
    // Only the live bundle's decisions are counted by action.
    let read = m
        .decisions
        .iter()
        .find(|d| d.action == "Action::read")
        .unwrap();
    assert_eq!((read.allow, read.deny), (1, 1));

    // A new candidate starts counting afresh; clearing it stops the comparison.
    engine.set_candidate_from_files(files(POLICIES)).unwrap();
    decide(&engine, &request("bo", "read", "d1"));
    assert_eq!(
        (
            engine.shadow_report().agreements,
            engine.shadow_report().disagreements
        ),
        (1, 0)
    );
    engine.clear_candidate();
    decide(&engine, &request("bo", "read", "d1"));
    let report = engine.shadow_report();
    assert_eq!((report.candidate, report.agreements), (None, 0));
    assert_eq!(engine.metrics().shadow_agreements, 0);
}

#[test]
fn an_engine_that_trusts_keys_loads_only_bundles_they_signed() {
    let key = |name: &str| {
        std::fs::read(format!(
            "{}/tests/fixtures/keys/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let (ed, ec) = (
        arbiter::BundleSigner::from_pem(&key("ed.pem")).unwrap(),
        arbiter::BundleSigner::from_pem(&key("ec.pem")).unwrap(),
    );
    assert_ne!(ed.key_id(), ec.key_id());
    let signed_at = |signer: &arbiter::BundleSigner, policies: &str, at: i64| {
        let mut files = files(policies);
        let signature = signer.sign(&files, at).unwrap();
        files.push(BundleFile::new(arbiter::SIGNATURE_FILE, signature));
        files
    };
    let signed =
        |signer: &arbiter::BundleSigner, policies: &str| signed_at(signer, policies, 1_000);
    let trust_ed = || arbiter::TrustedKeys::from_pems(&[ed.public_key_pem()]).unwrap();
    assert!(arbiter::TrustedKeys::from_pems(&["not a key"]).is_err());
    assert!(arbiter::TrustedKeys::from_pems::<&str>(&[]).is_err());

    // Unsigned, or signed by a key not trusted: refused at load.
    let refusal =
        |files: Vec<BundleFile>| Engine::from_signed_files(files, trust_ed()).err().unwrap();
    let err = refusal(files(POLICIES));
    assert_eq!((err.kind(), err.code()), ("signature", 108));
    assert!(
        err.to_string()
            .contains("signature.json: the bundle is not signed"),
        "{err}"
    );
    assert!(refusal(signed(&ec, POLICIES))
        .to_string()
        .contains("does not trust"));

    let engine = Engine::from_signed_files(signed(&ed, POLICIES), trust_ed()).unwrap();
    let probe = request("bo", "read", "d1");
    assert_eq!(
        decide(&engine, &probe),
        (Effect::Allow, vec!["owner-reads".into()])
    );

    // Altered after signing (a file changed, added, removed), unsigned, or signed by another
    // key: every reload is refused, naming the files, and the old bundle keeps serving.
    let mut changed = signed(&ed, POLICIES);
    changed[1].contents = r#"@id("all") permit (principal, action, resource);"#.into();
    let mut added = signed(&ed, POLICIES);
    added.push(BundleFile::new(
        "policies/extra.cedar",
        "permit (principal, action, resource);",
    ));
    let mut removed = signed(&ed, POLICIES);
    removed.retain(|f| f.path != "entities.json");
    let mut forged = signed(&ed, POLICIES);
    let last = forged.len() - 1;
    forged[last].contents = forged[last]
        .text()
        .unwrap()
        .replace("\"signature\": \"", "\"signature\": \"AAAA")
        .into();
    // The manifest claims the other algorithm for the trusted key's id.
    let mut swapped = signed(&ed, POLICIES);
    swapped[last].contents = swapped[last]
        .text()
        .unwrap()
        .replace("\"Ed25519\"", "\"ES256\"")
        .into();
    let mut twice = signed(&ed, POLICIES);
    twice.push(twice[0].clone());
    for (case, files, message) in [
        (
            "changed",
            changed,
            "policies/main.cedar: changed since the bundle was signed",
        ),
        (
            "added",
            added,
            "policies/extra.cedar: added since the bundle was signed",
        ),
        (
            "removed",
            removed,
            "entities.json: removed since the bundle was signed",
        ),
        ("unsigned", files(POLICIES), "not signed"),
        ("other key", signed(&ec, POLICIES), "does not trust"),
        (
            "forged",
            forged,
            "signature.json: the signature does not verify",
        ),
        ("algorithm swapped", swapped, "does not trust"),
        ("a path twice", twice, "two files with this path"),
        (
            "older",
            signed_at(&ed, POLICIES, 999),
            "an engine does not go back to an older bundle",
        ),
    ] {
        let err = engine.reload_from_files(files).expect_err(case);
        assert_eq!(err.kind(), "signature", "{case}");
        assert!(err.to_string().contains(message), "{case}: {err}");
        assert_eq!(
            decide(&engine, &probe),
            (Effect::Allow, vec!["owner-reads".into()]),
            "{case}"
        );
    }
    assert!(engine.set_candidate_from_files(files(POLICIES)).is_err());

    // A bundle signed again after the change loads; then the one before it is a rollback.
    let all = r#"@id("all") permit (principal, action, resource);"#;
    engine
        .reload_from_files(signed_at(&ed, all, 2_000))
        .unwrap();
    assert_eq!(decide(&engine, &probe), (Effect::Allow, vec!["all".into()]));
    assert!(engine.reload_from_files(signed(&ed, POLICIES)).is_err());
    assert_eq!(engine.metrics().bundle.reload_failures, 10);

    // Across a restart: the host persists what it served and refuses older bundles from the
    // first load on.
    let served = engine.info().signed_at.unwrap();
    assert_eq!(served, 2_000);
    let restarted = || trust_ed().signed_no_earlier_than(served);
    let err = Engine::from_signed_files(signed(&ed, POLICIES), restarted())
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("does not go back to an older bundle"),
        "{err}"
    );
    let engine = Engine::from_signed_files(signed_at(&ed, all, 2_000), restarted()).unwrap();
    assert!(engine.reload_from_files(signed(&ed, POLICIES)).is_err());
}

#[test]
fn a_signed_bundle_directory_covers_the_key_files_tokens_json_names() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| std::fs::write(dir.path().join(path), text).unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    write(
        "p.cedar",
        r#"@id("all") permit (principal, action, resource);"#,
    );
    write(
        "tokens.json",
        r#"{"jwt": {"issuers": [{"issuer": "i", "algorithms": ["HS256"], "hmac_secret_file": "keys/hs", "principal": {"type": "User"}}]}}"#,
    );
    write("keys/hs", "0123456789abcdef0123456789abcdef");
    let pem = std::fs::read(format!(
        "{}/tests/fixtures/keys/ec.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let signer = arbiter::BundleSigner::from_pem(&pem).unwrap();
    let files = arbiter::read_bundle_dir(dir.path()).unwrap();
    assert!(files.iter().any(|f| f.path == "keys/hs"));
    write(arbiter::SIGNATURE_FILE, &signer.sign(&files, 1).unwrap());
    let keys = arbiter::TrustedKeys::from_pems(&[signer.public_key_pem()]).unwrap();
    let engine = Engine::from_signed_bundle_dir(dir.path(), keys).unwrap();
    engine.reload_from_dir(dir.path()).unwrap();

    write("keys/hs", "another secret, another secret!!");
    let err = engine.reload_from_dir(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("keys/hs: changed since the bundle was signed"),
        "{err}"
    );
    // A directory that cannot be read is a failed reload too.
    assert!(engine.reload_from_dir(dir.path().join("missing")).is_err());
    let m = engine.metrics().bundle;
    assert_eq!((m.reloads, m.reload_failures), (1, 2));
}
