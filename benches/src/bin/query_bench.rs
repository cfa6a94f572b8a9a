//! List queries at GitLab's scale, on a real PostgreSQL server (`make bench` starts one through
//! tests/postgres/with-postgres.sh and names it in ARBITER_TEST_POSTGRES): 100,000 projects in
//! 10,000 groups, 1,000,000 project authorizations. For a member of 500 projects and for a
//! non-member, "projects this user may read" and "may download code from" three ways, in the
//! same run: the SQL Arbiter writes, a hand-written query with GitLab's own visibility logic,
//! and deciding every project with `authorize_batch`. Each way must select the same ids.
//! Prints JSON (`group/function` -> nanoseconds) for benches/report.py; the EXPLAIN of each
//! generated query goes to target/query-explain.txt.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use arbiter::{Dialect, Engine, Request, SqlQuery, SqlValue};
use postgres::types::ToSql;
use serde_json::{json, Value};

const PROJECTS: i64 = 100_000;
const GROUPS: i64 = 10_000;
const MEMBER: i64 = 1;
const NON_MEMBER: i64 = 200_000;

const DATA: &str = "
INSERT INTO namespaces (id, parent_id, visibility_level, traversal_ids)
  SELECT id, NULL, (id * 7 % 3) * 10, ARRAY[id] FROM generate_series(1, 1000) AS id;
INSERT INTO namespaces (id, parent_id, visibility_level, traversal_ids)
  SELECT id, (id - 1) % 1000 + 1, (id * 7 % 3) * 10, ARRAY[(id - 1) % 1000 + 1, id]
  FROM generate_series(1001, 10000) AS id;
INSERT INTO projects (id, namespace_id, visibility_level, archived)
  SELECT id, id % 10000 + 1, CASE WHEN id % 10 < 7 THEN 0 WHEN id % 10 < 9 THEN 10 ELSE 20 END,
         id % 50 = 0
  FROM generate_series(1, 100000) AS id;
INSERT INTO project_features (project_id, repository_access_level)
  SELECT id, CASE WHEN id % 23 = 0 THEN 0 WHEN id % 17 = 0 THEN 10 ELSE 20 END
  FROM generate_series(1, 100000) AS id;
-- The member: 500 projects as a Developer.
INSERT INTO project_authorizations (user_id, project_id, access_level)
  SELECT 1, k * 199 % 100000 + 1, 30 FROM generate_series(0, 499) AS k;
-- 999,500 more rows: users 2..100000, about ten projects each, at every role.
INSERT INTO project_authorizations (user_id, project_id, access_level)
  SELECT 2 + i % 99999, ((2 + i % 99999) * 31 + (i / 99999) * 9973) % 100000 + 1, 10 * (1 + i % 5)
  FROM generate_series(0, 999499) AS i;
ANALYZE;
";

/// GitLab's own logic for a regular (active, human, not external, not admin) user, written by
/// hand: projects it is a member of, and every internal or public one; for download_code, the
/// repository feature enabled, or private and the user at least a Reporter.
const HAND_READ: &str = "SELECT projects.id FROM projects WHERE
  projects.id IN (SELECT project_id FROM project_authorizations WHERE user_id = $1)
  OR projects.visibility_level IN (10, 20)";
const HAND_DOWNLOAD: &str = "SELECT projects.id FROM projects
  JOIN project_features ON project_features.project_id = projects.id
  WHERE (projects.id IN (SELECT project_id FROM project_authorizations WHERE user_id = $1 AND access_level >= 20)
         OR projects.visibility_level IN (10, 20))
    AND (project_features.repository_access_level = 20
         OR (project_features.repository_access_level = 10
             AND projects.id IN (SELECT project_id FROM project_authorizations WHERE user_id = $1 AND access_level >= 20)))";

fn user(id: i64) -> Value {
    json!({"uid": {"type": "Gitlab::User", "id": id.to_string()}, "parents": [],
           "attrs": {"state": "active", "admin": false, "auditor": false, "external": false,
                     "user_type": "human", "id": id.to_string()}})
}

fn query_json(user_id: i64, action: &str) -> String {
    json!({"principal": {"type": "Gitlab::User", "id": user_id.to_string()},
           "action": {"type": "Gitlab::Action", "id": action},
           "resource": {"type": "Gitlab::Project"}, "context": {"admin_mode": false},
           "entities": [user(user_id)]})
    .to_string()
}

fn params(values: &[SqlValue]) -> Vec<Box<dyn ToSql + Sync>> {
    values
        .iter()
        .map(|v| -> Box<dyn ToSql + Sync> {
            match v {
                SqlValue::Long(n) => Box::new(*n),
                SqlValue::Bool(b) => Box::new(*b),
                SqlValue::Text(s) => Box::new(s.clone()),
            }
        })
        .collect()
}

fn ids(db: &mut postgres::Client, sql: &str, values: &[Box<dyn ToSql + Sync>]) -> BTreeSet<i64> {
    let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
    db.query(sql, &refs)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// Every project's rows as the entities of a check: the project with its authorizations, its
/// group and the group's parent.
fn project_requests(
    db: &mut postgres::Client,
    engine: &Engine,
    user_id: i64,
    action: &str,
) -> Vec<Request> {
    let rows = db
        .query(
            "SELECT p.id, p.namespace_id, p.visibility_level, p.archived, f.repository_access_level,
                    n.parent_id, n.visibility_level, g.visibility_level,
                    (SELECT access_level FROM project_authorizations a WHERE a.project_id = p.id AND a.user_id = $1)
             FROM projects p JOIN project_features f ON f.project_id = p.id
             JOIN namespaces n ON n.id = p.namespace_id LEFT JOIN namespaces g ON g.id = n.parent_id
             ORDER BY p.id",
            &[&user_id],
        )
        .unwrap();
    let visibility = |level: i64| match level {
        0 => "private",
        10 => "internal",
        _ => "public",
    };
    let feature = |level: i64| match level {
        0 => "disabled",
        10 => "private",
        _ => "enabled",
    };
    rows.iter()
        .map(|row| {
            let (id, group, level, archived, repository): (i64, i64, i64, bool, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            let (parent, group_level, parent_level): (Option<i64>, i64, Option<i64>) = (row.get(5), row.get(6), row.get(7));
            let member: Option<i64> = row.get(8);
            let mut tags = serde_json::Map::new();
            if let Some(level) = member {
                tags.insert(user_id.to_string(), json!({"access_level": level}));
            }
            let mut entities = vec![
                user(user_id),
                json!({"uid": {"type": "Gitlab::Project", "id": id.to_string()},
                       "attrs": {"visibility": visibility(level), "archived": archived, "job_token_allowlist": [],
                                 "features": {"repository": feature(repository), "issues": "enabled",
                                              "merge_requests": "enabled", "builds": "enabled",
                                              "container_registry": "enabled", "package_registry": "enabled"}},
                       "parents": [{"type": "Gitlab::Group", "id": group.to_string()}], "tags": tags}),
                json!({"uid": {"type": "Gitlab::Group", "id": group.to_string()}, "attrs": {"visibility": visibility(group_level)},
                       "parents": parent.map(|p| vec![json!({"type": "Gitlab::Group", "id": p.to_string()})]).unwrap_or_default()}),
            ];
            if let (Some(p), Some(l)) = (parent, parent_level) {
                entities.push(json!({"uid": {"type": "Gitlab::Group", "id": p.to_string()}, "attrs": {"visibility": visibility(l)}, "parents": []}));
            }
            let request = json!({"principal": {"type": "Gitlab::User", "id": user_id.to_string()},
                                 "action": {"type": "Gitlab::Action", "id": action},
                                 "resource": {"type": "Gitlab::Project", "id": id.to_string()},
                                 "context": {"admin_mode": false}, "entities": entities});
            engine.read_request(&request.to_string()).unwrap()
        })
        .collect()
}

fn main() {
    let url = std::env::var("ARBITER_TEST_POSTGRES")
        .expect("ARBITER_TEST_POSTGRES names the PostgreSQL server (`make bench` starts one)");
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    db.batch_execute("DROP SCHEMA IF EXISTS arbiter_bench CASCADE; CREATE SCHEMA arbiter_bench; SET search_path TO arbiter_bench;")
        .unwrap();
    db.batch_execute(include_str!("../../../policies/gitlab/sql/postgres.sql"))
        .unwrap();
    let start = Instant::now();
    db.batch_execute(DATA).unwrap();
    eprintln!(
        "loaded {PROJECTS} projects, {GROUPS} groups, 1,000,000 authorizations in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let engine = Engine::gitlab_default().unwrap();
    let mut results = serde_json::Map::new();
    let mut explain = String::new();

    // Query generation: from a read request to SQL text and parameters.
    let request = engine
        .read_query(&query_json(MEMBER, "read_project"))
        .unwrap();
    let generate = median(2001, || {
        std::hint::black_box(engine.query_sql(&request, Dialect::Postgres).unwrap());
    });
    results.insert(
        "query/generate/arbiter".into(),
        json!(generate.as_nanos() as f64),
    );
    let from_json = median(2001, || {
        let q = engine
            .read_query(&query_json(MEMBER, "read_project"))
            .unwrap();
        std::hint::black_box(engine.query_sql(&q, Dialect::Postgres).unwrap());
    });
    results.insert(
        "query/generate/arbiter_from_json".into(),
        json!(from_json.as_nanos() as f64),
    );
    // The floor: cedar-policy's own partial evaluation of the bundle for the same request, its
    // inputs built once (Arbiter's figure includes it, over the policies whose scope fits).
    let files = arbiter_benches::gitlab_files();
    let text = |name: &str| {
        let file = files.iter().find(|f| f.path == name).unwrap();
        String::from_utf8(file.contents.clone()).unwrap()
    };
    let schema = cedar_policy::Schema::from_cedarschema_str(&text("schema.cedarschema"))
        .unwrap()
        .0;
    let policies: cedar_policy::PolicySet = files
        .iter()
        .filter(|f| f.path.ends_with(".cedar"))
        .map(|f| String::from_utf8(f.contents.clone()).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
        .parse()
        .unwrap();
    let uid = |json: Value| cedar_policy::EntityUid::from_json(json).unwrap();
    let partial = cedar_policy::PartialRequest::new(
        cedar_policy::PartialEntityUid::from_concrete(uid(
            json!({"type": "Gitlab::User", "id": MEMBER.to_string()}),
        )),
        uid(json!({"type": "Gitlab::Action", "id": "read_project"})),
        cedar_policy::PartialEntityUid::new("Gitlab::Project".parse().unwrap(), None),
        Some(cedar_policy::Context::from_json_value(json!({"admin_mode": false}), None).unwrap()),
        &schema,
    )
    .unwrap();
    let entities = cedar_policy::PartialEntities::from_concrete(
        cedar_policy::Entities::from_json_value(json!([user(MEMBER)]), Some(&schema)).unwrap(),
        &schema,
    )
    .unwrap();
    let tpe = median(2001, || {
        std::hint::black_box(policies.tpe(&partial, &entities, &schema).unwrap());
    });
    results.insert(
        "query/generate/cedar_tpe".into(),
        json!(tpe.as_nanos() as f64),
    );

    for (action, hand) in [
        ("read_project", HAND_READ),
        ("download_code", HAND_DOWNLOAD),
    ] {
        for (who, user_id) in [("member", MEMBER), ("nonmember", NON_MEMBER)] {
            let group = format!("query/{action}_{who}");
            let sql: SqlQuery = engine
                .query_sql(
                    &engine.read_query(&query_json(user_id, action)).unwrap(),
                    Dialect::Postgres,
                )
                .unwrap();
            let statement = format!("SELECT projects.id FROM projects WHERE {}", sql.sql);
            let values = params(&sql.params);
            let hand_values: Vec<Box<dyn ToSql + Sync>> = vec![Box::new(user_id)];
            let ours = ids(&mut db, &statement, &values);
            let theirs = ids(&mut db, hand, &hand_values);
            assert_eq!(
                ours, theirs,
                "{group}: the generated SQL and the hand-written query differ"
            );
            let sql_time = median(21, || {
                ids(&mut db, &statement, &values);
            });
            let hand_time = median(21, || {
                ids(&mut db, hand, &hand_values);
            });
            let requests = project_requests(&mut db, &engine, user_id, action);
            let checks_time = median(3, || {
                std::hint::black_box(engine.authorize_batch(&requests));
            });
            let allowed: BTreeSet<i64> = engine
                .authorize_batch(&requests)
                .iter()
                .zip(1..)
                .filter(|(d, _)| d.as_ref().is_ok_and(|d| d.allowed()))
                .map(|(_, id)| id)
                .collect();
            assert_eq!(
                ours, allowed,
                "{group}: the generated SQL and the checks differ"
            );
            eprintln!(
                "{group}: {} projects; SQL {:?}, hand-written {:?}, {} checks {:?}",
                ours.len(),
                sql_time,
                hand_time,
                requests.len(),
                checks_time
            );
            results.insert(
                format!("{group}/arbiter_sql"),
                json!(sql_time.as_nanos() as f64),
            );
            results.insert(
                format!("{group}/hand_written"),
                json!(hand_time.as_nanos() as f64),
            );
            results.insert(
                format!("{group}/per_row_checks"),
                json!(checks_time.as_nanos() as f64),
            );
            let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
            let plan = db.query(&format!("EXPLAIN {statement}"), &refs).unwrap();
            explain.push_str(&format!("## {group}\n"));
            for row in plan {
                let line: String = row.get(0);
                explain.push_str(&line);
                explain.push('\n');
            }
        }
    }
    db.batch_execute("DROP SCHEMA arbiter_bench CASCADE")
        .unwrap();
    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/query-explain.txt");
    std::fs::write(target, explain).unwrap();
    println!("{}", Value::Object(results));
}
