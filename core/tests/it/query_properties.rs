//! List queries on random small bundles, not only the default one: random policies (equality
//! and ordering on columns, mapped strings, booleans, optional attributes, set membership, tags,
//! hierarchy, context and principal attributes, `&&`, `||`, `!`, `if`) over random rows. The
//! SQL a query writes, run in SQLite, selects exactly the documents the check allows, given the
//! same rows as entities; or the query is refused as untranslatable, never a wrong filter.

use std::collections::BTreeSet;
use std::fmt;

use arbiter::{BundleFile, Dialect, Engine, SqlValue};
use proptest::prelude::*;
use serde_json::{json, Value};

const SCHEMA: &str = r#"namespace T {
  entity Org in [Org];
  entity User = { level: Long, flag: Bool, id: String, group?: Org };
  type Grant = { level: Long };
  entity Doc in [Org] = {
    level: Long, status: String, public: Bool, note?: String, readers: Set<User>,
  } tags Grant;
  action read appliesTo { principal: User, resource: Doc, context: { min: Long, on: Bool } };
}"#;

const MAPPING: &str = r#"{"entity_types": {
  "T::Doc": {"table": "docs", "parent": {"column": "org_id", "type": "T::Org"},
    "attributes": {
      "level": {"column": "level", "type": "long"},
      "status": {"column": "status", "values": {"draft": 0, "live": 1, "gone": 2}},
      "public": {"column": "public", "type": "bool"},
      "note": {"column": "note", "type": "string", "optional": true},
      "readers": {"table": "doc_readers", "key": "doc_id", "elements": {"column": "user_id", "type": "T::User"}}},
    "tags": {"table": "grants", "key": "doc_id", "tag": "user_id", "attributes": {"level": {"column": "level", "type": "long"}}}},
  "T::Org": {"table": "orgs", "parent": {"column": "parent_id", "type": "T::Org"}},
  "T::User": {"table": "users"}}}"#;

const DDL: &str = "CREATE TABLE orgs (id INTEGER PRIMARY KEY, parent_id INTEGER);
CREATE TABLE users (id INTEGER PRIMARY KEY);
CREATE TABLE docs (id INTEGER PRIMARY KEY, org_id INTEGER NOT NULL, level INTEGER NOT NULL,
  status INTEGER NOT NULL, public INTEGER NOT NULL, note TEXT);
CREATE TABLE doc_readers (doc_id INTEGER NOT NULL, user_id INTEGER NOT NULL);
CREATE TABLE grants (doc_id INTEGER NOT NULL, user_id INTEGER NOT NULL, level INTEGER NOT NULL);";

const STATUS: [&str; 3] = ["draft", "live", "gone"];

/// A condition, written as Cedar.
#[derive(Debug, Clone)]
enum Cond {
    LevelCmp(&'static str, i64),
    LevelVsPrincipal(&'static str),
    ContextMinLe,
    Status(bool, &'static str),
    Public,
    HasNote,
    Note(&'static str),
    Reader,
    HasTag,
    /// A tag of a document the store lacks: false, not an error.
    MissingHasTag,
    TagAtLeast(i64),
    InOrg(i64),
    InPrincipalGroup,
    IsDoc(i64),
    ContextOn,
    PrincipalFlag,
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    If(Box<Cond>, Box<Cond>, Box<Cond>),
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LevelCmp(op, n) => write!(f, "resource.level {op} {n}"),
            Self::LevelVsPrincipal(op) => write!(f, "principal.level {op} resource.level"),
            Self::ContextMinLe => write!(f, "context.min <= resource.level"),
            Self::Status(eq, s) => write!(
                f,
                "resource.status {} \"{s}\"",
                if *eq { "==" } else { "!=" }
            ),
            Self::Public => write!(f, "resource.public"),
            Self::HasNote => write!(f, "resource has note"),
            Self::Note(s) => write!(f, "(resource has note && resource.note == \"{s}\")"),
            Self::Reader => write!(f, "resource.readers.contains(principal)"),
            Self::HasTag => write!(f, "resource.hasTag(principal.id)"),
            Self::MissingHasTag => write!(f, "T::Doc::\"99\".hasTag(principal.id)"),
            Self::TagAtLeast(n) => write!(
                f,
                "(resource.hasTag(principal.id) && resource.getTag(principal.id).level >= {n})"
            ),
            Self::InOrg(k) => write!(f, "resource in T::Org::\"{k}\""),
            Self::InPrincipalGroup => {
                write!(f, "(principal has group && resource in principal.group)")
            }
            Self::IsDoc(k) => write!(f, "resource == T::Doc::\"{k}\""),
            Self::ContextOn => write!(f, "context.on"),
            Self::PrincipalFlag => write!(f, "principal.flag"),
            Self::Not(c) => write!(f, "!({c})"),
            Self::And(a, b) => write!(f, "({a} && {b})"),
            Self::Or(a, b) => write!(f, "({a} || {b})"),
            Self::If(c, a, b) => write!(f, "(if {c} then {a} else {b})"),
        }
    }
}

fn op() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["<", "<=", ">", ">=", "==", "!="])
}

fn cond() -> impl Strategy<Value = Cond> {
    let leaf = prop_oneof![
        (op(), 0..4i64).prop_map(|(o, n)| Cond::LevelCmp(o, n)),
        op().prop_map(Cond::LevelVsPrincipal),
        Just(Cond::ContextMinLe),
        (
            any::<bool>(),
            prop::sample::select(vec!["draft", "live", "gone", "other"])
        )
            .prop_map(|(eq, s)| Cond::Status(eq, s)),
        Just(Cond::Public),
        Just(Cond::HasNote),
        prop::sample::select(vec!["a", "b"]).prop_map(Cond::Note),
        Just(Cond::Reader),
        Just(Cond::HasTag),
        Just(Cond::MissingHasTag),
        (0..4i64).prop_map(Cond::TagAtLeast),
        (1..5i64).prop_map(Cond::InOrg),
        Just(Cond::InPrincipalGroup),
        (1..9i64).prop_map(Cond::IsDoc),
        Just(Cond::ContextOn),
        Just(Cond::PrincipalFlag),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| Cond::Not(Box::new(c))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Cond::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Cond::Or(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone(), inner).prop_map(|(c, a, b)| Cond::If(
                Box::new(c),
                Box::new(a),
                Box::new(b)
            )),
        ]
    })
}

/// One policy: permit or forbid, `when` or `unless`.
fn policy() -> impl Strategy<Value = (bool, bool, Cond)> {
    (any::<bool>(), any::<bool>(), cond())
}

#[derive(Debug, Clone)]
struct Doc {
    org: i64,
    level: i64,
    status: usize,
    public: bool,
    note: Option<&'static str>,
    readers: Vec<i64>,
    grants: Vec<(i64, i64)>,
}

#[derive(Debug, Clone)]
struct Rows {
    /// Parent of org k+1 (0 for none; always a smaller id).
    org_parents: Vec<i64>,
    docs: Vec<Doc>,
    /// The asking user: level, flag, group.
    user: (i64, bool, Option<i64>),
    context: (i64, bool),
}

fn rows() -> impl Strategy<Value = Rows> {
    let doc = (
        1..5i64,
        0..4i64,
        0..3usize,
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["a", "b"])),
        prop::collection::vec(1..4i64, 0..3),
        prop::collection::vec((1..4i64, 0..4i64), 0..3),
    )
        .prop_map(|(org, level, status, public, note, readers, grants)| {
            let mut seen = BTreeSet::new();
            let grants = grants
                .into_iter()
                .filter(|(u, _)| seen.insert(*u))
                .collect();
            Doc {
                org,
                level,
                status,
                public,
                note,
                readers,
                grants,
            }
        });
    (
        (0..1i64, 0..2i64, 0..3i64, 0..4i64),
        prop::collection::vec(doc, 8),
        (0..4i64, any::<bool>(), prop::option::of(1..5i64)),
        (0..4i64, any::<bool>()),
    )
        .prop_map(|(parents, docs, user, context)| Rows {
            org_parents: vec![parents.0, parents.1, parents.2, parents.3],
            docs,
            user,
            context,
        })
}

fn principal_entity(rows: &Rows) -> Value {
    let (level, flag, group) = rows.user;
    let mut attrs = json!({"level": level, "flag": flag, "id": "1"});
    if let Some(g) = group {
        attrs["group"] = json!({"__entity": {"type": "T::Org", "id": g.to_string()}});
    }
    json!({"uid": {"type": "T::User", "id": "1"}, "attrs": attrs, "parents": []})
}

fn org_entities(rows: &Rows) -> Vec<Value> {
    (1..=4i64)
        .map(|k| {
            let parent = rows.org_parents[(k - 1) as usize];
            json!({"uid": {"type": "T::Org", "id": k.to_string()}, "attrs": {},
                   "parents": if parent > 0 { json!([{"type": "T::Org", "id": parent.to_string()}]) } else { json!([]) }})
        })
        .collect()
}

fn doc_entity(id: usize, doc: &Doc) -> Value {
    let mut attrs = json!({
        "level": doc.level, "status": STATUS[doc.status], "public": doc.public,
        "readers": doc.readers.iter().map(|u| json!({"type": "T::User", "id": u.to_string()})).collect::<Vec<_>>(),
    });
    if let Some(note) = doc.note {
        attrs["note"] = json!(note);
    }
    let tags: serde_json::Map<String, Value> = doc
        .grants
        .iter()
        .map(|(u, level)| (u.to_string(), json!({"level": level})))
        .collect();
    json!({"uid": {"type": "T::Doc", "id": id.to_string()}, "attrs": attrs,
           "parents": [{"type": "T::Org", "id": doc.org.to_string()}], "tags": tags})
}

fn database(rows: &Rows) -> rusqlite::Connection {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(DDL).unwrap();
    for (n, parent) in rows.org_parents.iter().enumerate() {
        let parent = (*parent > 0).then_some(*parent);
        db.execute(
            "INSERT INTO orgs VALUES (?, ?)",
            rusqlite::params![n as i64 + 1, parent],
        )
        .unwrap();
    }
    for (n, doc) in rows.docs.iter().enumerate() {
        let id = n as i64 + 1;
        db.execute(
            "INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?)",
            rusqlite::params![
                id,
                doc.org,
                doc.level,
                doc.status as i64,
                doc.public,
                doc.note
            ],
        )
        .unwrap();
        for user in &doc.readers {
            db.execute(
                "INSERT INTO doc_readers VALUES (?, ?)",
                rusqlite::params![id, user],
            )
            .unwrap();
        }
        for (user, level) in &doc.grants {
            db.execute(
                "INSERT INTO grants VALUES (?, ?, ?)",
                rusqlite::params![id, user, level],
            )
            .unwrap();
        }
    }
    db
}

fn check(policies: &[(bool, bool, Cond)], rows: &Rows) -> Result<(), TestCaseError> {
    let text: String = policies
        .iter()
        .enumerate()
        .map(|(n, (permit, when, c))| {
            format!(
                "@id(\"p{n}\") {} (principal, action, resource) {} {{ {c} }};\n",
                if *permit { "permit" } else { "forbid" },
                if *when { "when" } else { "unless" }
            )
        })
        .collect();
    let engine = Engine::from_files([
        BundleFile::new("schema.cedarschema", SCHEMA),
        BundleFile::new("sql/mapping.json", MAPPING),
        BundleFile::new("p.cedar", text.clone()),
    ])
    .unwrap_or_else(|e| panic!("{text}: {e}"));
    let (min, on) = rows.context;
    let context = json!({"min": min, "on": on});
    let mut entities = vec![principal_entity(rows)];
    entities.extend(org_entities(rows));
    let query = json!({"principal": {"type": "T::User", "id": "1"}, "action": {"type": "T::Action", "id": "read"},
                       "resource": {"type": "T::Doc"}, "context": context, "entities": entities});
    let request = engine.read_query(&query.to_string()).unwrap();
    let sql = match engine.query_sql(&request, Dialect::Sqlite) {
        Ok(sql) => sql,
        // Refused, never a wrong filter; every form generated here has an SQL form.
        Err(e) => return Err(TestCaseError::fail(format!("{text}: {e}"))),
    };
    let db = database(rows);
    let statement = format!("SELECT docs.id FROM docs WHERE {}", sql.sql);
    let params: Vec<rusqlite::types::Value> = sql
        .params
        .iter()
        .map(|p| match p {
            SqlValue::Long(n) => rusqlite::types::Value::Integer(*n),
            SqlValue::Bool(b) => rusqlite::types::Value::Integer(i64::from(*b)),
            SqlValue::Text(s) => rusqlite::types::Value::Text(s.clone()),
        })
        .collect();
    let selected: BTreeSet<i64> = db
        .prepare(&statement)
        .unwrap_or_else(|e| panic!("{statement}: {e}"))
        .query_map(rusqlite::params_from_iter(params), |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (n, doc) in rows.docs.iter().enumerate() {
        let id = n + 1;
        let mut all = entities.clone();
        all.push(doc_entity(id, doc));
        let check = json!({"principal": {"type": "T::User", "id": "1"}, "action": {"type": "T::Action", "id": "read"},
                           "resource": {"type": "T::Doc", "id": id.to_string()}, "context": context, "entities": all});
        let allowed = engine
            .authorize(&engine.read_request(&check.to_string()).unwrap())
            .unwrap()
            .allowed();
        prop_assert_eq!(
            allowed,
            selected.contains(&(id as i64)),
            "doc {} {:?}\npolicies:\n{}sql: {} {:?}",
            id,
            doc,
            text,
            sql.sql,
            sql.params
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn a_query_selects_what_the_checks_allow_on_random_bundles(
        policies in prop::collection::vec(policy(), 1..4),
        rows in rows(),
    ) {
        check(&policies, &rows)?;
    }
}
