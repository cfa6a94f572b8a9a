//! Paths a security review found allowing what they should deny, each pinned: typed requests
//! bring entities the schema refuses, a request's action regrouped or of another type than
//! `Action` outside a schema, duplicate keys in request JSON, a token's claims overriding the
//! host's principal, lenient JWT headers, token errors that quote the token, raw secret files,
//! and symbolic link loops in bundle directories.
//!
//! Long: one regression test per finding, each with the bundle that showed it.

use std::str::FromStr;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use arbiter::{
    BundleFile, DecisionErrorKind, Effect, Engine, Entity, EntityUid, Macaroon, MacaroonFormat,
    Request, RequestParts,
};

use crate::support::DecideJson;

const NOW: i64 = 1_800_000_000;

fn uid(t: &str, id: &str) -> EntityUid {
    EntityUid::from_json(json!({"type": t, "id": id})).unwrap()
}

/// A request entity built as a Rust host may build it: without a schema, so nothing checks
/// its attributes until Arbiter does.
fn entity(json: Value) -> Entity {
    Entity::from_json_value(json, None).unwrap()
}

/// The default bundle's static entity `uid`, as entity JSON.
fn static_entity(engine: &Engine, uid: &Value) -> Value {
    let all: Vec<Value> = serde_json::from_str(&engine.entities_json()).unwrap();
    all.into_iter()
        .find(|e| e["uid"]["__entity"] == *uid || e["uid"] == *uid)
        .unwrap_or_else(|| panic!("no static entity {uid}"))
}

/// Every typed entry point refuses what the JSON path refuses: an attribute of the wrong type
/// (which used to make the fail-closed `archived-read-only` forbid error out, be skipped, and
/// allow a push to an archived project) and an action entity that regroups actions (which used
/// to let a job token remove a project).
#[test]
fn typed_requests_check_their_entities_as_json_requests_do() {
    let engine = Engine::gitlab_default().unwrap();
    let context =
        cedar_policy::Context::from_json_value(json!({"admin_mode": false}), None).unwrap();

    // Alice is a Developer of project 10 (entities.json).
    let project = json!({"type": "Gitlab::Project", "id": "10"});
    let mut archived = static_entity(&engine, &project);
    archived["uid"] = project.clone();
    archived["attrs"]["archived"] = json!("true");
    let push = Request::new(
        uid("Gitlab::User", "alice"),
        uid("Gitlab::Action", "push_code"),
        uid("Gitlab::Project", "10"),
    )
    .with_context(context.clone());
    assert!(engine.authorize(&push).unwrap().allowed(), "the baseline");

    let regrouped = entity(json!({
        "uid": {"type": "Gitlab::Action", "id": "remove_project"},
        "attrs": {}, "parents": [{"type": "Gitlab::Action", "id": "job_token"}],
    }));
    // Job 100 runs in project 3 for alice, made its Owner here.
    let mut owned = static_entity(&engine, &json!({"type": "Gitlab::Project", "id": "3"}));
    owned["tags"] = json!({"alice": {"access_level": 50}});
    let remove = Request::new(
        uid("Gitlab::CiJob", "100"),
        uid("Gitlab::Action", "remove_project"),
        uid("Gitlab::Project", "3"),
    )
    .with_context(context)
    .with_entities(vec![entity(owned.clone())]);
    assert!(
        !engine.authorize(&remove).unwrap().allowed(),
        "the baseline"
    );

    for (request, entities) in [
        (push, vec![entity(archived.clone())]),
        (remove, vec![regrouped, entity(owned)]),
    ] {
        let request = request.with_entities(entities);
        let refused = |result: Result<_, arbiter::RequestError>| match result {
            Err(e) => assert_eq!(e.kind(), "invalid_entities", "{e}"),
            Ok(d) => panic!("decided {d:?} on entities the schema refuses"),
        };
        refused(engine.authorize(&request).map(|d| d.decision));
        refused(engine.explain(&request).map(|x| x.decision.decision));
        for answer in engine.authorize_batch(std::slice::from_ref(&request)) {
            refused(answer.map(|d| d.decision));
        }
    }

    // The JSON and parts paths refuse the same entity, as they always did.
    let json_request = json!({
        "principal": {"type": "Gitlab::User", "id": "alice"},
        "action": {"type": "Gitlab::Action", "id": "push_code"},
        "resource": project, "context": {"admin_mode": false},
        "entities": [archived],
    });
    let e = engine
        .authorize_json(&json_request.to_string())
        .unwrap_err();
    assert_eq!(e.kind(), "invalid_entities");
    let (context, entities) = (
        json_request["context"].to_string(),
        json_request["entities"].to_string(),
    );
    let parts = RequestParts {
        principal: Some(("Gitlab::User", "alice")),
        action: ("Gitlab::Action", "push_code"),
        resource: ("Gitlab::Project", "10"),
        context_json: Some(&context),
        entities_json: Some(&entities),
        token: None,
        request_id: None,
    };
    assert_eq!(
        engine.authorize_parts(&parts).unwrap_err().kind(),
        "invalid_entities"
    );

    // Typed entities given twice differently are refused as in JSON.
    let twice = Request::new(
        uid("Gitlab::User", "alice"),
        uid("Gitlab::Action", "read_project"),
        uid("Gitlab::Project", "3"),
    )
    .with_entities(vec![
        entity(json!({"uid": {"type": "Gitlab::Group", "id": "x"}, "attrs": {"visibility": "public"}, "parents": []})),
        entity(json!({"uid": {"type": "Gitlab::Group", "id": "x"}, "attrs": {"visibility": "private"}, "parents": []})),
    ]);
    assert_eq!(
        engine.authorize(&twice).unwrap_err().kind(),
        "invalid_entities"
    );
}

/// Cedar's own answer over the bundle's policies and the merged entities.
fn cedar(policies: &str, entities: Value, principal: &str, action: (&str, &str)) -> Effect {
    let set = cedar_policy::PolicySet::from_str(policies).unwrap();
    let store = cedar_policy::Entities::from_json_value(entities, None).unwrap();
    let request = cedar_policy::Request::new(
        uid("User", principal),
        uid(action.0, action.1),
        uid("Doc", "d"),
        cedar_policy::Context::empty(),
        None,
    )
    .unwrap();
    match cedar_policy::Authorizer::new()
        .is_authorized(&request, &set, &store)
        .decision()
    {
        cedar_policy::Decision::Allow => Effect::Allow,
        cedar_policy::Decision::Deny => Effect::Deny,
    }
}

/// Without a schema, a request's action may be an entity of any type, in an action group
/// through the static store or through the request's own entities (at any depth): policies
/// scoped `action in [...]` apply to it exactly as Cedar applies them.
#[test]
fn outside_a_schema_the_index_finds_actions_of_any_type_in_their_groups() {
    let policies = r#"
        @id("readers") permit (principal, action in [Action::"readers"], resource);
        @id("no-writers") forbid (principal, action in [Action::"writers"], resource);
        @id("any") permit (principal, action, resource) when { principal == User::"root" };
    "#;
    let statics = json!([
        {"uid": {"type": "Action", "id": "readers"}, "attrs": {}, "parents": []},
        {"uid": {"type": "Action", "id": "writers"}, "attrs": {}, "parents": []},
        {"uid": {"type": "Op", "id": "view"}, "attrs": {}, "parents": [{"type": "Action", "id": "readers"}]},
        {"uid": {"type": "Op", "id": "edit"}, "attrs": {}, "parents": [{"type": "Mid", "id": "m"}]},
        {"uid": {"type": "Mid", "id": "m"}, "attrs": {}, "parents": [{"type": "Action", "id": "writers"}]},
        {"uid": {"type": "Op", "id": "look"}, "attrs": {}, "parents": [{"type": "Mid", "id": "n"}]},
    ]);
    let engine = Engine::from_files([
        BundleFile::new("policies.cedar", policies),
        BundleFile::new("entities.json", statics.to_string()),
    ])
    .unwrap();
    let op = |id: &str| json!({"type": "Op", "id": id});
    let cases: Vec<(&str, Value, Value)> = vec![
        // Statically in a group, directly and through an entity of a third type.
        ("ann", op("view"), json!([])),
        ("root", op("edit"), json!([])),
        // Put in a group by the request: itself, or an ancestor of it.
        (
            "ann",
            op("peek"),
            json!([{"uid": op("peek"), "attrs": {}, "parents": [{"type": "Action", "id": "readers"}]}]),
        ),
        (
            "ann",
            op("look"),
            json!([{"uid": {"type": "Mid", "id": "n"}, "attrs": {}, "parents": [{"type": "Action", "id": "readers"}]}]),
        ),
        (
            "root",
            op("look"),
            json!([{"uid": {"type": "Mid", "id": "n"}, "attrs": {}, "parents": [{"type": "Action", "id": "writers"}]}]),
        ),
        // Taken out of a group by the request.
        (
            "root",
            op("edit"),
            json!([{"uid": {"type": "Mid", "id": "m"}, "attrs": {}, "parents": []}]),
        ),
    ];
    for (principal, action, own) in cases {
        let request = json!({"principal": {"type": "User", "id": principal}, "action": action,
                             "resource": {"type": "Doc", "id": "d"}, "entities": own});
        let got = engine.decide_json(&request.to_string()).unwrap();
        let replaced: Vec<String> = own
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["uid"].to_string())
            .collect();
        let merged: Vec<Value> = statics
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| !replaced.contains(&e["uid"].to_string()))
            .chain(own.as_array().unwrap())
            .cloned()
            .collect();
        let want = cedar(
            policies,
            Value::Array(merged),
            principal,
            ("Op", action["id"].as_str().unwrap()),
        );
        assert_eq!(got.decision, want, "{request}: {got:?}");
    }
}

/// An object that gives a key twice could be checked by the host on its first value and
/// decided by Arbiter on its second: refused, in the context, in entities (at any depth) and at
/// the top level, by every path.
#[test]
fn duplicate_keys_in_request_json_are_refused() {
    let engine = Engine::gitlab_default().unwrap();
    let base = r#""principal": {"type": "Gitlab::User", "id": "eve"}, "action": {"type": "Gitlab::Action", "id": "push_code"}, "resource": {"type": "Gitlab::Project", "id": "3"}"#;
    let context = r#"{"admin_mode": false, "admin_mode": true}"#;
    let entity = r#"{"uid": {"type": "Gitlab::User", "id": "eve"}, "attrs": {"state": "blocked", "admin": false, "auditor": false, "external": false, "user_type": "human", "state": "active"}, "parents": []}"#;
    let nested = r#"{"uid": {"__entity": {"type": "Gitlab::User", "id": "eve", "id": "alice"}}, "attrs": {}, "parents": []}"#;
    for (request, kind) in [
        (
            format!(r#"{{{base}, "context": {context}}}"#),
            "invalid_context",
        ),
        (
            format!(r#"{{{base}, "context": {{"admin_mode": false}}, "entities": [{entity}]}}"#),
            "invalid_entities",
        ),
        (
            format!(r#"{{{base}, "context": {{"admin_mode": false}}, "entities": [{nested}]}}"#),
            "invalid_entities",
        ),
        (
            format!(
                r#"{{{base}, "principal": {{"type": "Gitlab::User", "id": "alice"}}, "context": {{"admin_mode": false}}}}"#
            ),
            "malformed_request",
        ),
    ] {
        let e = engine.authorize_json(&request).unwrap_err();
        assert_eq!(e.kind(), kind, "{request}: {e}");
        let batch: Value = serde_json::from_str(
            &engine
                .authorize_json_batch(&format!("[{request}]"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(batch[0]["error"]["kind"], kind, "{batch}");
    }
    let e = engine
        .authorize_json(&format!(r#"{{{base}, "context": {context}}}"#))
        .unwrap_err();
    assert!(e.to_string().contains("`admin_mode` is given twice"), "{e}");

    let entities = format!("[{entity}]");
    for (context, entities, kind) in [
        (context, None, "invalid_context"),
        (
            r#"{"admin_mode": false}"#,
            Some(entities.as_str()),
            "invalid_entities",
        ),
    ] {
        let parts = RequestParts {
            principal: Some(("Gitlab::User", "eve")),
            action: ("Gitlab::Action", "push_code"),
            resource: ("Gitlab::Project", "3"),
            context_json: Some(context),
            entities_json: entities,
            token: None,
            request_id: None,
        };
        assert_eq!(engine.authorize_parts(&parts).unwrap_err().kind(), kind);
        assert_eq!(
            engine.authorize_parts_batch(&[parts])[0]
                .as_ref()
                .unwrap_err()
                .kind(),
            kind
        );
    }

    // Bundle files too: a static entity's attribute given twice names the file and line.
    let e = Engine::from_files([
        BundleFile::new("p.cedar", "permit (principal, action, resource);"),
        BundleFile::new(
            "entities.json",
            "[{\"uid\": {\"type\": \"U\", \"id\": \"1\"},\n \"attrs\": {\"a\": 1, \"a\": 2}, \"parents\": []}]",
        ),
    ])
    .err()
    .unwrap();
    let problem = &e.problems()[0];
    assert_eq!(
        (problem.file.as_str(), problem.line),
        ("entities.json", Some(2))
    );
    assert!(problem.message.contains("`a` is given twice"), "{problem}");
}

/// Reading a directory that links back to itself (twice: time exponential in depth) or that
/// links one directory twice is an error naming the link, at once.
#[cfg(unix)]
#[test]
fn symbolic_link_loops_in_a_bundle_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.cedar"),
        "permit (principal, action, resource);",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(".", dir.path().join("a")).unwrap();
    std::os::unix::fs::symlink(".", dir.path().join("b")).unwrap();
    let path = dir.path().to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(Engine::from_bundle_dir(path).err()).unwrap());
    let e = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("loading a looping directory returns")
        .expect("and fails");
    assert_eq!(e.kind(), "io");
    let named: Vec<&str> = e.problems().iter().map(|p| p.file.as_str()).collect();
    assert_eq!(named, ["a", "b"], "{e}");
    assert!(e.to_string().contains("symbolic link loop"), "{e}");

    std::fs::remove_file(dir.path().join("a")).unwrap();
    std::fs::remove_file(dir.path().join("b")).unwrap();
    std::os::unix::fs::symlink("sub", dir.path().join("again")).unwrap();
    let e = Engine::from_bundle_dir(dir.path()).err().unwrap();
    let named: Vec<&str> = e.problems().iter().map(|p| p.file.as_str()).collect();
    assert!(named == ["sub"] || named == ["again"], "{e}");
    std::fs::remove_file(dir.path().join("again")).unwrap();
    assert!(Engine::from_bundle_dir(dir.path()).is_ok());
}

/// A raw secret file is its bytes (32 random bytes, say, which need not be UTF-8 and may end in
/// a newline byte that is part of the key).
const SECRET: [u8; 32] = [
    0x9f, 0x00, 0xff, 0xc3, 0x28, 0x41, 0x0d, 0xe2, 0x82, 0x28, 0x7a, 0x10, 0x80, 0xfe, 0x33, 0x5c,
    0x22, 0x01, 0xa0, 0xa1, 0x99, 0x4e, 0xd8, 0x00, 0x7f, 0xbe, 0xef, 0x12, 0x34, 0x56, 0x78, 0x0a,
];

const TOKEN_POLICIES: &str = r#"
@id("active-users") permit (principal is User, action, resource) when { principal.state == "active" };
@id("only-from-gitlab") forbid (principal is User, action, resource) unless { principal has email };
@id("banned") forbid (principal in Team::"banned", action, resource);
@id("flagged") forbid (principal is User, action, resource) when { principal.hasTag("flagged") };
"#;

/// A bundle directory trusting HS256 tokens signed with [`SECRET`], whose principal's `email`
/// (and, when `state_from_claim`, `state`) come from claims, its issuer set up with `extra`
/// too; user 42 is blocked, 43 in the banned team, 44 tagged `flagged`.
fn token_bundle_with(state_from_claim: bool, extra: Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut attributes = json!({"email": {"claim": "email", "as": "string"}});
    if state_from_claim {
        attributes["state"] = json!({"claim": "state", "as": "string"});
    }
    let mut issuer = json!({
        "issuer": "https://hs.example", "algorithms": ["HS256"], "hmac_secret_file": "keys/raw",
        "secret_encoding": "raw",
        "principal": {"type": "User", "id_claim": "sub", "attributes": attributes}});
    issuer
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let tokens = json!({"jwt": {"issuers": [issuer]}});
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/raw"), SECRET).unwrap();
    std::fs::write(dir.path().join("tokens.json"), tokens.to_string()).unwrap();
    std::fs::write(dir.path().join("p.cedar"), TOKEN_POLICIES).unwrap();
    let user = |id: &str, parents: Value, tags: Value| {
        let state = if id == "42" { "blocked" } else { "active" };
        json!({"uid": {"type": "User", "id": id}, "attrs": {"state": state}, "parents": parents, "tags": tags})
    };
    let entities = json!([
        user("42", json!([]), json!({})),
        user("43", json!([{"type": "Team", "id": "banned"}]), json!({})),
        user("44", json!([]), json!({"flagged": "yes"})),
    ]);
    std::fs::write(dir.path().join("entities.json"), entities.to_string()).unwrap();
    dir
}

/// [`token_bundle_with`] nothing more.
fn token_bundle(state_from_claim: bool) -> tempfile::TempDir {
    token_bundle_with(state_from_claim, json!({}))
}

/// A compact JWS of `header` and `payload` (JSON text, as written) signed with `key`.
fn jws(header: &str, payload: &str, key: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

const HEADER: &str = r#"{"alg": "HS256", "typ": "at+jwt"}"#;

fn claims(sub: &str, extra: Value) -> String {
    let mut claims =
        json!({"iss": "https://hs.example", "sub": sub, "exp": NOW + 60, "email": "x@example.com"});
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    claims.to_string()
}

fn decide(engine: &Engine, token: &str, entities: Value) -> arbiter::Decision {
    let request = json!({"action": {"type": "Action", "id": "read"}, "resource": {"type": "Doc", "id": "d"},
                         "token": token, "entities": entities});
    engine.decide_json(&request.to_string()).unwrap()
}

/// Why the token is refused, or `None` when it verifies.
fn refusal(engine: &Engine, token: &str) -> Option<DecisionErrorKind> {
    engine.verify_token(token).err().map(|e| e.kind)
}

/// The secret is the file's bytes exactly: a token signed with them verifies, one signed with
/// them less the final newline byte does not. A text secret ending in a newline (written by an
/// editor or `echo`) is refused at load, naming the problem, rather than keyed with the newline.
#[test]
fn a_raw_secret_file_is_its_bytes() {
    let dir = token_bundle(false);
    let engine = Engine::from_bundle_dir(dir.path())
        .unwrap()
        .with_fixed_time(NOW);
    assert_eq!(
        refusal(&engine, &jws(HEADER, &claims("7", json!({})), &SECRET)),
        None
    );
    assert_eq!(
        refusal(
            &engine,
            &jws(HEADER, &claims("7", json!({})), &SECRET[..31])
        ),
        Some(DecisionErrorKind::BadSignature)
    );
    std::fs::write(
        dir.path().join("keys/raw"),
        "a text secret of thirty-two bytes\n",
    )
    .unwrap();
    let e = Engine::from_bundle_dir(dir.path()).err().unwrap();
    assert_eq!(e.kind(), "tokens");
    assert!(e.to_string().contains("text ending in a newline"), "{e}");
}

/// Claims may add to what the host knows of the principal, never override it: the bundle's
/// blocked user 42 stays blocked whatever a valid token says, and so does a principal entity the
/// request brings; a principal the host does not know is the token's alone.
#[test]
fn a_token_never_overrides_what_the_host_knows_of_its_principal() {
    let dir = token_bundle(true);
    let engine = Engine::from_bundle_dir(dir.path())
        .unwrap()
        .with_fixed_time(NOW);
    let active = |sub: &str| jws(HEADER, &claims(sub, json!({"state": "active"})), &SECRET);

    // Unknown to the host: the token's entity decides.
    let d = decide(&engine, &active("7"), json!([]));
    assert_eq!(
        (d.decision, d.reasons),
        (Effect::Allow, vec!["active-users".to_owned()])
    );

    // Known and blocked: the token's `state` disagrees, a deny naming the claim problem.
    let d = decide(&engine, &active("42"), json!([]));
    assert_eq!(d.decision, Effect::Deny);
    assert_eq!(d.errors[0].kind, DecisionErrorKind::InvalidClaim, "{d:?}");
    let d = decide(
        &engine,
        &active("7"),
        json!([{"uid": {"type": "User", "id": "7"}, "attrs": {"state": "blocked"}, "parents": []}]),
    );
    assert_eq!(d.errors[0].kind, DecisionErrorKind::InvalidClaim, "{d:?}");

    // Agreeing claims, and claims the host does not have (`email`), are added.
    let blocked = jws(HEADER, &claims("42", json!({"state": "blocked"})), &SECRET);
    let d = decide(&engine, &blocked, json!([]));
    assert_eq!((d.decision, d.errors), (Effect::Deny, vec![]));

    // The host's parents and tags stay: 43's team and 44's tag still forbid.
    for (user, forbidden_by) in [("43", "banned"), ("44", "flagged")] {
        let d = decide(&engine, &active(user), json!([]));
        assert_eq!(
            (d.decision, &d.reasons),
            (Effect::Deny, &vec![forbidden_by.to_owned()]),
            "{user}: {d:?}"
        );
    }

    // Without `state` among the claims, the host's blocked state stays and `email` is added.
    let dir = token_bundle(false);
    let engine = Engine::from_bundle_dir(dir.path())
        .unwrap()
        .with_fixed_time(NOW);
    let d = decide(
        &engine,
        &jws(HEADER, &claims("42", json!({})), &SECRET),
        json!([]),
    );
    assert_eq!(
        (d.decision, d.reasons, d.errors),
        (Effect::Deny, vec![], vec![])
    );
}

/// A JWT header is a JSON object with each member once; `crit` is refused whenever present,
/// `null` included; explicit typing holds when the issuer asks for it.
#[test]
fn jwt_headers_are_strict_json_objects() {
    let dir = token_bundle_with(false, json!({"types": ["at+jwt"]}));
    let engine = Engine::from_bundle_dir(dir.path())
        .unwrap()
        .with_fixed_time(NOW);
    let payload = claims("7", json!({}));
    for (header, refused) in [
        (r#"["HS256"]"#, DecisionErrorKind::Malformed),
        (
            r#"{"alg": "HS256", "typ": "at+jwt", "crit": null}"#,
            DecisionErrorKind::Malformed,
        ),
        (
            r#"{"alg": "HS256", "typ": "at+jwt", "crit": []}"#,
            DecisionErrorKind::Malformed,
        ),
        (
            r#"{"alg": "HS256", "typ": "at+jwt", "b64": null}"#,
            DecisionErrorKind::Malformed,
        ),
        (
            r#"{"alg": "none", "typ": "at+jwt", "alg": "HS256"}"#,
            DecisionErrorKind::Malformed,
        ),
        (
            r#"{"alg": "HS256", "typ": "at+jwt", "kid": null}"#,
            DecisionErrorKind::Malformed,
        ),
        (r#"{"typ": "at+jwt"}"#, DecisionErrorKind::Malformed),
        (
            r#"{"alg": "HS256", "typ": "JWT"}"#,
            DecisionErrorKind::InvalidClaim,
        ),
        (r#"{"alg": "HS256"}"#, DecisionErrorKind::MissingClaim),
    ] {
        assert_eq!(
            refusal(&engine, &jws(header, &payload, &SECRET)),
            Some(refused),
            "{header}"
        );
    }
    for header in [HEADER, r#"{"alg": "HS256", "typ": "application/AT+JWT"}"#] {
        assert_eq!(
            refusal(&engine, &jws(header, &payload, &SECRET)),
            None,
            "{header}"
        );
    }
    // A payload is held to the same: an object, each claim once.
    for payload in [
        r#"[{"sub": "7"}]"#,
        &claims("7", json!({})).replacen('{', r#"{"sub": "42", "#, 1),
    ] {
        assert_eq!(
            refusal(&engine, &jws(HEADER, payload, &SECRET)),
            Some(DecisionErrorKind::Malformed),
            "{payload}"
        );
    }
}

/// Token errors name the problem, never the token's content: a canary placed in every field a
/// check reads appears in no message.
#[test]
fn token_errors_never_quote_the_token() {
    const CANARY: &str = "Cz9canary";
    let dir = token_bundle_with(false, json!({"types": ["at+jwt"]}));
    std::fs::write(dir.path().join("keys/macaroon"), b"macaroon root key").unwrap();
    let mut tokens: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("tokens.json")).unwrap()).unwrap();
    tokens["macaroon"] = json!({"root_keys": [{"id": "k", "secret_file": "keys/macaroon"}],
                                "principal": {"type": "User", "id_caveat": "user"}});
    std::fs::write(dir.path().join("tokens.json"), tokens.to_string()).unwrap();
    let engine = Engine::from_bundle_dir(dir.path())
        .unwrap()
        .with_fixed_time(NOW);

    let good = claims("7", json!({}));
    let mut tokens = vec![
        jws(
            &format!(r#"{{"alg": "{CANARY}", "typ": "at+jwt"}}"#),
            &good,
            &SECRET,
        ),
        jws(r#"{"alg": "HS384", "typ": "at+jwt"}"#, &good, &SECRET),
        jws(
            &format!(r#"{{"alg": "HS256", "typ": "at+jwt", "kid": "{CANARY}"}}"#),
            &good,
            b"another key of 32 bytes at least!",
        ),
        jws(
            &format!(r#"{{"alg": "HS256", "typ": "{CANARY}"}}"#),
            &good,
            &SECRET,
        ),
        jws(
            &format!(r#"{{"alg": "HS256", "typ": "at+jwt", "{CANARY}": 1, "{CANARY}": 2}}"#),
            &good,
            &SECRET,
        ),
        jws(
            &format!(r#"{{"alg": "HS256", "typ": "at+jwt", "x": "{CANARY}" "#),
            &good,
            &SECRET,
        ),
        jws(&format!(r#"["{CANARY}"]"#), &good, &SECRET),
        jws(HEADER, &format!(r#""{CANARY}""#), &SECRET),
        jws(HEADER, &good.replace("https://hs.example", CANARY), &SECRET),
        jws(HEADER, &claims("7", json!({"exp": CANARY})), &SECRET),
        jws(
            HEADER,
            &claims("7", json!({"aud": {CANARY: CANARY}})),
            &SECRET,
        ),
        jws(HEADER, &claims("7", json!({"email": [CANARY]})), &SECRET),
        jws(
            HEADER,
            &claims(CANARY, json!({})).replacen(
                '{',
                &format!(r#"{{"{CANARY}": 1, "{CANARY}": 2, "#),
                1,
            ),
            &SECRET,
        ),
    ];
    for caveat in [
        format!("{CANARY} = 1"),
        format!("resource = Doc::\"{CANARY}\""),
        format!("resource = {CANARY}"),
        format!("expires < {CANARY}"),
        format!("user = {CANARY}"),
    ] {
        let mut m = Macaroon::mint(b"macaroon root key", "user = 7; n", None);
        m.add_first_party_caveat(caveat);
        tokens.push(m.serialize(MacaroonFormat::V2));
    }
    tokens.push(format!(r#"{{"i": "{CANARY}", "i": "x", "s64": ""}}"#));
    tokens.push(Macaroon::mint(b"macaroon root key", CANARY, None).serialize(MacaroonFormat::V2));
    for token in &tokens {
        let d = decide(&engine, token, json!([]));
        assert_eq!(d.decision, Effect::Deny, "{token}");
        assert!(!d.errors.is_empty(), "{token}");
        for e in &d.errors {
            assert!(!e.message.contains(CANARY), "{token}: {}", e.message);
        }
        // Caveats on the resource are checked against a request, not by `verify_token`.
        if let Err(report) = engine.verify_token(token) {
            assert!(!report.message.contains(CANARY), "{}", report.message);
        }
    }
}

/// When a token's claims do not fit the schema (the principal they build, or `context.token`),
/// the request is denied with `invalid_claim` and a message that quotes none of them; a host
/// context that does not fit is still the host's error, worded by Cedar.
#[test]
fn claims_that_do_not_fit_the_schema_deny_without_quoting_them() {
    const CANARY: &str = "Cz9canary";
    let schema = r#"
        entity User = { email?: Long };
        entity Doc;
        action read appliesTo { principal: User, resource: Doc,
                                context: { level?: Long, token?: { ref?: Long } } };
    "#;
    let issuer = |iss: &str, extra: Value| {
        let mut issuer = json!({"issuer": iss, "algorithms": ["HS256"],
                                "hmac_secret_file": "keys/raw", "principal": {"type": "User"}});
        issuer
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        issuer
    };
    let tokens = json!({"jwt": {"issuers": [
        issuer("entity", json!({"principal": {"type": "User", "attributes": {"email": {"claim": "email", "as": "string"}}}})),
        issuer("context", json!({"claims": {"ref": "string"}})),
    ]}});
    let engine = Engine::from_files([
        BundleFile::new("schema.cedarschema", schema),
        BundleFile::new("p.cedar", "permit (principal, action, resource);"),
        BundleFile::new("tokens.json", tokens.to_string()),
        BundleFile::new("keys/raw", SECRET.to_vec()),
    ])
    .unwrap()
    .with_fixed_time(NOW);
    for iss in ["entity", "context"] {
        let token = jws(
            r#"{"alg": "HS256"}"#,
            &json!({"iss": iss, "sub": "7", "exp": NOW + 60, "email": CANARY, "ref": CANARY})
                .to_string(),
            &SECRET,
        );
        let d = decide(&engine, &token, json!([]));
        assert_eq!(d.decision, Effect::Deny, "{iss}");
        assert_eq!(d.errors[0].kind, DecisionErrorKind::InvalidClaim, "{iss}");
        assert!(
            !d.errors[0].message.contains(CANARY),
            "{}",
            d.errors[0].message
        );
        if iss == "entity" {
            continue;
        }
        // The host's own context that does not fit: the host's error, as ever.
        let request = json!({"action": {"type": "Action", "id": "read"}, "resource": {"type": "Doc", "id": "d"},
                             "context": {"level": "high"}, "token": token});
        let e = engine.authorize_json(&request.to_string()).unwrap_err();
        assert_eq!(e.kind(), "invalid_context", "{iss}: {e}");
        assert!(!e.to_string().contains(CANARY), "{e}");
    }
}
