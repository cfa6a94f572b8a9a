//! `member_roles.json`: GitLab's custom roles. A member role is a base role plus named extra
//! permissions; the file declares the permissions the bundle's policies know and the roles, and
//! each role becomes a static entity of the file's `entity_type`
//! (`{name, base_access_level, permissions}`), which a project authorization names. Problems are
//! reported by line, and a role that names a permission the file does not declare is refused
//! (it would silently grant nothing).

use std::collections::{BTreeMap, HashSet};

use cedar_policy::Schema;
use cedar_policy_core::ast;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::bundle::entities::parse_entity;
use crate::bundle::{parse_json, serde_message, BundleFile};
use crate::wire::error::{LoadError, Problem};

/// The file's name in a bundle.
pub(crate) const MEMBER_ROLES: &str = "member_roles.json";

/// GitLab's base roles a custom role may build on: minimal access, guest, planner, reporter,
/// developer, maintainer.
const BASE_ACCESS_LEVELS: [i64; 6] = [5, 10, 15, 20, 30, 40];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberRolesFile<'a> {
    entity_type: String,
    /// Each permission's name, with what it grants in words.
    permissions: BTreeMap<String, String>,
    #[serde(borrow)]
    roles: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Role {
    id: String,
    name: String,
    base_access_level: i64,
    permissions: Vec<String>,
}

/// Reads `member_roles.json` into entities, checked against the schema when there is one.
pub(crate) fn load(
    file: &BundleFile,
    schema: Option<&Schema>,
) -> Result<Vec<ast::Entity>, LoadError> {
    let source = crate::bundle::text(file)?;
    let parsed: MemberRolesFile<'_> = parse_json(file).map_err(LoadError::Entities)?;
    let mut problems = Vec::new();
    let mut ids = HashSet::new();
    let mut entities = Vec::new();
    for raw in parsed.roles {
        // The role's place in the file, for its problems.
        let offset = raw.get().as_ptr() as usize - source.as_ptr() as usize;
        let problem = |message: String| Problem::at_offset(&file.path, source, offset, message);
        let role: Role = match serde_json::from_str(raw.get()) {
            Ok(role) => role,
            Err(e) => {
                problems.push(problem(format!("a role: {}", serde_message(&e))));
                continue;
            }
        };
        let mut fine = true;
        if !ids.insert(role.id.clone()) {
            problems.push(problem(format!(
                "role `{}`: the id is given twice",
                role.id
            )));
            fine = false;
        }
        if !BASE_ACCESS_LEVELS.contains(&role.base_access_level) {
            problems.push(problem(format!(
                "role `{}`: base_access_level {} is not one of {BASE_ACCESS_LEVELS:?}",
                role.id, role.base_access_level
            )));
            fine = false;
        }
        let mut seen = HashSet::new();
        for permission in &role.permissions {
            if !parsed.permissions.contains_key(permission) {
                problems.push(problem(format!(
                    "role `{}`: permission `{permission}` is not declared in `permissions`",
                    role.id
                )));
                fine = false;
            } else if !seen.insert(permission) {
                problems.push(problem(format!(
                    "role `{}`: permission `{permission}` is given twice",
                    role.id
                )));
                fine = false;
            }
        }
        if !fine {
            continue;
        }
        let json = serde_json::json!({
            "uid": {"type": parsed.entity_type, "id": role.id},
            "attrs": {
                "name": role.name,
                "base_access_level": role.base_access_level,
                "permissions": role.permissions,
            },
            "parents": [],
        });
        match parse_entity(json, schema) {
            Ok(entity) => entities.push(entity),
            Err(e) => problems.push(problem(format!("role `{}`: {}", role.id, e.message()))),
        }
    }
    if problems.is_empty() {
        Ok(entities)
    } else {
        Err(LoadError::Entities(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Problem> {
        match load(&BundleFile::new(MEMBER_ROLES, text), None) {
            Err(LoadError::Entities(p)) => p,
            other => panic!("expected entity problems, got {:?}", other.map(|e| e.len())),
        }
    }

    const HEAD: &str = "{\"entity_type\": \"G::MemberRole\",\n \"permissions\": {\"read_code\": \"download_code\"},\n \"roles\": [\n";

    #[test]
    fn roles_become_entities() {
        let text = format!(
            "{HEAD}  {{\"id\": \"1\", \"name\": \"r\", \"base_access_level\": 10, \"permissions\": [\"read_code\"]}}]}}"
        );
        let entities = load(&BundleFile::new(MEMBER_ROLES, text), None).unwrap();
        assert_eq!(entities.len(), 1);
        assert_eq!(entities[0].uid().to_string(), "G::MemberRole::\"1\"");
    }

    #[test]
    fn each_bad_role_is_reported_at_its_line() {
        let text = format!(
            "{HEAD}  {{\"id\": \"1\", \"name\": \"r\", \"base_access_level\": 10, \"permissions\": [\"read_cod\"]}},\n  {{\"id\": \"1\", \"name\": \"r\", \"base_access_level\": 50, \"permissions\": []}},\n  {{\"id\": \"3\", \"name\": \"r\", \"permissions\": []}}]}}"
        );
        let p = problems(&text);
        let lines: Vec<(Option<usize>, &str)> =
            p.iter().map(|p| (p.line, p.message.as_str())).collect();
        assert_eq!(
            lines,
            vec![
                (
                    Some(4),
                    "role `1`: permission `read_cod` is not declared in `permissions`"
                ),
                (Some(5), "role `1`: the id is given twice"),
                (
                    Some(5),
                    "role `1`: base_access_level 50 is not one of [5, 10, 15, 20, 30, 40]"
                ),
                (Some(6), "a role: missing field `base_access_level`"),
            ]
        );
        assert!(p.iter().all(|p| p.file == MEMBER_ROLES));
    }

    #[test]
    fn a_malformed_file_names_its_line() {
        let p = problems(
            "{\"entity_type\": \"G::MemberRole\",\n \"permissions\": {},\n \"rolez\": []}",
        );
        assert_eq!(p[0].line, Some(3));
        assert!(p[0].message.contains("unknown field `rolez`"), "{}", p[0]);
    }
}
