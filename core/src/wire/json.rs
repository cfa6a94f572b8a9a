//! JSON that every reader reads alike: an object may not give a key twice. serde_json keeps
//! the last of two, other parsers keep the first, so a host that checked the first value must
//! not be overridden by the second (the JWT path refuses duplicate claims the same way).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Checks that no object in `json` (at any depth) gives a key twice. The error names the key,
/// with serde's line and column; `json` that is not JSON passes, for its parser to word.
pub(crate) fn unique_keys(json: &str) -> Result<(), serde_json::Error> {
    match serde_json::from_str::<Unique>(json) {
        Err(e) if e.is_data() => Err(e),
        _ => Ok(()),
    }
}

/// Any JSON value whose objects repeat no key.
struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut keys: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if keys.contains(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key `{key}` is given twice in one object"
                )));
            }
            map.next_value::<Unique>()?;
            keys.insert(key);
        }
        Ok(Unique)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_at_any_depth_is_refused() {
        for json in [
            r#"{"a": 0, "a": 50}"#,
            r#"{"x": [{"b": 1, "c": 2, "b": 1}]}"#,
            r#"[{"__entity": {"type": "T", "type": "U", "id": "1"}}]"#,
        ] {
            let e = unique_keys(json).unwrap_err();
            assert!(e.to_string().contains("is given twice"), "{json}: {e}");
        }
        for json in [
            r#"{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}"#,
            "[1, 2]",
            "{",
            "\"x\"",
        ] {
            assert!(unique_keys(json).is_ok(), "{json}");
        }
    }
}
