//! A fast reader for the context most requests carry, and for the attributes and tags of plain
//! entities: plain JSON (numbers that are integers, strings, booleans, arrays, objects). Cedar's own reader goes through an untagged JSON enum
//! that builds and discards an error per value; this one builds Cedar values directly.
//!
//! It only takes JSON whose meaning Cedar would not read differently: no `__entity`, `__extn`
//! or other `__` escapes, no object shaped like an implicit entity reference, no fractional or
//! out-of-range numbers, no null, no duplicate keys. Anything else, and any context the schema
//! then refuses, goes to Cedar's reader, which decides (and words the error) as always.
//!
//! With `REFS` (the static entities of a bundle with a schema), `{"type": T, "id": I}` and
//! `{"__entity": {"type": T, "id": I}}` read as the entity `T::"I"`, which is how Cedar reads
//! them where the schema expects an entity. Where it expects anything else, the compiled shapes
//! refuse the value, and the whole file goes to Cedar's reader.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::Context;
use cedar_policy_core::ast::{self, Value};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use smol_str::SmolStr;

/// The context `json` holds, if it is plain JSON; `None` leaves it to Cedar's reader.
pub(crate) fn plain_context(json: &str) -> Option<Context> {
    match serde_json::from_str::<Plain>(json).ok()?.0.value_kind() {
        ast::ValueKind::Record(record) => {
            Some(Context::from(ast::Context::Value(Arc::clone(record))))
        }
        _ => None,
    }
}

struct Plain<const REFS: bool = false>(Value);

/// A record of plain JSON (the attributes or tags of an entity); with `REFS`, entity references
/// too.
#[derive(Default)]
pub(crate) struct PlainRecord<const REFS: bool = false>(pub(crate) BTreeMap<SmolStr, Value>);

impl<'de, const REFS: bool> Deserialize<'de> for PlainRecord<REFS> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Plain(value) = deserializer.deserialize_map(PlainVisitor::<REFS>)?;
        match value.value_kind() {
            ast::ValueKind::Record(record) => Ok(Self(record.as_ref().clone())),
            _ => Err(de::Error::custom("not a record")),
        }
    }
}

impl<'de, const REFS: bool> Deserialize<'de> for Plain<REFS> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PlainVisitor::<REFS>)
    }
}

struct PlainVisitor<const REFS: bool>;

/// The body of an explicit `__entity` escape.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeAndId {
    #[serde(rename = "type")]
    type_name: String,
    id: String,
}

/// The entity type `name`, when it is written as Cedar writes it.
pub(crate) fn canonical_type_name(name: &str) -> Option<cedar_policy::EntityTypeName> {
    cedar_policy::EntityTypeName::from_str(name)
        .ok()
        .filter(|t| t.to_string() == name)
}

/// The entity `type_name::"id"`, when `type_name` is written as Cedar writes it.
fn entity_value(type_name: &str, id: &str) -> Option<Value> {
    let parsed = canonical_type_name(type_name)?;
    let uid: ast::EntityUID =
        cedar_policy::EntityUid::from_type_name_and_id(parsed, cedar_policy::EntityId::new(id))
            .into();
    Some(Value::from(uid))
}

impl<'de, const REFS: bool> Visitor<'de> for PlainVisitor<REFS> {
    type Value = Plain<REFS>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("plain JSON")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Plain<REFS>, E> {
        Ok(Plain(Value::from(b)))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Plain<REFS>, E> {
        Ok(Plain(Value::from(n)))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Plain<REFS>, E> {
        i64::try_from(n)
            .map(|n| Plain(Value::from(n)))
            .map_err(|_| E::custom("out of range"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Plain<REFS>, E> {
        Err(E::custom("not an integer"))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Plain<REFS>, E> {
        Ok(Plain(Value::from(SmolStr::new(s))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Plain<REFS>, A::Error> {
        let mut values = Vec::new();
        while let Some(Plain::<REFS>(value)) = seq.next_element()? {
            values.push(value);
        }
        Ok(Plain(Value::set(values, None)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Plain<REFS>, A::Error> {
        let mut record = BTreeMap::new();
        while let Some(key) = map.next_key::<SmolStr>()? {
            if REFS && key == "__entity" && record.is_empty() {
                let TypeAndId { type_name, id } = map.next_value()?;
                return match (map.next_key::<SmolStr>()?, entity_value(&type_name, &id)) {
                    (None, Some(uid)) => Ok(Plain(uid)),
                    _ => Err(de::Error::custom("not an entity reference")),
                };
            }
            if key.starts_with("__") {
                return Err(de::Error::custom("an escape"));
            }
            let Plain::<REFS>(value) = map.next_value()?;
            if record.insert(key, value).is_some() {
                return Err(de::Error::custom("a duplicate key"));
            }
        }
        // `{"type": ..., "id": ...}` stands for an entity where the schema says so.
        if record.len() == 2 && record.contains_key("type") && record.contains_key("id") {
            let field = |name: &str| match record.get(name).map(Value::value_kind) {
                Some(ast::ValueKind::Lit(ast::Literal::String(s))) => Some(s.as_str()),
                _ => None,
            };
            return match (REFS, field("type"), field("id")) {
                (true, Some(type_name), Some(id)) => entity_value(type_name, id)
                    .map(Plain)
                    .ok_or_else(|| de::Error::custom("not an entity reference")),
                _ => Err(de::Error::custom("an entity reference")),
            };
        }
        Ok(Plain(Value::record_arc(Arc::new(record), None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_json_reads_as_cedar_reads_it() {
        for json in [
            r#"{}"#,
            r#"{"access_level": 30, "admin_mode": false, "name": "x", "scopes": ["a", "b", "a"]}"#,
            r#"{"branch": {"name": "main", "protected": true, "push_access_level": 40}, "n": -7}"#,
        ] {
            let ours = plain_context(json).expect("plain");
            let cedar = Context::from_json_str(json, None).unwrap();
            assert_eq!(
                ours.to_json_value().unwrap(),
                cedar.to_json_value().unwrap(),
                "{json}"
            );
        }
    }

    #[test]
    fn anything_else_is_left_to_cedar() {
        for json in [
            r#"{"who": {"__entity": {"type": "User", "id": "1"}}}"#,
            r#"{"ip": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}}}"#,
            r#"{"who": {"type": "User", "id": "1"}}"#,
            r#"{"x": 1.5}"#,
            r#"{"x": 18446744073709551615}"#,
            r#"{"x": null}"#,
            r#"{"x": 1, "x": 2}"#,
            r#"[1]"#,
            r#"{"x": "#,
        ] {
            assert!(plain_context(json).is_none(), "{json}");
        }
    }
}
