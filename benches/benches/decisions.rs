//! Decision latency on the default GitLab bundle: Arbiter's typed and JSON paths against plain
//! cedar-policy (`Authorizer::is_authorized` over the whole policy set) on identical inputs.

use std::hint::black_box;
use std::str::FromStr;

use arbiter::{BundleFile, Context, DecisionLogOptions, Engine, EntityUid, Request, RequestParts};
use arbiter_benches::{cedar_inputs, docs_files};
use cedar_policy::{Authorizer, Entities, PolicySet, Schema};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

fn bundle_file(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../policies/gitlab/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn uid(s: &str) -> EntityUid {
    EntityUid::from_str(s).unwrap()
}

fn default_bundle(c: &mut Criterion) {
    let engine = Engine::gitlab_default().unwrap();
    // alice is a Developer of project 10 (entities.json).
    let context_json = json!({"admin_mode": false});
    let schema = Schema::from_cedarschema_str(&bundle_file("schema.cedarschema"))
        .unwrap()
        .0;
    let action = uid(r#"Gitlab::Action::"push_code""#);
    let context = Context::from_json_value(context_json.clone(), Some((&schema, &action))).unwrap();
    let request = Request::new(
        uid(r#"Gitlab::User::"alice""#),
        action.clone(),
        uid(r#"Gitlab::Project::"10""#),
    )
    .with_context(context.clone());
    let request_json = json!({
        "principal": {"type": "Gitlab::User", "id": "alice"},
        "action": {"type": "Gitlab::Action", "id": "push_code"},
        "resource": {"type": "Gitlab::Project", "id": "10"},
        "context": context_json,
    })
    .to_string();
    assert!(engine.authorize(&request).unwrap().allowed());

    // Plain cedar-policy: every policy file in one set, the static entities, the same request.
    let mut files: Vec<_> =
        std::fs::read_dir(format!("{}/../policies/gitlab", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cedar"))
            .collect();
    files.sort();
    let text: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let policies = PolicySet::from_str(&text).unwrap();
    let entities = Entities::from_json_str(&bundle_file("entities.json"), Some(&schema)).unwrap();
    let cedar_request = cedar_policy::Request::new(
        uid(r#"Gitlab::User::"alice""#),
        action,
        uid(r#"Gitlab::Project::"10""#),
        context,
        Some(&schema),
    )
    .unwrap();
    let authorizer = Authorizer::new();
    assert_eq!(
        authorizer
            .is_authorized(&cedar_request, &policies, &entities)
            .decision(),
        cedar_policy::Decision::Allow
    );

    // What the Go and C fast paths hand over: entity references and the context as JSON.
    let context_text = context_json.to_string();
    let parts = RequestParts {
        principal: Some(("Gitlab::User", "alice")),
        action: ("Gitlab::Action", "push_code"),
        resource: ("Gitlab::Project", "10"),
        context_json: Some(&context_text),
        entities_json: None,
        token: None,
        request_id: None,
    };
    assert!(engine.authorize_parts(&parts).unwrap().allowed());

    // The same decisions with every one logged, to a sink that only looks at the event.
    let logged = Engine::gitlab_default().unwrap();
    logged
        .set_decision_log(DecisionLogOptions::default(), |event| {
            black_box(event.len());
        })
        .unwrap();

    let mut group = c.benchmark_group("decision/default_bundle");
    group.bench_function("arbiter_typed", |b| {
        b.iter(|| engine.authorize(black_box(&request)).unwrap())
    });
    group.bench_function("arbiter_typed_logged", |b| {
        b.iter(|| logged.authorize(black_box(&request)).unwrap())
    });
    group.bench_function("arbiter_parts", |b| {
        b.iter(|| engine.authorize_parts(black_box(&parts)).unwrap())
    });
    group.bench_function("arbiter_json", |b| {
        b.iter(|| engine.authorize_json(black_box(&request_json)).unwrap())
    });
    group.bench_function("cedar_policy", |b| {
        b.iter(|| authorizer.is_authorized(black_box(&cedar_request), &policies, &entities))
    });
    group.finish();
}

/// The Docs bundle (`benches/bundles/docs`, written independently of the default one in other
/// idioms): its 200 varied requests (`requests.jsonl`), prebuilt and as JSON, against
/// cedar-policy given the same policies, schema and entities. Every decision must agree.
fn docs_bundle(c: &mut Criterion) {
    let files = docs_files();
    let engine = Engine::from_files(files.clone()).unwrap();
    let (schema, policies, entities) = cedar_inputs(&files);
    let lines: Vec<String> = std::fs::read_to_string(format!(
        "{}/bundles/docs/requests.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .lines()
    .map(str::to_owned)
    .collect();
    let authorizer = Authorizer::new();
    // cedar-policy's JSON path: the request's uids and context read from JSON with the schema.
    let cedar_request = |line: &str| {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let action = EntityUid::from_json(value["action"].clone()).unwrap();
        let context =
            Context::from_json_value(value["context"].clone(), Some((&schema, &action))).unwrap();
        cedar_policy::Request::new(
            EntityUid::from_json(value["principal"].clone()).unwrap(),
            action,
            EntityUid::from_json(value["resource"].clone()).unwrap(),
            context,
            Some(&schema),
        )
        .unwrap()
    };
    let ours: Vec<Request> = lines
        .iter()
        .map(|l| engine.read_request(l).unwrap())
        .collect();
    let theirs: Vec<cedar_policy::Request> = lines.iter().map(|l| cedar_request(l)).collect();
    let mut allowed = 0;
    for ((request, cedar), line) in ours.iter().zip(&theirs).zip(&lines) {
        let decision = engine.authorize(request).unwrap();
        let expected = authorizer
            .is_authorized(cedar, &policies, &entities)
            .decision()
            == cedar_policy::Decision::Allow;
        assert_eq!(decision.allowed(), expected, "{line}");
        allowed += usize::from(expected);
    }
    assert!(allowed > 50 && allowed < 150, "{allowed} of 200 allowed");

    let mut group = c.benchmark_group("decision/docs_bundle_200");
    group.bench_function("arbiter_typed", |b| {
        b.iter(|| {
            for request in &ours {
                black_box(engine.authorize(black_box(request)).unwrap());
            }
        })
    });
    group.bench_function("arbiter_json", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(engine.authorize_json(black_box(line)).unwrap());
            }
        })
    });
    group.bench_function("cedar_policy", |b| {
        b.iter(|| {
            for request in &theirs {
                black_box(authorizer.is_authorized(black_box(request), &policies, &entities));
            }
        })
    });
    group.bench_function("cedar_json", |b| {
        b.iter(|| {
            for line in &lines {
                let request = cedar_request(black_box(line));
                black_box(authorizer.is_authorized(&request, &policies, &entities));
            }
        })
    });
    group.finish();
}

/// The slice of the bundle the Go benchmarks also run through OPA (benches/go/testdata).
fn slice(c: &mut Criterion) {
    let testdata = format!("{}/go/testdata", env!("CARGO_MANIFEST_DIR"));
    let engine = Engine::from_files([
        BundleFile::new(
            "slice.cedar",
            std::fs::read_to_string(format!("{testdata}/slice.cedar")).unwrap(),
        ),
        BundleFile::new(
            "entities.json",
            std::fs::read_to_string(format!("{testdata}/slice_entities.json")).unwrap(),
        ),
    ])
    .unwrap();
    let parts = RequestParts {
        principal: Some(("User", "alice")),
        action: ("Action", "push_code"),
        resource: ("Project", "3"),
        context_json: Some(r#"{"access_level":30}"#),
        entities_json: None,
        token: None,
        request_id: None,
    };
    assert!(engine.authorize_parts(&parts).unwrap().allowed());
    let mut group = c.benchmark_group("decision/slice");
    group.bench_function("arbiter_parts", |b| {
        b.iter(|| engine.authorize_parts(black_box(&parts)).unwrap())
    });
    group.finish();
}

/// The 1,000 checks of the Ruby benchmark's list page (benches/ruby/bench.rb: 100 projects, ten
/// abilities each, alice's role and the projects' switches varying alike) decided by the core
/// alone, in one batch: what `authorize_many` costs before Ruby adds anything.
fn slice_list_page(c: &mut Criterion) {
    let actions = [
        "read_project",
        "read_issue",
        "create_issue",
        "download_code",
        "read_merge_request",
        "read_pipeline",
        "push_code",
        "create_merge_request",
        "create_pipeline",
        "admin_project",
    ];
    let level = |i: usize| [10, 20, 30, 40, 50][i % 5];
    let mut entities = vec![
        json!({"uid": {"type": "User", "id": "alice"}, "attrs": {"state": "active"}, "parents": []}),
    ];
    entities.extend((0..100).map(|i| {
        let repository = if i % 7 == 6 { "disabled" } else { "enabled" };
        json!({"uid": {"type": "Project", "id": i.to_string()},
               "attrs": {"archived": i % 10 == 9, "features": {"repository": repository}},
               "parents": []})
    }));
    let engine = Engine::from_files([
        BundleFile::new("slice.cedar", arbiter_benches::slice_policies()),
        BundleFile::new("entities.json", json!(entities).to_string()),
    ])
    .unwrap();
    let ids: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let contexts: Vec<String> = (0..100)
        .map(|i| json!({"access_level": level(i)}).to_string())
        .collect();
    let checks: Vec<RequestParts<'_>> = (0..100)
        .flat_map(|i| actions.map(|action| (i, action)))
        .map(|(i, action)| RequestParts {
            principal: Some(("User", "alice")),
            action: ("Action", action),
            resource: ("Project", &ids[i]),
            context_json: Some(&contexts[i]),
            entities_json: None,
            token: None,
            request_id: None,
        })
        .collect();
    let allowed = |d: &Result<arbiter::Decision, _>| d.as_ref().unwrap().allowed();
    let answers = engine.authorize_parts_batch(&checks);
    assert!(answers.iter().any(allowed) && !answers.iter().all(allowed));
    let mut group = c.benchmark_group("batch/slice_1000");
    group.bench_function("arbiter_parts", |b| {
        b.iter(|| engine.authorize_parts_batch(black_box(&checks)))
    });
    group.finish();
}

criterion_group!(benches, default_bundle, docs_bundle, slice, slice_list_page);
criterion_main!(benches);
