//! Reading claims as Cedar values: strictly typed, a claim of the wrong type is an error and is
//! never treated as absent.

use cedar_policy::{EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde_json::Value;

use super::config::ClaimType;
use super::TokenError;

/// A claim read as a Cedar value.
pub(crate) fn read_claim(
    name: &str,
    value: &Value,
    as_type: ClaimType,
    entity_type: Option<&EntityTypeName>,
    prefix: Option<&str>,
) -> Result<RestrictedExpression, TokenError> {
    let wrong = |expected: &str| {
        TokenError::invalid_claim(format!(
            "claim `{name}` must be {expected}, got {}",
            describe(value)
        ))
    };
    let strip = |s: &'_ str| -> Result<String, TokenError> {
        match prefix {
            None => Ok(s.to_owned()),
            Some(p) => s.strip_prefix(p).map(str::to_owned).ok_or_else(|| {
                TokenError::invalid_claim(format!("claim `{name}` must start with `{p}`"))
            }),
        }
    };
    Ok(match as_type {
        ClaimType::String => RestrictedExpression::new_string(strip(
            value.as_str().ok_or_else(|| wrong("a string"))?,
        )?),
        ClaimType::Long => {
            RestrictedExpression::new_long(value.as_i64().ok_or_else(|| wrong("an integer"))?)
        }
        ClaimType::Bool => {
            RestrictedExpression::new_bool(value.as_bool().ok_or_else(|| wrong("a boolean"))?)
        }
        ClaimType::BoolString => match value.as_str() {
            Some("true") => RestrictedExpression::new_bool(true),
            Some("false") => RestrictedExpression::new_bool(false),
            _ => return Err(wrong(r#"the string "true" or "false""#)),
        },
        ClaimType::LongString => {
            let s = value.as_str().ok_or_else(|| wrong("a string of digits"))?;
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(wrong("a string of digits"));
            }
            RestrictedExpression::new_long(
                s.parse()
                    .map_err(|_| wrong("a string of digits that fits 64 bits"))?,
            )
        }
        ClaimType::StringSet => {
            let items: Vec<&str> = match value {
                Value::String(s) => vec![s.as_str()],
                Value::Array(items) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .ok_or_else(|| wrong("a string or an array of strings"))
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(wrong("a string or an array of strings")),
            };
            RestrictedExpression::new_set(
                items
                    .into_iter()
                    .map(|s| RestrictedExpression::new_string(s.to_owned())),
            )
        }
        ClaimType::Entity => {
            let id = match value {
                Value::String(s) => strip(s)?,
                Value::Number(n) if n.is_u64() || n.is_i64() => strip(&n.to_string())?,
                _ => return Err(wrong("a string or an integer id")),
            };
            let entity_type = entity_type.ok_or_else(|| {
                TokenError::invalid_claim(format!("claim `{name}`: no entity type configured"))
            })?;
            RestrictedExpression::new_entity_uid(EntityUid::from_type_name_and_id(
                entity_type.clone(),
                EntityId::new(id),
            ))
        }
    })
}

/// A principal or entity id from a claim: a string, or an integer written in decimal.
pub(crate) fn id_from_claim(
    name: &str,
    value: &Value,
    prefix: Option<&str>,
) -> Result<String, TokenError> {
    let id = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        other => {
            return Err(TokenError::invalid_claim(format!(
                "claim `{name}` must be a string or an integer id, got {}",
                describe(other)
            )))
        }
    };
    match prefix {
        None => Ok(id),
        Some(p) => id
            .strip_prefix(p)
            .filter(|rest| !rest.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                TokenError::invalid_claim(format!(
                    "claim `{name}` must start with `{p}` followed by an id"
                ))
            }),
    }
}

/// The JSON type of a value, for error messages (never the value itself).
pub(crate) fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
