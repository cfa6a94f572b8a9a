//! `sql/mapping.json`: how a bundle's entities are stored in the host's database, for queries.
//!
//! Each mapped entity type names its table and id column (ids are integers: a Cedar id matches
//! a row only when it is the row's id written in decimal), the column holding its parent (and,
//! for PostgreSQL, the column of GitLab's `traversal_ids`), and its attributes and tags:
//!
//! - a column of the entity's own row: `{"column": "archived", "type": "bool"}` (`long`,
//!   `bool`, `string` or an entity type, whose id the column holds), optionally with `values`,
//!   a map from the Cedar string to the stored integer, and `optional` for a nullable column
//!   (an absent attribute);
//! - a record kept in a table with one row per entity: `{"table", "key", "attributes": {...}}`;
//! - a set kept in a table with one row per element: `{"table", "key", "elements": {column}}`;
//! - tags, kept in a table with one row per tag: `{"table", "key", "tag": "user_id",
//!   "attributes": {...}}`, each tag a record of those attributes.
//!
//! The file is checked at load; a mistake is a `sql_mapping` load error naming the file and
//! the field (and the line, where the JSON does not read): names must be plain SQL identifiers, none of the form `q1`, `q2`, ...
//! (the translator's aliases), types must be mapped, and a `values` map one-to-one.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::bundle::{parse_json, BundleFile};
use crate::wire::error::{LoadError, Problem};

/// The mapping's place in a bundle.
pub(crate) const SQL_MAPPING: &str = "sql/mapping.json";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlMapping {
    pub(crate) entity_types: BTreeMap<String, EntityMapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntityMapping {
    /// The entity's own table and its id column, when it has one.
    pub(crate) table: Option<String>,
    #[serde(default = "id_column")]
    pub(crate) id: String,
    /// The column holding the id of the entity's one parent.
    pub(crate) parent: Option<Parent>,
    /// PostgreSQL: the column of the ids of the entity and all its ancestors (GitLab's
    /// `namespaces.traversal_ids`), used for `in` instead of walking `parent`.
    pub(crate) traversal_ids: Option<String>,
    #[serde(default)]
    pub(crate) attributes: BTreeMap<String, Attribute>,
    pub(crate) tags: Option<Tags>,
}

fn id_column() -> String {
    "id".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Parent {
    pub(crate) column: String,
    #[serde(rename = "type")]
    pub(crate) entity_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Attribute {
    Column(Column),
    Set(SetTable),
    Record(RecordTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Column {
    pub(crate) column: String,
    /// `long`, `bool`, `string`, or an entity type (the column holds the entity's id).
    #[serde(rename = "type", default)]
    pub(crate) kind: Option<String>,
    /// Cedar string -> stored integer.
    pub(crate) values: Option<BTreeMap<String, i64>>,
    #[serde(default)]
    pub(crate) optional: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetTable {
    pub(crate) table: String,
    pub(crate) key: String,
    pub(crate) elements: Column,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordTable {
    pub(crate) table: String,
    pub(crate) key: String,
    pub(crate) attributes: BTreeMap<String, Column>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tags {
    pub(crate) table: String,
    pub(crate) key: String,
    pub(crate) tag: String,
    pub(crate) attributes: BTreeMap<String, Column>,
}

/// What a column holds, as the translator reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind<'m> {
    Long,
    Bool,
    String,
    /// A string stored as an integer through `values`.
    Mapped(&'m BTreeMap<String, i64>),
    /// The id of an entity of this type.
    Entity(&'m str),
}

impl Column {
    pub(crate) fn kind(&self) -> Kind<'_> {
        match (&self.values, self.kind.as_deref()) {
            (Some(values), _) => Kind::Mapped(values),
            (None, Some("long") | None) => Kind::Long,
            (None, Some("bool")) => Kind::Bool,
            (None, Some("string")) => Kind::String,
            (None, Some(entity_type)) => Kind::Entity(entity_type),
        }
    }
}

impl SqlMapping {
    /// Reads and checks `sql/mapping.json`.
    pub(crate) fn load(file: &BundleFile) -> Result<Self, LoadError> {
        let mapping: Self = parse_json(file).map_err(LoadError::SqlMapping)?;
        let mut problems = Vec::new();
        let mut problem = |at: String, message: &str| {
            problems.push(Problem::in_file(&file.path, format!("{at}: {message}")));
        };
        // Plain identifiers, none of the form of the translator's own aliases (`q1`, ...).
        let identifier = |name: &str| {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && !name
                    .strip_prefix(crate::query::sql::ALIAS)
                    .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
        };
        let entity_type = |name: &str| name.parse::<cedar_policy_core::ast::EntityType>().is_ok();
        for (name, entity) in &mapping.entity_types {
            let at = |field: &str| format!("entity_types.{name}.{field}");
            if !entity_type(name) {
                problem(format!("entity_types.{name}"), "not an entity type name");
            }
            let mut names: Vec<(String, &str)> = vec![(at("id"), &entity.id)];
            if let Some(table) = &entity.table {
                names.push((at("table"), table));
            }
            if let Some(parent) = &entity.parent {
                names.push((at("parent.column"), &parent.column));
                if !mapping.entity_types.contains_key(&parent.entity_type) {
                    let t = &parent.entity_type;
                    problem(
                        at("parent.type"),
                        &format!("`{t}` is not a mapped entity type"),
                    );
                }
                if entity.table.is_none() {
                    problem(
                        at("parent"),
                        "a parent column needs the entity's own `table`",
                    );
                }
            }
            if let Some(traversal) = &entity.traversal_ids {
                names.push((at("traversal_ids"), traversal));
            }
            let mut columns: Vec<(String, &Column)> = Vec::new();
            for (attr, mapped) in &entity.attributes {
                let at = at(&format!("attributes.{attr}"));
                match mapped {
                    Attribute::Column(c) => {
                        if entity.table.is_none() {
                            problem(
                                at.clone(),
                                "a column attribute needs the entity's own `table`",
                            );
                        }
                        columns.push((at, c));
                    }
                    Attribute::Set(s) => {
                        names.push((format!("{at}.table"), &s.table));
                        names.push((format!("{at}.key"), &s.key));
                        columns.push((format!("{at}.elements"), &s.elements));
                    }
                    Attribute::Record(r) => {
                        names.push((format!("{at}.table"), &r.table));
                        names.push((format!("{at}.key"), &r.key));
                        for (field, c) in &r.attributes {
                            columns.push((format!("{at}.attributes.{field}"), c));
                        }
                    }
                }
            }
            if let Some(tags) = &entity.tags {
                names.push((at("tags.table"), &tags.table));
                names.push((at("tags.key"), &tags.key));
                names.push((at("tags.tag"), &tags.tag));
                for (field, c) in &tags.attributes {
                    columns.push((at(&format!("tags.attributes.{field}")), c));
                }
            }
            for (at, c) in columns {
                names.push((format!("{at}.column"), &c.column));
                if c.values.is_some() && c.kind.is_some() {
                    problem(at.clone(), "a column with `values` is a string stored as an integer; it takes no `type`");
                }
                if let Some(values) = &c.values {
                    let stored: std::collections::BTreeSet<&i64> = values.values().collect();
                    if stored.len() != values.len() {
                        problem(at.clone(), "two `values` are stored as the same integer");
                    }
                }
                if let Kind::Entity(t) = c.kind() {
                    if !mapping.entity_types.contains_key(t) {
                        problem(at, &format!("type `{t}` is not `long`, `bool`, `string` or a mapped entity type"));
                    }
                }
            }
            for (at, name) in names {
                if !identifier(name) {
                    problem(
                        at,
                        &format!("`{name}` is not a plain SQL identifier (letters, digits, `_`)"),
                    );
                }
            }
        }
        if problems.is_empty() {
            Ok(mapping)
        } else {
            Err(LoadError::SqlMapping(problems))
        }
    }

    pub(crate) fn entity(&self, entity_type: &str) -> Option<&EntityMapping> {
        self.entity_types.get(entity_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match SqlMapping::load(&BundleFile::new(SQL_MAPPING, text)) {
            Err(LoadError::SqlMapping(p)) => p.iter().map(ToString::to_string).collect(),
            other => panic!("expected mapping problems, got {other:?}"),
        }
    }

    #[test]
    fn identifiers_are_checked_so_nothing_is_spliced() {
        let p = problems(
            r#"{"entity_types": {"A::P": {"table": "p; drop table x", "attributes": {"v": {"column": "v)"}}}}}"#,
        );
        assert!(
            p.iter().any(
                |p| p.contains("entity_types.A::P.table") && p.contains("plain SQL identifier")
            ),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.contains("entity_types.A::P.attributes.v.column")),
            "{p:?}"
        );
    }

    #[test]
    fn an_unknown_field_names_its_line() {
        let p = problems("{\"entity_types\": {\n \"A::P\": {\"tabel\": \"p\"}}}");
        assert!(p[0].contains(":2:") && p[0].contains("tabel"), "{p:?}");
    }

    #[test]
    fn values_are_one_to_one_and_names_leave_the_aliases_alone() {
        let p = problems(
            r#"{"entity_types": {"A::P": {"table": "q1", "attributes": {"v": {"column": "v", "values": {"a": 1, "b": 1}}}}}}"#,
        );
        assert!(p.iter().any(|p| p.contains("the same integer")), "{p:?}");
        assert!(
            p.iter().any(|p| p.contains("entity_types.A::P.table")),
            "{p:?}"
        );
    }

    #[test]
    fn an_entity_column_names_a_mapped_type() {
        let p = problems(
            r#"{"entity_types": {"A::P": {"table": "p", "attributes": {"o": {"column": "o", "type": "A::Owner"}}}}}"#,
        );
        assert!(p[0].contains("`A::Owner` is not"), "{p:?}");
    }
}
