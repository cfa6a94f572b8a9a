//! Shared inputs of Arbiter's benchmarks: the test keys and bundles built from them.

use std::path::PathBuf;

/// A test key or secret from `core/tests/fixtures/keys`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "core",
        "tests",
        "fixtures",
        "keys",
        name,
    ]
    .iter()
    .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files of the default bundle (`policies/gitlab`) the engine reads, for benchmarks that
/// also hand them to cedar-policy.
pub fn gitlab_files() -> Vec<arbiter::BundleFile> {
    bundle_files(&[env!("CARGO_MANIFEST_DIR"), "..", "policies", "gitlab"])
}

/// The files of the Docs bundle (`benches/bundles/docs`), written independently of the default
/// one in other Cedar idioms.
pub fn docs_files() -> Vec<arbiter::BundleFile> {
    bundle_files(&[env!("CARGO_MANIFEST_DIR"), "bundles", "docs"])
}

/// The bundle files (policies, schema, JSON) directly in the directory `path` joins to.
fn bundle_files(path: &[&str]) -> Vec<arbiter::BundleFile> {
    let dir: PathBuf = path.iter().collect();
    let mut files: Vec<arbiter::BundleFile> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e == "cedar" || e == "cedarschema" || e == "json")
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            arbiter::BundleFile::new(name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// The text of the bundle file at `path`.
pub fn file_text(files: &[arbiter::BundleFile], path: &str) -> String {
    files
        .iter()
        .find(|f| f.path == path)
        .map(|f| f.text().expect("bundle files are text").to_owned())
        .unwrap_or_else(|| panic!("the bundle has no {path}"))
}

/// What cedar-policy is given for a bundle with a schema: the schema, every policy in one set,
/// and the static entities read against the schema.
pub fn cedar_inputs(
    files: &[arbiter::BundleFile],
) -> (
    cedar_policy::Schema,
    cedar_policy::PolicySet,
    cedar_policy::Entities,
) {
    let schema =
        cedar_policy::Schema::from_cedarschema_str(&file_text(files, "schema.cedarschema"))
            .unwrap()
            .0;
    let set: cedar_policy::PolicySet = policy_text(files).parse().unwrap();
    let entities =
        cedar_policy::Entities::from_json_str(&file_text(files, "entities.json"), Some(&schema))
            .unwrap();
    (schema, set, entities)
}

/// Every policy file of a bundle in one text, in file order (what cedar-policy is given).
pub fn policy_text(files: &[arbiter::BundleFile]) -> String {
    files
        .iter()
        .filter(|f| f.path.ends_with(".cedar"))
        .map(|f| f.text().expect("policy files are text"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The slice of the default bundle that the Go benchmarks also run through OPA
/// (`benches/go/testdata/slice.cedar`).
pub fn slice_policies() -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "go", "testdata", "slice.cedar"]
        .iter()
        .collect();
    std::fs::read_to_string(path).unwrap()
}

/// The default bundle's files with `n` more entities in `entities.json`, shaped as GitLab's:
/// users (`u0`, `u1`, ...), groups (`g0`, ...) and projects (`bench-0`, ...) in those groups,
/// each project with three members' authorizations as its tags. Three fifths are users, one in a
/// hundred a group, the rest projects.
pub fn gitlab_with_entities(n: usize) -> Vec<arbiter::BundleFile> {
    use serde_json::{json, Value};
    let (users, groups) = (n * 3 / 5, (n / 100).max(1));
    let projects = n - users - groups;
    let mut files = gitlab_files();
    let entities = files
        .iter_mut()
        .find(|f| f.path == "entities.json")
        .expect("the default bundle has entities.json");
    let mut list: Vec<Value> =
        serde_json::from_slice(&entities.contents).expect("the default bundle's entities are JSON");
    list.extend((0..users).map(|i| {
        let state = if i % 40 == 0 { "blocked" } else { "active" };
        json!({"uid": {"type": "Gitlab::User", "id": format!("u{i}")},
               "attrs": {"state": state, "admin": false, "auditor": false, "external": i % 25 == 0,
                         "user_type": "human", "username": format!("user{i}"), "id": format!("u{i}")},
               "parents": []})
    }));
    list.extend((0..groups).map(|i| {
        json!({"uid": {"type": "Gitlab::Group", "id": format!("g{i}")},
               "attrs": {"visibility": "private", "path": format!("group-{i}")}, "parents": []})
    }));
    let visibility = ["private", "internal", "public"];
    list.extend((0..projects).map(|i| {
        let members: serde_json::Map<String, Value> = [10, 30, 40]
            .iter()
            .enumerate()
            .map(|(k, level)| (format!("u{}", (i * 3 + k) % users.max(3)), json!({"access_level": level})))
            .collect();
        json!({"uid": {"type": "Gitlab::Project", "id": format!("bench-{i}")},
               "attrs": {"visibility": visibility[i % 3], "archived": i % 50 == 0,
                         "path": format!("group-{}/project-{i}", i % groups),
                         "features": {"repository": "enabled", "issues": "enabled",
                                      "merge_requests": "enabled", "builds": "enabled",
                                      "container_registry": "enabled", "package_registry": "enabled"},
                         "job_token_allowlist": []},
               "parents": [{"type": "Gitlab::Group", "id": format!("g{}", i % groups)}],
               "tags": members})
    }));
    entities.contents = serde_json::to_vec(&list).expect("JSON values serialize");
    files
}
