//! The first-party caveat language of Arbiter's macaroons. One predicate per caveat:
//!
//! | caveat | holds when |
//! |---|---|
//! | `user = 42` | the principal is `42` (named `id_caveat`); the principal itself comes from the root identifier (or a fixed `id`), so this caveat only narrows |
//! | `action = push_code` | the request's action id is `push_code` (or its uid, if written in full) |
//! | `action in download_code,push_code` | the action is one of the listed ones |
//! | `resource = Gitlab::Project::"7"` | the request's resource is exactly that entity |
//! | `expires < 2026-12-01T00:00:00Z` | the request is decided before that instant (RFC 3339) |
//!
//! Any other caveat fails verification (`caveat_not_satisfied`): a verifier that does not
//! understand a restriction must not ignore it.

use std::str::FromStr;

use cedar_policy::EntityUid;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::TokenError;
use crate::wire::decision::DecisionErrorKind;

/// A parsed first-party caveat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caveat {
    /// `<name> = <value>`: holds only for that principal (`name` is the configured `id_caveat`).
    Principal(String),
    /// The action must be one of these (ids, or uids written in full).
    Action(Vec<String>),
    /// The resource must be this entity.
    Resource(EntityUid),
    /// Valid strictly before this Unix second.
    Expires(i64),
}

fn unsatisfied(message: String) -> TokenError {
    TokenError::new(DecisionErrorKind::CaveatNotSatisfied, message)
}

impl Caveat {
    /// Parses one predicate; `principal_name` is the caveat that names the principal.
    pub(crate) fn parse(predicate: &[u8], principal_name: &str) -> Result<Self, TokenError> {
        let text = std::str::from_utf8(predicate)
            .map_err(|_| unsatisfied("a caveat is not UTF-8 text".into()))?;
        let unknown = || unsatisfied("a caveat is not one this verifier understands".into());
        let (name, rest) = text.trim().split_once(' ').ok_or_else(unknown)?;
        let rest = rest.trim_start();
        let (op, value) = rest
            .split_once(' ')
            .map(|(o, v)| (o, v.trim()))
            .ok_or_else(unknown)?;
        if value.is_empty() {
            return Err(unknown());
        }
        match (name, op) {
            (n, "=") if n == principal_name => Ok(Self::Principal(value.to_owned())),
            ("action", "=") => Ok(Self::Action(vec![value.to_owned()])),
            ("action", "in") => Ok(Self::Action(
                value.split(',').map(|a| a.trim().to_owned()).collect(),
            )),
            ("resource", "=") => EntityUid::from_str(value)
                .map(Self::Resource)
                .map_err(|_| unsatisfied("a `resource = ...` caveat names no entity uid".into())),
            ("expires", "<") => OffsetDateTime::parse(value, &Rfc3339)
                .map(|t| Self::Expires(t.unix_timestamp()))
                .map_err(|_| {
                    unsatisfied("an `expires < ...` caveat is not an RFC 3339 time".into())
                }),
            _ => Err(unknown()),
        }
    }

    /// Checks a request-dependent caveat.
    pub(crate) fn check(&self, action: &EntityUid, resource: &EntityUid) -> Result<(), TokenError> {
        match self {
            Self::Action(allowed) => {
                let id = action.id().unescaped();
                let full = action.to_string();
                if allowed.iter().any(|a| *a == id || *a == full) {
                    Ok(())
                } else {
                    Err(unsatisfied(format!(
                        "the token does not allow action `{id}`"
                    )))
                }
            }
            Self::Resource(uid) if uid == resource => Ok(()),
            Self::Resource(_) => Err(unsatisfied(
                "the token is limited to another resource".into(),
            )),
            Self::Principal(_) | Self::Expires(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> EntityUid {
        EntityUid::from_str(s).unwrap()
    }

    #[test]
    fn the_documented_caveats_parse() {
        assert_eq!(
            Caveat::parse(b"user = 42", "user"),
            Ok(Caveat::Principal("42".into()))
        );
        assert_eq!(
            Caveat::parse(b"action = push_code", "user"),
            Ok(Caveat::Action(vec!["push_code".into()]))
        );
        assert_eq!(
            Caveat::parse(b"action in download_code, push_code", "user"),
            Ok(Caveat::Action(vec![
                "download_code".into(),
                "push_code".into()
            ]))
        );
        assert_eq!(
            Caveat::parse(br#"resource = Gitlab::Project::"7""#, "user"),
            Ok(Caveat::Resource(uid(r#"Gitlab::Project::"7""#)))
        );
        assert_eq!(
            Caveat::parse(b"expires < 2026-12-01T00:00:00Z", "user"),
            Ok(Caveat::Expires(1_796_083_200))
        );
    }

    #[test]
    fn anything_else_is_not_satisfied() {
        for bad in [
            &b"account = 3735928559"[..],
            b"user 42",
            b"action = ",
            b"expires < tomorrow",
            b"resource = 7",
            b"\xff",
        ] {
            let err = Caveat::parse(bad, "user").unwrap_err();
            assert_eq!(err.kind, DecisionErrorKind::CaveatNotSatisfied, "{bad:?}");
        }
    }

    #[test]
    fn action_and_resource_caveats_check_the_request() {
        let push = uid(r#"Gitlab::Action::"push_code""#);
        let read = uid(r#"Gitlab::Action::"read_project""#);
        let p7 = uid(r#"Gitlab::Project::"7""#);
        let p8 = uid(r#"Gitlab::Project::"8""#);
        let action = Caveat::Action(vec!["push_code".into()]);
        assert!(action.check(&push, &p7).is_ok());
        assert!(action.check(&read, &p7).is_err());
        let full = Caveat::Action(vec![r#"Gitlab::Action::"push_code""#.into()]);
        assert!(full.check(&push, &p7).is_ok());
        let resource = Caveat::Resource(p7.clone());
        assert!(resource.check(&push, &p7).is_ok());
        assert!(resource.check(&push, &p8).is_err());
    }
}
