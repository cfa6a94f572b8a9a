//! `abilities.json`: the host's own permission names (abilities, as a Rails monolith's
//! `Ability.allowed?(user, :read_project, project)` has them) mapped onto the bundle's actions,
//! for a bridge that runs Arbiter beside the host's authorization code and then replaces it.
//!
//! ```json
//! {"action_type": "Gitlab::Action",
//!  "abilities": {"read_project": {"resource_type": "Gitlab::Project"},
//!                "read_code": {"action": "download_code", "resource_type": "Gitlab::Project"}}}
//! ```
//!
//! An ability's action defaults to its own name. With a schema, each action must exist and take
//! the resource type named, so a bridge never builds a request the bundle cannot decide. The
//! file is signed and swapped with the rest of the bundle, and problems are reported by line.

use std::collections::BTreeMap;
use std::str::FromStr;

use cedar_policy::{EntityId, EntityTypeName, EntityUid, Schema};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::bundle::{parse_json, serde_message, BundleFile};
use crate::wire::error::{LoadError, Problem};

/// The file's name in a bundle.
pub(crate) const ABILITIES: &str = "abilities.json";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AbilitiesFile<'a> {
    action_type: String,
    #[serde(borrow)]
    abilities: BTreeMap<String, &'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    action: Option<String>,
    resource_type: String,
}

/// The host's abilities and the actions they are, as `abilities.json` gives them (each
/// action's id filled in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Abilities {
    /// The entity type of the actions, e.g. `Gitlab::Action`.
    pub action_type: String,
    /// Each ability by name.
    pub abilities: BTreeMap<String, Ability>,
}

/// What one ability is in Cedar terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ability {
    /// The action's id (of type [`Abilities::action_type`]).
    pub action: String,
    /// The entity type of the resource the ability is checked on.
    pub resource_type: String,
}

impl Abilities {
    /// Reads `abilities.json`, checked against the schema when there is one.
    pub(crate) fn load(file: &BundleFile, schema: Option<&Schema>) -> Result<Self, LoadError> {
        let source = crate::bundle::text(file)?;
        let parsed: AbilitiesFile<'_> = parse_json(file).map_err(LoadError::Abilities)?;
        let mut problems = Vec::new();
        let action_type = match EntityTypeName::from_str(&parsed.action_type) {
            Ok(name) => Some(name),
            Err(_) => {
                problems.push(Problem::in_file(
                    &file.path,
                    format!(
                        "action_type `{}` is not an entity type name",
                        parsed.action_type
                    ),
                ));
                None
            }
        };
        let mut abilities = BTreeMap::new();
        for (name, raw) in parsed.abilities {
            let offset = raw.get().as_ptr() as usize - source.as_ptr() as usize;
            let problem = |message: String| {
                Problem::at_offset(
                    &file.path,
                    source,
                    offset,
                    format!("ability `{name}`: {message}"),
                )
            };
            let entry: Entry = match serde_json::from_str(raw.get()) {
                Ok(entry) => entry,
                Err(e) => {
                    problems.push(problem(serde_message(&e)));
                    continue;
                }
            };
            let action = entry.action.unwrap_or_else(|| name.clone());
            let Ok(resource_type) = EntityTypeName::from_str(&entry.resource_type) else {
                problems.push(problem(format!(
                    "resource_type `{}` is not an entity type name",
                    entry.resource_type
                )));
                continue;
            };
            if let (Some(schema), Some(action_type)) = (schema, &action_type) {
                let uid =
                    EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(&action));
                let applies = schema
                    .resources_for_action(&uid)
                    .map(|mut types| types.any(|t| *t == resource_type));
                match applies {
                    None => problems.push(problem(format!("the schema has no action {uid}"))),
                    Some(false) => problems.push(problem(format!(
                        "action {uid} does not apply to resources of type {resource_type}"
                    ))),
                    Some(true) => {}
                }
            }
            abilities.insert(
                name,
                Ability {
                    action,
                    resource_type: entry.resource_type,
                },
            );
        }
        if problems.is_empty() {
            Ok(Self {
                action_type: parsed.action_type,
                abilities,
            })
        } else {
            Err(LoadError::Abilities(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::from_cedarschema_str(
            "entity User; entity Doc; entity Folder;
             action read appliesTo { principal: User, resource: Doc };",
        )
        .unwrap()
        .0
    }

    fn problems(text: &str) -> Vec<String> {
        match Abilities::load(&BundleFile::new(ABILITIES, text), Some(&schema())) {
            Err(LoadError::Abilities(p)) => p.iter().map(ToString::to_string).collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn an_ability_is_its_action_unless_it_names_one() {
        let text = r#"{"action_type": "Action", "abilities": {
            "read": {"resource_type": "Doc"},
            "read_doc": {"action": "read", "resource_type": "Doc"}}}"#;
        let abilities =
            Abilities::load(&BundleFile::new(ABILITIES, text), Some(&schema())).unwrap();
        assert_eq!(abilities.abilities["read"].action, "read");
        assert_eq!(abilities.abilities["read_doc"].action, "read");
        assert_eq!(abilities.abilities["read_doc"].resource_type, "Doc");
    }

    #[test]
    fn problems_name_the_ability_and_its_line() {
        let got = problems(
            "{\"action_type\": \"Action\", \"abilities\": {\n\
             \"write\": {\"resource_type\": \"Doc\"},\n\
             \"read\": {\"resource_type\": \"Folder\"},\n\
             \"peek\": {\"action\": \"read\", \"resource_type\": \"Doc\", \"why\": 1},\n\
             \"odd\": {\"resource_type\": \"no such type!\"}}}",
        );
        assert_eq!(
            got,
            [
                "abilities.json:5:8: ability `odd`: resource_type `no such type!` is not an entity type name",
                "abilities.json:4:9: ability `peek`: unknown field `why`, expected `action` or `resource_type`",
                "abilities.json:3:9: ability `read`: action Action::\"read\" does not apply to resources of type Folder",
                "abilities.json:2:10: ability `write`: the schema has no action Action::\"write\"",
            ]
        );
        assert_eq!(
            problems(r#"{"action_type": "no such type!", "abilities": {}}"#),
            ["abilities.json: action_type `no such type!` is not an entity type name"]
        );
        assert_eq!(problems(r#"{"abilities": {}}"#).len(), 1);
    }
}
