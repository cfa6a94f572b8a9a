//! List queries mean exactly what checks mean: on generated GitLab-like rows (nested groups,
//! every visibility, archived projects, every feature level, members at every role, custom
//! roles, job token links; active, blocked, banned, deactivated, external, admin and auditor
//! users, bots, CI jobs, deploy keys and tokens; admin mode on and off, token scopes), the ids
//! the generated SQL selects are exactly the projects the check allows, given the same rows as
//! entities. Run on SQLite here, and on a real PostgreSQL server (`make query-test` starts one
//! and sets `ARBITER_TEST_POSTGRES`).

use std::collections::BTreeSet;

use arbiter::{Dialect, Engine, SqlQuery, SqlValue};
use serde_json::{json, Value};

const ACTIONS: [&str; 23] = [
    "read_project",
    "download_code",
    "push_code",
    "force_push",
    "delete_branch",
    "read_issue",
    "create_issue",
    "update_issue",
    "admin_issue",
    "read_merge_request",
    "create_merge_request",
    "read_pipeline",
    "create_pipeline",
    "read_build",
    "read_container_image",
    "create_container_image",
    "read_package",
    "create_package",
    "destroy_package",
    "admin_project",
    "change_visibility_level",
    "archive_project",
    "remove_project",
];

const VISIBILITY: [(&str, i64); 3] = [("private", 0), ("internal", 10), ("public", 20)];
const FEATURE: [(&str, i64); 3] = [("disabled", 0), ("private", 10), ("enabled", 20)];
const FEATURES: [&str; 6] = [
    "repository",
    "issues",
    "merge_requests",
    "builds",
    "container_registry",
    "package_registry",
];
const ROLES: [i64; 6] = [10, 15, 20, 30, 40, 50];

struct Group {
    id: i64,
    parent: Option<i64>,
    visibility: usize,
    traversal: Vec<i64>,
}

struct Project {
    id: i64,
    namespace: i64,
    visibility: usize,
    archived: bool,
    features: [usize; 6],
}

struct Authorization {
    user: i64,
    project: i64,
    level: i64,
    member_role: Option<i64>,
}

/// GitLab-like rows, the same for the database and for the checks.
struct Data {
    groups: Vec<Group>,
    projects: Vec<Project>,
    authorizations: Vec<Authorization>,
    /// (source project, target project): the target's allowlist holds the source.
    links: Vec<(i64, i64)>,
    /// (member role, permission), from the bundle's member_roles.json.
    permissions: Vec<(i64, String)>,
    /// Principals: (description, principal reference, its entities, context variants).
    principals: Vec<(String, Value, Vec<Value>, Vec<Value>)>,
}

fn generate(seed: u64, projects: usize) -> Data {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut groups: Vec<Group> = Vec::new();
    for id in 1..=14 {
        // The first four are roots; the others nest under an earlier group.
        let parent = (id > 4).then(|| groups[rng.usize(..groups.len())].id);
        let mut traversal = parent
            .map(|p| groups.iter().find(|g| g.id == p).unwrap().traversal.clone())
            .unwrap_or_default();
        traversal.push(id);
        groups.push(Group {
            id,
            parent,
            visibility: rng.usize(..3),
            traversal,
        });
    }
    let projects: Vec<Project> = (1..=projects as i64)
        .map(|id| Project {
            id,
            namespace: groups[rng.usize(..groups.len())].id,
            visibility: rng.usize(..3),
            archived: rng.u8(..6) == 0,
            features: std::array::from_fn(|_| match rng.u8(..8) {
                0 => 0,
                1 | 2 => 1,
                _ => 2,
            }),
        })
        .collect();
    let users: Vec<i64> = (1..=16).collect();
    let mut authorizations = Vec::new();
    for &user in &users {
        for project in &projects {
            if rng.u8(..4) == 0 {
                let level = ROLES[rng.usize(..ROLES.len())];
                let member_role = match rng.u8(..5) {
                    0 => Some(rng.i64(1..=3)),
                    _ => None,
                };
                authorizations.push(Authorization {
                    user,
                    project: project.id,
                    level,
                    member_role,
                });
            }
        }
    }
    let mut links = BTreeSet::new();
    for _ in 0..projects.len() / 2 {
        let (s, t) = (rng.usize(..projects.len()), rng.usize(..projects.len()));
        links.insert((projects[s].id, projects[t].id));
    }
    let member_roles: Value =
        serde_json::from_str(include_str!("../../../policies/gitlab/member_roles.json")).unwrap();
    let permissions = member_roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|role| {
            let id: i64 = role["id"].as_str().unwrap().parse().unwrap();
            role["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |p| (id, p.as_str().unwrap().to_owned()))
        })
        .collect();

    // Users 1-16 in every state and kind; admins and auditors among them.
    let user = |id: i64| {
        let state = [
            "active",
            "active",
            "active",
            "active",
            "blocked",
            "banned",
            "deactivated",
        ][(id as usize * 5) % 7];
        json!({
            "uid": {"type": "Gitlab::User", "id": id.to_string()},
            "attrs": {
                "state": if id <= 8 { "active" } else { state },
                "admin": id % 6 == 0,
                "auditor": id % 7 == 0,
                "external": id % 5 == 0,
                "user_type": if id % 9 == 0 { "project_bot" } else { "human" },
                "id": id.to_string(),
            },
            "parents": [],
        })
    };
    let plain = json!({"admin_mode": false});
    let mut principals = Vec::new();
    for &id in &users {
        let mut contexts = vec![plain.clone()];
        if id % 6 == 0 {
            contexts.push(json!({"admin_mode": true}));
        }
        if id % 4 == 1 {
            contexts.push(json!({"admin_mode": false, "token_scopes": ["read_api"]}));
            contexts.push(
                json!({"admin_mode": false, "token_scopes": ["read_repository", "read_registry"]}),
            );
        }
        if id % 4 == 2 {
            contexts.push(json!({"admin_mode": false,
                "branch": {"name": "main", "protected": true, "push_access_level": 40}}));
        }
        principals.push((
            format!("user {id}"),
            json!({"type": "Gitlab::User", "id": id.to_string()}),
            vec![user(id)],
            contexts,
        ));
    }
    principals.push((
        "anonymous".into(),
        json!({"type": "Gitlab::User", "id": "anonymous"}),
        vec![],
        vec![plain.clone()],
    ));
    principals.push((
        "a user the bundle does not know".into(),
        json!({"type": "Gitlab::User", "id": "999"}),
        vec![],
        vec![plain.clone()],
    ));
    for (n, user_id) in [(9001, 1), (9002, 2), (9003, 5), (9004, 10)] {
        let project = projects[rng.usize(..projects.len())].id;
        principals.push((
            format!("CI job {n} of user {user_id} in project {project}"),
            json!({"type": "Gitlab::CiJob", "id": n.to_string()}),
            vec![
                json!({"uid": {"type": "Gitlab::CiJob", "id": n.to_string()},
                       "attrs": {"project": {"type": "Gitlab::Project", "id": project.to_string()},
                                 "user": {"type": "Gitlab::User", "id": user_id.to_string()}},
                       "parents": []}),
                user(user_id),
            ],
            vec![plain.clone()],
        ));
    }
    let some_projects: Vec<Value> = (0..3)
        .map(|_| json!({"type": "Gitlab::Project", "id": projects[rng.usize(..projects.len())].id.to_string()}))
        .collect();
    principals.push((
        "a deploy key with write access".into(),
        json!({"type": "Gitlab::DeployKey", "id": "9501"}),
        vec![json!({"uid": {"type": "Gitlab::DeployKey", "id": "9501"},
                    "attrs": {"can_push": true}, "parents": some_projects})],
        vec![plain.clone()],
    ));
    principals.push((
        "a group deploy token".into(),
        json!({"type": "Gitlab::DeployToken", "id": "9601"}),
        vec![json!({"uid": {"type": "Gitlab::DeployToken", "id": "9601"},
                    "attrs": {"scopes": ["read_repository", "read_registry"], "revoked": false,
                              "group": {"__entity": {"type": "Gitlab::Group", "id": groups[4].parent.unwrap().to_string()}}},
                    "parents": []})],
        vec![plain],
    ));
    Data {
        groups,
        projects,
        authorizations,
        links: links.into_iter().collect(),
        permissions,
        principals,
    }
}

impl Data {
    /// The rows of one project as Cedar entities: the project (its authorizations as tags) and
    /// its groups.
    fn project_entities(&self, project: &Project) -> Vec<Value> {
        let features: serde_json::Map<String, Value> = FEATURES
            .iter()
            .zip(project.features)
            .map(|(name, level)| ((*name).to_owned(), FEATURE[level].0.into()))
            .collect();
        let tags: serde_json::Map<String, Value> = self
            .authorizations
            .iter()
            .filter(|a| a.project == project.id)
            .map(|a| {
                let mut tag = json!({"access_level": a.level});
                if let Some(role) = a.member_role {
                    tag["member_role"] =
                        json!({"__entity": {"type": "Gitlab::MemberRole", "id": role.to_string()}});
                }
                (a.user.to_string(), tag)
            })
            .collect();
        let allowlist: Vec<Value> = self
            .links
            .iter()
            .filter(|(_, target)| *target == project.id)
            .map(|(source, _)| json!({"type": "Gitlab::Project", "id": source.to_string()}))
            .collect();
        let mut entities = vec![json!({
            "uid": {"type": "Gitlab::Project", "id": project.id.to_string()},
            "attrs": {
                "visibility": VISIBILITY[project.visibility].0,
                "archived": project.archived,
                "features": features,
                "job_token_allowlist": allowlist,
            },
            "parents": [{"type": "Gitlab::Group", "id": project.namespace.to_string()}],
            "tags": tags,
        })];
        let mut group = Some(project.namespace);
        while let Some(id) = group {
            let g = self.groups.iter().find(|g| g.id == id).unwrap();
            entities.push(json!({
                "uid": {"type": "Gitlab::Group", "id": id.to_string()},
                "attrs": {"visibility": VISIBILITY[g.visibility].0},
                "parents": g.parent.map(|p| vec![json!({"type": "Gitlab::Group", "id": p.to_string()})]).unwrap_or_default(),
            }));
            group = g.parent;
        }
        entities
    }

    /// Every row, as SQL statements with their parameters (`?` placeholders).
    fn inserts(&self) -> Vec<(&'static str, Vec<SqlValue>)> {
        use SqlValue::{Bool, Long, Text};
        let mut rows = Vec::new();
        for g in &self.groups {
            rows.push((
                "INSERT INTO namespaces (id, parent_id, visibility_level, traversal_ids) VALUES (?, ?, ?, ?)",
                vec![
                    Long(g.id),
                    g.parent.map_or(Text(String::new()), Long),
                    Long(VISIBILITY[g.visibility].1),
                    Text(format!("{{{}}}", g.traversal.iter().map(i64::to_string).collect::<Vec<_>>().join(","))),
                ],
            ));
        }
        for p in &self.projects {
            rows.push((
                "INSERT INTO projects (id, namespace_id, visibility_level, archived) VALUES (?, ?, ?, ?)",
                vec![Long(p.id), Long(p.namespace), Long(VISIBILITY[p.visibility].1), Bool(p.archived)],
            ));
            let mut features = vec![Long(p.id)];
            features.extend(p.features.iter().map(|f| Long(FEATURE[*f].1)));
            rows.push((
                "INSERT INTO project_features (project_id, repository_access_level, issues_access_level, merge_requests_access_level, builds_access_level, container_registry_access_level, package_registry_access_level) VALUES (?, ?, ?, ?, ?, ?, ?)",
                features,
            ));
        }
        for a in &self.authorizations {
            rows.push((
                "INSERT INTO project_authorizations (user_id, project_id, access_level, member_role_id) VALUES (?, ?, ?, ?)",
                vec![Long(a.user), Long(a.project), Long(a.level), a.member_role.map_or(Text(String::new()), Long)],
            ));
        }
        for (role, permission) in &self.permissions {
            rows.push((
                "INSERT INTO member_role_permissions (member_role_id, permission) VALUES (?, ?)",
                vec![Long(*role), Text(permission.clone())],
            ));
        }
        for (source, target) in &self.links {
            rows.push((
                "INSERT INTO ci_job_token_project_scope_links (source_project_id, target_project_id) VALUES (?, ?)",
                vec![Long(*source), Long(*target)],
            ));
        }
        rows
    }
}

/// A database the differential test reads.
trait Database {
    fn ids(&mut self, query: &SqlQuery) -> BTreeSet<i64>;
}

struct Sqlite(rusqlite::Connection);

impl Sqlite {
    fn new(data: &Data) -> Self {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(include_str!("../../../policies/gitlab/sql/sqlite.sql"))
            .unwrap();
        for (sql, params) in data.inserts() {
            db.execute(
                sql,
                rusqlite::params_from_iter(params.iter().map(sqlite_value)),
            )
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        Self(db)
    }
}

/// An empty string stands for NULL in the generated rows.
fn sqlite_value(v: &SqlValue) -> rusqlite::types::Value {
    match v {
        SqlValue::Long(n) => rusqlite::types::Value::Integer(*n),
        SqlValue::Bool(b) => rusqlite::types::Value::Integer(i64::from(*b)),
        SqlValue::Text(s) if s.is_empty() => rusqlite::types::Value::Null,
        SqlValue::Text(s) => rusqlite::types::Value::Text(s.clone()),
    }
}

impl Database for Sqlite {
    fn ids(&mut self, query: &SqlQuery) -> BTreeSet<i64> {
        let sql = format!("SELECT projects.id FROM projects WHERE {}", query.sql);
        let mut statement = self
            .0
            .prepare(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let rows = statement
            .query_map(
                rusqlite::params_from_iter(query.params.iter().map(sqlite_value)),
                |row| row.get(0),
            )
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.map(Result::unwrap).collect()
    }
}

struct Postgres {
    client: postgres::Client,
    schema: String,
}

impl Postgres {
    fn new(url: &str, data: &Data) -> Self {
        let mut client = postgres::Client::connect(url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at {url}: {e}"));
        let schema = format!("arbiter_query_{}", std::process::id());
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path TO {schema};"
            ))
            .unwrap();
        client
            .batch_execute(include_str!("../../../policies/gitlab/sql/postgres.sql"))
            .unwrap();
        for (sql, params) in data.inserts() {
            let sql = numbered(sql);
            let sql = sql.replace(
                "traversal_ids) VALUES ($1, $2, $3, $4)",
                "traversal_ids) VALUES ($1, $2, $3, $4::text::bigint[])",
            );
            let values: Vec<Box<dyn postgres::types::ToSql + Sync>> =
                params.iter().map(pg_value).collect();
            let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                values.iter().map(|v| v.as_ref()).collect();
            client
                .execute(&sql, &refs)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        client.batch_execute("ANALYZE").unwrap();
        Self { client, schema }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
    }
}

/// `?` placeholders as `$1`, `$2`, ...
fn numbered(sql: &str) -> String {
    let mut n = 0;
    sql.chars()
        .map(|c| match c {
            '?' => {
                n += 1;
                format!("${n}")
            }
            c => c.to_string(),
        })
        .collect()
}

fn pg_value(v: &SqlValue) -> Box<dyn postgres::types::ToSql + Sync> {
    match v {
        SqlValue::Long(n) => Box::new(*n),
        SqlValue::Bool(b) => Box::new(*b),
        SqlValue::Text(s) if s.is_empty() => Box::new(None::<i64>),
        SqlValue::Text(s) => Box::new(s.clone()),
    }
}

impl Database for Postgres {
    fn ids(&mut self, query: &SqlQuery) -> BTreeSet<i64> {
        let sql = format!("SELECT projects.id FROM projects WHERE {}", query.sql);
        let values: Vec<Box<dyn postgres::types::ToSql + Sync>> =
            query.params.iter().map(pg_value).collect();
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            values.iter().map(|v| v.as_ref()).collect();
        self.client
            .query(&sql, &refs)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

/// Every principal, action and context: the query's ids against the checks' allows.
fn differential(data: &Data, dialect: Dialect, db: &mut dyn Database) -> usize {
    let engine = Engine::gitlab_default().unwrap();
    let project_entities: Vec<Vec<Value>> = data
        .projects
        .iter()
        .map(|p| data.project_entities(p))
        .collect();
    let mut failures = Vec::new();
    let mut compared = 0;
    for (who, principal, entities, contexts) in &data.principals {
        for context in contexts {
            for action in ACTIONS {
                let query = json!({
                    "principal": principal,
                    "action": {"type": "Gitlab::Action", "id": action},
                    "resource": {"type": "Gitlab::Project"},
                    "context": context,
                    "entities": entities,
                });
                let request = engine.read_query(&query.to_string()).unwrap();
                let sql = engine
                    .query_sql(&request, dialect)
                    .unwrap_or_else(|e| panic!("{who} {action} {context}: {e}"));
                let selected = db.ids(&sql);
                for (project, own) in data.projects.iter().zip(&project_entities) {
                    let mut all = entities.clone();
                    all.extend(own.iter().cloned());
                    let check = json!({
                        "principal": principal,
                        "action": {"type": "Gitlab::Action", "id": action},
                        "resource": {"type": "Gitlab::Project", "id": project.id.to_string()},
                        "context": context,
                        "entities": all,
                    });
                    let decision = engine
                        .authorize(&engine.read_request(&check.to_string()).unwrap())
                        .unwrap();
                    compared += 1;
                    if decision.allowed() != selected.contains(&project.id) {
                        failures.push(format!(
                            "{who}, {action}, context {context}: project {} is {} by the check ({:?}) but {} by the query\n  rows: {}\n  sql: {} {:?}",
                            project.id,
                            if decision.allowed() { "allowed" } else { "denied" },
                            decision.reasons,
                            if selected.contains(&project.id) { "selected" } else { "not selected" },
                            json!(own),
                            sql.sql,
                            sql.params,
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} answers differ; the first:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    compared
}

#[test]
fn sqlite_selects_exactly_what_the_checks_allow() {
    let data = generate(7, 60);
    let mut db = Sqlite::new(&data);
    let compared = differential(&data, Dialect::Sqlite, &mut db);
    assert!(compared > 50_000, "{compared}");
}

#[test]
#[ignore = "needs a PostgreSQL server: `make query-test` starts one"]
fn postgres_selects_exactly_what_the_checks_allow() {
    let url = std::env::var("ARBITER_TEST_POSTGRES")
        .expect("ARBITER_TEST_POSTGRES names the PostgreSQL server (`make query-test` sets it)");
    let data = generate(11, 60);
    let mut db = Postgres::new(&url, &data);
    let compared = differential(&data, Dialect::Postgres, &mut db);
    assert!(compared > 50_000, "{compared}");
}

/// What a query refuses, and how: a check request (a resource with an id), a token, entities a
/// check refuses, a bundle without a schema or an SQL mapping, an unmapped form; never a filter.
#[test]
fn queries_refuse_what_they_cannot_answer_exactly() {
    let engine = Engine::gitlab_default().unwrap();
    let base = json!({"principal": {"type": "Gitlab::User", "id": "alice"},
                      "action": {"type": "Gitlab::Action", "id": "read_project"},
                      "resource": {"type": "Gitlab::Project"}, "context": {"admin_mode": false}});
    let kind = |engine: &Engine, request: &Value| {
        engine
            .query_json(&request.to_string(), Dialect::Postgres)
            .map_err(|e| e.kind())
    };
    assert!(kind(&engine, &base).is_ok());
    let mut with_id = base.clone();
    with_id["resource"]["id"] = json!("3");
    assert_eq!(kind(&engine, &with_id), Err("malformed_request"));
    let mut with_token = base.clone();
    with_token["token"] = json!("glcbt-x");
    assert_eq!(kind(&engine, &with_token), Err("malformed_request"));
    let mut twice = base.clone();
    twice["entities"] = json!([
        {"uid": {"type": "Gitlab::Group", "id": "x"}, "attrs": {"visibility": "public"}, "parents": []},
        {"uid": {"type": "Gitlab::Group", "id": "x"}, "attrs": {"visibility": "private"}, "parents": []}]);
    assert_eq!(kind(&engine, &twice), Err("invalid_entities"));
    let mut bad_context = base.clone();
    bad_context["context"] = json!({"admin_mode": "no"});
    assert_eq!(kind(&engine, &bad_context), Err("invalid_context"));

    let doc = |files: Vec<arbiter::BundleFile>| Engine::from_files(files).unwrap();
    let policy = arbiter::BundleFile::new(
        "p.cedar",
        r#"permit (principal, action, resource) when { resource.title like "a*" };"#,
    );
    let schema = arbiter::BundleFile::new(
        "schema.cedarschema",
        "entity User; entity Doc = {title: String}; action read appliesTo { principal: User, resource: Doc };",
    );
    let mapping = arbiter::BundleFile::new(
        "sql/mapping.json",
        r#"{"entity_types": {"Doc": {"table": "docs", "attributes": {"title": {"column": "title", "type": "string"}}}}}"#,
    );
    let request = json!({"principal": {"type": "User", "id": "u"}, "action": {"type": "Action", "id": "read"},
                         "resource": {"type": "Doc"}});
    let untranslatable = |engine: &Engine| {
        engine
            .query_json(&request.to_string(), Dialect::Sqlite)
            .unwrap_err()
            .to_string()
    };
    let e = untranslatable(&doc(vec![policy.clone()]));
    assert!(e.contains("schema"), "{e}");
    let e = untranslatable(&doc(vec![policy.clone(), schema.clone()]));
    assert!(e.contains("sql/mapping.json"), "{e}");
    let e = untranslatable(&doc(vec![policy, schema, mapping]));
    assert!(
        e.starts_with("untranslatable: policy `policy0`") && e.contains("like"),
        "{e}"
    );
}

/// The same query writes the same SQL, and its parameters number from $1 in order.
#[test]
fn a_query_writes_the_same_sql_every_time() {
    let engine = Engine::gitlab_default().unwrap();
    let request = json!({"principal": {"type": "Gitlab::User", "id": "alice"},
                         "action": {"type": "Gitlab::Action", "id": "download_code"},
                         "resource": {"type": "Gitlab::Project"}, "context": {"admin_mode": false}})
    .to_string();
    let first = engine.query_json(&request, Dialect::Postgres).unwrap();
    for _ in 0..20 {
        assert_eq!(
            engine.query_json(&request, Dialect::Postgres).unwrap(),
            first
        );
    }
    let sql: Value = serde_json::from_str(&first).unwrap();
    let text = sql["sql"].as_str().unwrap();
    let count = sql["params"].as_array().unwrap().len();
    let placeholders: Vec<usize> = (1..=count)
        .map(|n| text.find(&format!("${n}")).unwrap())
        .collect();
    assert!(placeholders.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(!text.contains(&format!("${}", count + 1)), "{text}");
}
