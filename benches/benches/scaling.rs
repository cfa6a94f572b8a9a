//! How Arbiter scales, each figure beside plain cedar-policy on identical inputs: template-linked
//! policies, per-request entities given as JSON, static entities, batches, bundle load and
//! reload.

use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use arbiter::{BundleFile, Engine, Request as ArbiterRequest};
use arbiter_benches::{cedar_inputs, file_text, gitlab_files, policy_text, slice_policies};
use cedar_policy::{
    Authorizer, Context, Entities, EntityUid, PolicyId, PolicySet, Request, Schema, SlotId,
    Template, ValidationMode, Validator,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Value};

fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_json(json!({"type": ty, "id": id})).unwrap()
}

/// The slice's policies plus one membership template, `principal in ?principal` (a team) and
/// `resource in ?resource` (a project), linked `links` times; the request's user is in the
/// middle team.
fn linked_policies(c: &mut Criterion) {
    let template = r#"@id("member")
permit (principal in ?principal, action == Action::"read_project", resource in ?resource);"#;
    for links in [0usize, 10, 100, 1_000, 10_000] {
        let team = links / 2;
        let link_json: Vec<Value> = (0..links)
            .map(|i| {
                json!({"template_id": "member", "link_id": format!("member-{i}"),
                       "args": {"?principal": {"type": "Team", "id": format!("t{i}")},
                                "?resource": {"type": "Project", "id": format!("p{i}")}}})
            })
            .collect();
        let entities = json!([
            {"uid": {"type": "User", "id": "u"}, "attrs": {"state": "active"},
             "parents": [{"type": "Team", "id": format!("t{team}")}]},
            {"uid": {"type": "Team", "id": format!("t{team}")}, "attrs": {}, "parents": []},
            {"uid": {"type": "Project", "id": format!("p{team}")},
             "attrs": {"archived": false}, "parents": []},
        ]);
        let policies = format!("{}\n{template}", slice_policies());
        let engine = Engine::from_files([
            BundleFile::new("policies.cedar", policies.clone()),
            BundleFile::new("links.json", Value::Array(link_json.clone()).to_string()),
            BundleFile::new("entities.json", entities.to_string()),
        ])
        .unwrap();

        let mut set = PolicySet::from_str(&slice_policies()).unwrap();
        set.add_template(Template::parse(Some(PolicyId::new("member")), template).unwrap())
            .unwrap();
        for link in &link_json {
            let arg = |slot: &str| EntityUid::from_json(link["args"][slot].clone()).unwrap();
            set.link(
                PolicyId::new("member"),
                PolicyId::new(link["link_id"].as_str().unwrap()),
                [
                    (SlotId::principal(), arg("?principal")),
                    (SlotId::resource(), arg("?resource")),
                ]
                .into(),
            )
            .unwrap();
        }
        let store = Entities::from_json_value(entities, None).unwrap();
        let request = Request::new(
            uid("User", "u"),
            uid("Action", "read_project"),
            uid("Project", &format!("p{team}")),
            Context::from_json_value(json!({"access_level": 0}), None).unwrap(),
            None,
        )
        .unwrap();
        let ours = ArbiterRequest::new(
            uid("User", "u"),
            uid("Action", "read_project"),
            uid("Project", &format!("p{team}")),
        )
        .with_context(Context::from_json_value(json!({"access_level": 0}), None).unwrap());
        let allowed = links > 0;
        assert_eq!(engine.authorize(&ours).unwrap().allowed(), allowed);
        let authorizer = Authorizer::new();
        assert_eq!(
            authorizer.is_authorized(&request, &set, &store).decision()
                == cedar_policy::Decision::Allow,
            allowed
        );

        let mut group = c.benchmark_group(format!("scaling/linked_{links}"));
        group.bench_function("arbiter", |b| {
            b.iter(|| engine.authorize(black_box(&ours)).unwrap())
        });
        group.bench_function("cedar_policy", |b| {
            b.iter(|| authorizer.is_authorized(black_box(&request), &set, &store))
        });
        group.finish();
    }
}

/// A default-bundle request that brings `n` entities as JSON, shaped like a list page: a new
/// user, the project asked about (the user a Developer of it) in up to three nested new groups,
/// and other projects of the innermost group (one entity: only the user, asking about a static
/// public project).
fn entities_request(n: usize) -> (Value, Value) {
    let mut entities = vec![json!({"uid": {"type": "Gitlab::User", "id": "newcomer"},
        "attrs": {"state": "active", "admin": false, "auditor": false, "external": false,
                  "user_type": "human", "id": "newcomer"}, "parents": []})];
    if n == 1 {
        return (
            json!({"type": "Gitlab::Project", "id": "1"}),
            Value::Array(entities),
        );
    }
    let groups = (n - 2).min(3);
    let group = |i: usize| json!({"type": "Gitlab::Group", "id": format!("g{i}")});
    for i in 0..groups {
        let parents: Vec<Value> = (i + 1 < groups).then(|| group(i + 1)).into_iter().collect();
        entities.push(json!({"uid": group(i), "attrs": {"visibility": "private"},
                             "parents": parents}));
    }
    let project = |i: usize| {
        let parents: Vec<Value> = (groups > 0).then(|| group(0)).into_iter().collect();
        json!({"uid": {"type": "Gitlab::Project", "id": format!("new{i}")},
            "attrs": {"visibility": "private", "archived": false, "job_token_allowlist": [],
                      "features": {"repository": "enabled", "issues": "enabled",
                                   "merge_requests": "enabled", "builds": "enabled",
                                   "container_registry": "enabled",
                                   "package_registry": "enabled"}},
            "parents": parents,
            "tags": if i == 0 { json!({"newcomer": {"access_level": 30}}) } else { json!({}) }})
    };
    entities.extend((0..n - 1 - groups).map(project));
    assert_eq!(entities.len(), n);
    (
        json!({"type": "Gitlab::Project", "id": "new0"}),
        Value::Array(entities),
    )
}

/// The default bundle as an engine, and as cedar-policy's schema, policy set and entities.
fn gitlab_with_peer() -> (Engine, Schema, PolicySet, Entities) {
    let files = gitlab_files();
    let (schema, set, entities) = cedar_inputs(&files);
    (Engine::from_files(files).unwrap(), schema, set, entities)
}

/// Per-request entities as JSON through `authorize_json`, against cedar-policy's JSON path:
/// entities and context parsed from JSON (with the schema), added to the prebuilt static
/// entities, then `is_authorized`.
fn request_entities(c: &mut Criterion) {
    let (engine, schema, set, statics) = gitlab_with_peer();
    let authorizer = Authorizer::new();
    let context = json!({"admin_mode": false});
    let action = uid("Gitlab::Action", "download_code");
    for n in [1usize, 5, 10, 100] {
        let (resource, entities) = entities_request(n);
        let request_json = json!({"principal": {"type": "Gitlab::User", "id": "newcomer"},
            "action": {"type": "Gitlab::Action", "id": "download_code"},
            "resource": resource, "context": context, "entities": entities})
        .to_string();
        let (entities_text, context_text) = (entities.to_string(), context.to_string());
        let cedar = || {
            let own = Entities::from_json_str(&entities_text, Some(&schema)).unwrap();
            let all = statics.clone().add_entities(own, Some(&schema)).unwrap();
            let context = Context::from_json_str(&context_text, Some((&schema, &action))).unwrap();
            let request = Request::new(
                uid("Gitlab::User", "newcomer"),
                action.clone(),
                EntityUid::from_json(resource.clone()).unwrap(),
                context,
                Some(&schema),
            )
            .unwrap();
            authorizer.is_authorized(&request, &set, &all)
        };
        let ours = engine
            .authorize(&engine.read_request(&request_json).unwrap())
            .unwrap();
        assert!(ours.allowed(), "{}", ours.to_json());
        assert_eq!(cedar().decision(), cedar_policy::Decision::Allow);

        let name = if n == 5 {
            "decision/json_5_entities".to_owned()
        } else {
            format!("scaling/request_entities_{n}")
        };
        let mut group = c.benchmark_group(name);
        group.bench_function("arbiter_json", |b| {
            b.iter(|| engine.authorize_json(black_box(&request_json)).unwrap())
        });
        group.bench_function("cedar_json", |b| b.iter(cedar));
        group.finish();
    }
}

/// The slice's policies over `n` active users and `n / 10` projects.
fn static_bundle(n: usize) -> (String, String) {
    let mut entities: Vec<Value> = (0..n)
        .map(|i| {
            json!({"uid": {"type": "User", "id": format!("u{i}")},
                   "attrs": {"state": "active"}, "parents": []})
        })
        .collect();
    entities.extend((0..n / 10).map(|i| {
        json!({"uid": {"type": "Project", "id": format!("p{i}")},
               "attrs": {"archived": false}, "parents": []})
    }));
    (slice_policies(), Value::Array(entities).to_string())
}

/// Decisions and load time with 1,000 and 100,000 static entities.
fn static_entities(c: &mut Criterion) {
    for n in [1_000usize, 100_000] {
        let (policies, entities) = static_bundle(n);
        let files = vec![
            BundleFile::new("policies.cedar", policies.clone()),
            BundleFile::new("entities.json", entities.clone()),
        ];
        let engine = Engine::from_files(files.clone()).unwrap();
        let set = PolicySet::from_str(&policies).unwrap();
        let store = Entities::from_json_str(&entities, None).unwrap();
        let (user, project) = (format!("u{}", n / 2), format!("p{}", n / 20));
        let context = Context::from_json_value(json!({"access_level": 30}), None).unwrap();
        let ours = ArbiterRequest::new(
            uid("User", &user),
            uid("Action", "push_code"),
            uid("Project", &project),
        )
        .with_context(context.clone());
        let request = Request::new(
            uid("User", &user),
            uid("Action", "push_code"),
            uid("Project", &project),
            context,
            None,
        )
        .unwrap();
        let authorizer = Authorizer::new();
        assert!(engine.authorize(&ours).unwrap().allowed());
        assert_eq!(
            authorizer.is_authorized(&request, &set, &store).decision(),
            cedar_policy::Decision::Allow
        );

        let mut group = c.benchmark_group(format!("scaling/static_{n}"));
        group.bench_function("arbiter", |b| {
            b.iter(|| engine.authorize(black_box(&ours)).unwrap())
        });
        group.bench_function("cedar_policy", |b| {
            b.iter(|| authorizer.is_authorized(black_box(&request), &set, &store))
        });
        group.finish();

        let mut group = c.benchmark_group(format!("load/static_{n}"));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(if n > 10_000 { 20 } else { 5 }));
        group.bench_function("arbiter", |b| {
            b.iter_batched(
                || files.clone(),
                |files| Engine::from_files(files).unwrap(),
                BatchSize::PerIteration,
            )
        });
        group.bench_function("cedar_policy", |b| {
            b.iter(|| {
                (
                    PolicySet::from_str(&policies).unwrap(),
                    Entities::from_json_str(&entities, None).unwrap(),
                )
            })
        });
        group.finish();
    }
}

/// 1,000 default-bundle requests (users, projects and actions varied) in one batch.
fn batch(c: &mut Criterion) {
    let (engine, schema, set, store) = gitlab_with_peer();
    let users = ["alice", "eve", "bob", "anonymous"];
    let actions = [
        "read_project",
        "download_code",
        "push_code",
        "create_issue",
        "admin_project",
    ];
    let projects = ["1", "2", "3", "10"];
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..1_000 {
        let (p, a, r) = (
            uid("Gitlab::User", users[i % users.len()]),
            uid("Gitlab::Action", actions[i % actions.len()]),
            uid("Gitlab::Project", projects[i % projects.len()]),
        );
        let context =
            Context::from_json_value(json!({"admin_mode": i % 7 == 0}), Some((&schema, &a)))
                .unwrap();
        theirs.push(
            Request::new(
                p.clone(),
                a.clone(),
                r.clone(),
                context.clone(),
                Some(&schema),
            )
            .unwrap(),
        );
        ours.push(ArbiterRequest::new(p, a, r).with_context(context));
    }
    let authorizer = Authorizer::new();
    let allowed = engine
        .authorize_batch(&ours)
        .into_iter()
        .filter(|d| d.as_ref().unwrap().allowed())
        .count();
    let cedar_allowed = theirs
        .iter()
        .filter(|r| {
            authorizer.is_authorized(r, &set, &store).decision() == cedar_policy::Decision::Allow
        })
        .count();
    assert_eq!(allowed, cedar_allowed);

    let mut group = c.benchmark_group("batch/1000");
    group.bench_function("arbiter", |b| {
        b.iter(|| engine.authorize_batch(black_box(&ours)))
    });
    group.bench_function("cedar_policy", |b| {
        b.iter(|| {
            theirs
                .iter()
                .map(|r| authorizer.is_authorized(r, &set, &store))
                .collect::<Vec<_>>()
        })
    });
    group.finish();
}

/// Loading and reloading the default bundle, against cedar-policy parsing its schema and
/// policies, validating the policies strictly against the schema (as a bundle with a schema
/// does at load) and parsing its entities.
fn load(c: &mut Criterion) {
    let files = gitlab_files();
    let engine = Engine::from_files(files.clone()).unwrap();
    let policies = policy_text(&files);
    let (schema_text, entities_text) = (
        file_text(&files, "schema.cedarschema"),
        file_text(&files, "entities.json"),
    );
    let mut group = c.benchmark_group("load/default_bundle");
    group.bench_function("arbiter", |b| {
        b.iter_batched(
            || files.clone(),
            |files| Engine::from_files(files).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let parse_and_validate = || {
        let schema = Schema::from_cedarschema_str(&schema_text).unwrap().0;
        let set = PolicySet::from_str(&policies).unwrap();
        assert!(Validator::new(schema.clone())
            .validate(&set, ValidationMode::Strict)
            .validation_passed());
        (schema, set)
    };
    group.bench_function("cedar_policy", |b| {
        b.iter(|| {
            let (schema, set) = parse_and_validate();
            let entities = Entities::from_json_str(&entities_text, Some(&schema)).unwrap();
            (schema, set, entities)
        })
    });
    // The floor: the same without the entities, Cedar's own work that a load calls as it is.
    group.bench_function("cedar_policy_without_entities", |b| {
        b.iter(parse_and_validate)
    });
    // Reloads alternating between the bundle and the bundle with one file changed: its entities
    // (the same policies and schema, not validated again), or a policy (validated each time).
    let edited = |path: &str| {
        let mut files = files.clone();
        let file = files.iter_mut().find(|f| f.path == path).unwrap();
        file.contents.extend_from_slice(b"\n");
        files
    };
    for (name, changed) in [
        ("arbiter_reload", edited("entities.json")),
        ("arbiter_reload_policies", edited("roles.cedar")),
    ] {
        let turn = std::cell::Cell::new(false);
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    turn.set(!turn.get());
                    if turn.get() { &changed } else { &files }.clone()
                },
                |files| engine.reload_from_files(files).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    linked_policies,
    request_entities,
    static_entities,
    batch,
    load
);
criterion_main!(benches);
