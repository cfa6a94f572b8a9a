//! What the fuzz targets share: the engines they drive, the way an input is cut into bundle
//! files or request fields, and the invariants every decision must keep.

use std::sync::OnceLock;

use arbiter::{BundleFile, Engine, Minter, SigningKey};
use serde_json::{json, Value};

/// The fixed clock of every engine here, so a token's validity does not depend on the day.
pub const NOW: i64 = 1_800_000_000;

/// The test keys of core's token tests.
macro_rules! key {
    ($name:literal) => {
        include_str!(concat!("../../core/tests/fixtures/keys/", $name))
    };
}

/// The Ed25519 test key (PKCS#8), for signing bundles.
pub const ED25519_KEY: &str = key!("ed.pem");

/// The default bundle, as the CLI runs it.
pub fn default_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::gitlab_default()
            .expect("the default bundle loads")
            .with_fixed_time(NOW)
    })
}

/// Policies for the token engine: the token's principal and claims decide.
const TOKEN_POLICIES: &str = r#"
@id("user-reads") permit (principal is User, action == Action::"read", resource);
@id("job-push") permit (principal is Job, action == Action::"push", resource)
  when { context has token && context.token.ref_protected && principal.project == Project::"7" };
@id("gitaly") permit (principal == Service::"gitaly-client", action, resource);
"#;

/// An engine trusting JWTs of every algorithm family (HS256, RS256, ES256, EdDSA), macaroons
/// and Gitaly tokens, all with test keys.
pub fn token_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::from_files(token_bundle())
            .expect("the token bundle loads")
            .with_fixed_time(NOW)
    })
}

fn jwks(kid: &str, alg: &str, pem: &str) -> Value {
    let key = SigningKey::from_pem(kid, alg, pem.as_bytes()).expect("test key");
    Minter::new("fuzz", key).jwks()
}

/// The token engine's bundle files.
fn token_bundle() -> Vec<BundleFile> {
    let issuer = |name: &str, alg: &str, jwks: Value| {
        json!({"issuer": name, "algorithms": [alg], "jwks": jwks, "leeway_seconds": 30,
               "principal": {"type": "User", "id_claim": "sub"}})
    };
    let tokens = json!({
        "jwt": {"issuers": [
            {"issuer": "https://hs.example", "audiences": ["api"], "algorithms": ["HS256"],
             "hmac_secret_file": "keys/hs256.b64", "secret_encoding": "base64",
             "required_claims": ["exp", "sub"], "principal": {"type": "User", "id_claim": "sub"}},
            issuer("https://rs.example", "RS256", jwks("rs-1", "RS256", key!("rsa.pem"))),
            issuer("https://ec.example", "ES256", jwks("ec-1", "ES256", key!("ec.pem"))),
            issuer("https://ed.example", "EdDSA", jwks("ed-1", "EdDSA", key!("ed.pem"))),
            {"issuer": "https://ci.example", "algorithms": ["RS256"],
             "jwks": jwks("ci-1", "RS256", key!("rsa.pem")), "token_prefix": "glcbt-",
             "max_age_seconds": 90,
             "principal": {"type": "Job", "id_claim": "sub", "id_prefix": "gid://gitlab/Ci::Build/",
                           "attributes": {"project": {"claim": "project_id", "as": "entity", "entity_type": "Project"}}},
             "claims": {"ref_protected": "bool_string"}}
        ]},
        "macaroon": {"root_keys": [{"id": "k1", "secret_file": "keys/macaroon.key"}],
                     "principal": {"type": "User", "id_caveat": "user"}},
        "gitaly": {"secret_file": "keys/gitaly.secret", "principal": {"type": "Service", "id": "gitaly-client"}}
    });
    vec![
        BundleFile::new("policies.cedar", TOKEN_POLICIES),
        BundleFile::new("tokens.json", tokens.to_string()),
        BundleFile::new("keys/hs256.b64", key!("hs256.b64")),
        BundleFile::new("keys/macaroon.key", key!("macaroon.key")),
        BundleFile::new("keys/gitaly.secret", key!("gitaly.secret")),
    ]
}

/// The line that starts a section of a multi-part input: `=== name`.
pub const SECTION: &str = "=== ";

/// Cuts `text` into named sections, each starting with a line `=== name`; text before the first
/// such line is ignored. Bundle inputs name files this way; seeds are written the same way.
pub fn sections(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    if !rest.starts_with(SECTION) {
        match rest.find(&format!("\n{SECTION}")) {
            Some(i) => rest = &rest[i + 1..],
            None => return out,
        }
    }
    while let Some(after) = rest.strip_prefix(SECTION) {
        let (name, body) = after.split_once('\n').unwrap_or((after, ""));
        let (contents, next) = match body.find(&format!("\n{SECTION}")) {
            Some(i) => (&body[..i], &body[i + 1..]),
            None => (body, ""),
        };
        out.push((name, contents));
        rest = next;
    }
    out
}

/// The invariants of a decision given as decision JSON: it parses, it is `allow` or `deny`, and
/// an `allow` carries no error other than a policy's evaluation error (a bad token, or anything
/// else that is not one policy failing, always denies).
pub fn check_decision_json(json: &str) {
    let value: Value = serde_json::from_str(json).expect("decision JSON parses");
    let decision = value["decision"].as_str().expect("decision is a string");
    assert!(decision == "allow" || decision == "deny", "{json}");
    if decision == "allow" {
        let errors = value["errors"].as_array().expect("errors is an array");
        assert!(
            errors.iter().all(|e| e["kind"] == "policy_evaluation"),
            "an allow with a non-policy error: {json}"
        );
        assert!(
            !value["reasons"].as_array().expect("reasons").is_empty(),
            "an allow without a reason: {json}"
        );
    }
}

/// The default bundle's files, as its directory holds them.
pub fn default_bundle_files() -> &'static [BundleFile] {
    static FILES: OnceLock<Vec<BundleFile>> = OnceLock::new();
    FILES.get_or_init(|| {
        arbiter::read_bundle_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/gitlab"))
            .expect("the default bundle's directory reads")
    })
}

/// A few GitLab-like rows in SQLite (the default bundle's tables), and the same rows as the
/// entities a check is given.
pub struct QueryFixture {
    db: std::sync::Mutex<rusqlite::Connection>,
    /// Each project's id and its entities (the project with its authorizations, its groups).
    projects: Vec<(i64, Vec<Value>)>,
}

/// The rows: (id, group, visibility, archived, repository and issues levels), groups 2 in 1.
const PROJECTS: [(i64, i64, &str, bool, &str, &str); 6] = [
    (1, 1, "public", false, "enabled", "enabled"),
    (2, 2, "private", false, "enabled", "private"),
    (3, 2, "private", true, "private", "enabled"),
    (4, 1, "internal", false, "disabled", "enabled"),
    (5, 2, "public", false, "private", "disabled"),
    (6, 1, "internal", true, "enabled", "enabled"),
];
/// (user, project, access level, member role).
const AUTHORIZATIONS: [(i64, i64, i64, Option<i64>); 6] = [
    (42, 2, 30, None),
    (42, 3, 10, Some(1)),
    (42, 5, 50, None),
    (7, 4, 20, Some(2)),
    (7, 6, 40, Some(3)),
    (1, 1, 10, None),
];
/// (source project, target project): the target's job token allowlist holds the source.
const LINKS: [(i64, i64); 2] = [(1, 2), (4, 3)];

fn level(name: &str) -> i64 {
    match name {
        "private" | "disabled" => 0,
        "internal" => 10,
        _ => 20,
    }
}

fn feature_level(name: &str) -> i64 {
    match name {
        "disabled" => 0,
        "private" => 10,
        _ => 20,
    }
}

pub fn query_fixture() -> &'static QueryFixture {
    static FIXTURE: OnceLock<QueryFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let db = rusqlite::Connection::open_in_memory().expect("SQLite opens");
        db.execute_batch(include_str!("../../policies/gitlab/sql/sqlite.sql"))
            .expect("the DDL runs");
        db.execute_batch(
            "INSERT INTO namespaces (id, parent_id, visibility_level) VALUES (1, NULL, 20), (2, 1, 0);
             INSERT INTO member_role_permissions VALUES (1, 'read_code'), (2, 'admin_merge_request'),
               (3, 'archive_project'), (3, 'remove_project');",
        )
        .expect("rows insert");
        let groups = |group: i64| {
            let mut out = vec![json!({"uid": {"type": "Gitlab::Group", "id": "1"}, "attrs": {"visibility": "public"}, "parents": []})];
            if group == 2 {
                out.push(json!({"uid": {"type": "Gitlab::Group", "id": "2"}, "attrs": {"visibility": "private"},
                                "parents": [{"type": "Gitlab::Group", "id": "1"}]}));
            }
            out
        };
        let mut projects = Vec::new();
        for (id, group, visibility, archived, repository, issues) in PROJECTS {
            db.execute(
                "INSERT INTO projects VALUES (?, ?, ?, ?)",
                rusqlite::params![id, group, level(visibility), archived],
            )
            .expect("rows insert");
            db.execute(
                "INSERT INTO project_features (project_id, repository_access_level, issues_access_level) VALUES (?, ?, ?)",
                rusqlite::params![id, feature_level(repository), feature_level(issues)],
            )
            .expect("rows insert");
            let tags: serde_json::Map<String, Value> = AUTHORIZATIONS
                .iter()
                .filter(|a| a.1 == id)
                .map(|(user, _, level, role)| {
                    let mut tag = json!({"access_level": level});
                    if let Some(role) = role {
                        tag["member_role"] = json!({"__entity": {"type": "Gitlab::MemberRole", "id": role.to_string()}});
                    }
                    (user.to_string(), tag)
                })
                .collect();
            let allowlist: Vec<Value> = LINKS
                .iter()
                .filter(|l| l.1 == id)
                .map(|l| json!({"type": "Gitlab::Project", "id": l.0.to_string()}))
                .collect();
            let enabled = "enabled";
            let mut entities = vec![json!({
                "uid": {"type": "Gitlab::Project", "id": id.to_string()},
                "attrs": {"visibility": visibility, "archived": archived, "job_token_allowlist": allowlist,
                          "features": {"repository": repository, "issues": issues, "merge_requests": enabled,
                                       "builds": enabled, "container_registry": enabled, "package_registry": enabled}},
                "parents": [{"type": "Gitlab::Group", "id": group.to_string()}],
                "tags": tags,
            })];
            entities.extend(groups(group));
            projects.push((id, entities));
        }
        for (user, project, level, role) in AUTHORIZATIONS {
            db.execute(
                "INSERT INTO project_authorizations VALUES (?, ?, ?, ?)",
                rusqlite::params![user, project, level, role],
            )
            .expect("rows insert");
        }
        for (source, target) in LINKS {
            db.execute(
                "INSERT INTO ci_job_token_project_scope_links VALUES (?, ?)",
                rusqlite::params![source, target],
            )
            .expect("rows insert");
        }
        QueryFixture {
            db: std::sync::Mutex::new(db),
            projects,
        }
    })
}

impl QueryFixture {
    /// Query requests to run on a bundle whose mapping is fuzzed.
    pub fn requests(&self) -> Vec<String> {
        ["read_project", "download_code", "push_code", "archive_project"]
            .iter()
            .map(|action| {
                json!({"principal": {"type": "Gitlab::User", "id": "42"},
                       "action": {"type": "Gitlab::Action", "id": action},
                       "resource": {"type": "Gitlab::Project"}, "context": {"admin_mode": false},
                       "entities": [{"uid": {"type": "Gitlab::User", "id": "42"}, "parents": [],
                                     "attrs": {"state": "active", "admin": false, "auditor": false,
                                               "external": false, "user_type": "human", "id": "42"}}]})
                .to_string()
            })
            .collect()
    }

    /// The SQL `sql` answers query `request` with selects, over the fixture's rows, exactly the
    /// projects `engine` allows `request` on, given the rows as entities. Requests whose own
    /// entities replace projects or groups, or about another resource type, are not compared.
    pub fn assert_selects_what_checks_allow(
        &self,
        engine: &Engine,
        request: &str,
        sql: &arbiter::SqlQuery,
    ) {
        let Ok(mut check) = serde_json::from_str::<Value>(request) else {
            return;
        };
        if check["resource"]["type"] != "Gitlab::Project" {
            return;
        }
        let own: Vec<Value> = match check.get("entities") {
            None => Vec::new(),
            Some(Value::Array(own)) => own.clone(),
            Some(_) => return,
        };
        let replaces = |e: &Value| {
            let ty = &e["uid"]["type"];
            ty == "Gitlab::Project" || ty == "Gitlab::Group" || ty.is_null()
        };
        if own.iter().any(replaces) {
            return;
        }
        let params: Vec<rusqlite::types::Value> = sql
            .params
            .iter()
            .map(|p| match p {
                arbiter::SqlValue::Long(n) => rusqlite::types::Value::Integer(*n),
                arbiter::SqlValue::Bool(b) => rusqlite::types::Value::Integer(i64::from(*b)),
                arbiter::SqlValue::Text(s) => rusqlite::types::Value::Text(s.clone()),
            })
            .collect();
        let statement = format!("SELECT projects.id FROM projects WHERE {}", sql.sql);
        let selected: Vec<i64> = {
            let db = self.db.lock().expect("the fixture's lock");
            let mut prepared = db
                .prepare(&statement)
                .unwrap_or_else(|e| panic!("the SQL does not prepare: {statement}: {e}"));
            let rows = prepared
                .query_map(rusqlite::params_from_iter(params), |row| row.get(0))
                .unwrap_or_else(|e| panic!("the SQL does not run: {statement}: {e}"));
            rows.map(|r| r.expect("an id")).collect()
        };
        for (id, entities) in &self.projects {
            check["resource"]["id"] = json!(id.to_string());
            check["entities"] = json!(own.iter().chain(entities).collect::<Vec<_>>());
            let Ok(read) = engine.read_request(&check.to_string()) else {
                continue;
            };
            let Ok(decision) = engine.authorize(&read) else {
                continue;
            };
            assert_eq!(
                decision.allowed(),
                selected.contains(id),
                "project {id}: the check says {} but the query {} it\n{request}\n{statement} {:?}",
                decision.to_json(),
                if selected.contains(id) {
                    "selects"
                } else {
                    "leaves out"
                },
                sql.params
            );
        }
    }
}
