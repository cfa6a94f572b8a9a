//! Panics contained: a bug inside the engine never unwinds into the host, never allows and never
//! loses a bundle. A decision that panics is a deny with an `internal` error; a token check that
//! panics is a `TokenError` of kind `internal`; a load that panics is a `LoadError::Internal`
//! and the engine keeps its bundle.
//!
//! With the `fault-injection` feature (test builds only; never enable it in a release), an
//! engine can be told to panic inside every decision and every reload, so each language's
//! tests can check that a panic surfaces as an error and a deny.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::query::QueryError;
use crate::token::TokenError;
use crate::wire::decision::{Decision, DecisionError, DecisionErrorKind};
use crate::wire::error::{LoadError, RequestError};

/// An engine's switch for injected panics: zero-sized and inert without `fault-injection`.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    #[cfg(feature = "fault-injection")]
    armed: std::sync::atomic::AtomicBool,
}

impl Faults {
    #[cfg(feature = "fault-injection")]
    pub(crate) fn arm(&self, on: bool) {
        self.armed.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Panics if armed.
    #[inline]
    pub(crate) fn trip(&self, during: &str) {
        #[cfg(feature = "fault-injection")]
        if self.armed.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("fault injected while {during}");
        }
        let _ = during;
    }
}

/// Runs a decision; a panic becomes a deny with an `internal` error naming it.
pub(crate) fn contain_decision(
    decide: impl FnOnce() -> Result<Decision, RequestError>,
) -> Result<Decision, RequestError> {
    catch_unwind(AssertUnwindSafe(decide)).unwrap_or_else(|panic| {
        Ok(Decision::denied_by(DecisionError {
            kind: DecisionErrorKind::Internal,
            policy: None,
            message: format!(
                "Arbiter panicked while deciding ({}); nothing was allowed",
                panic_message(&*panic)
            ),
        }))
    })
}

/// Runs a token check; a panic becomes a `TokenError` of kind `internal`.
pub(crate) fn contain_token<T>(
    check: impl FnOnce() -> Result<T, TokenError>,
) -> Result<T, TokenError> {
    catch_unwind(AssertUnwindSafe(check)).unwrap_or_else(|panic| {
        Err(TokenError::new(
            DecisionErrorKind::Internal,
            format!(
                "Arbiter panicked while checking the token ({})",
                panic_message(&*panic)
            ),
        ))
    })
}

/// Runs a load; a panic becomes `LoadError::Internal`.
pub(crate) fn contain_load<T>(load: impl FnOnce() -> Result<T, LoadError>) -> Result<T, LoadError> {
    catch_unwind(AssertUnwindSafe(load)).unwrap_or_else(|panic| {
        Err(LoadError::Internal(format!(
            "Arbiter panicked while loading the bundle ({}); nothing was changed",
            panic_message(&*panic)
        )))
    })
}

/// Runs a query; a panic becomes `QueryError::Internal`.
pub(crate) fn contain_query<T>(
    query: impl FnOnce() -> Result<T, QueryError>,
) -> Result<T, QueryError> {
    catch_unwind(AssertUnwindSafe(query)).unwrap_or_else(|panic| {
        Err(QueryError::Internal(format!(
            "Arbiter panicked while answering the query ({})",
            panic_message(&*panic)
        )))
    })
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_decision_is_a_deny_naming_it() {
        let decision = contain_decision(|| panic!("boom")).unwrap();
        assert!(!decision.allowed());
        assert!(decision.reasons.is_empty());
        assert_eq!(decision.errors[0].kind, DecisionErrorKind::Internal);
        assert!(decision.errors[0].message.contains("(boom)"));
    }

    #[test]
    fn a_panic_in_a_token_check_is_an_internal_token_error() {
        let err = contain_token::<()>(|| panic!("bad key")).unwrap_err();
        assert_eq!(err.kind, DecisionErrorKind::Internal);
        assert!(err.message.contains("(bad key)"));
    }

    #[test]
    fn a_panic_in_a_load_is_an_internal_error() {
        let err = contain_load::<()>(|| panic!("{}", String::from("bad"))).unwrap_err();
        assert_eq!((err.code(), err.kind()), (900, "internal"));
        assert!(err.to_string().contains("(bad)"));
    }
}

/// Injected panics through the public API (`make fault-test`: `cargo test --features
/// fault-injection fault::`): every way of deciding answers a deny with an `internal` error, a
/// reload fails with `internal` and keeps the old bundle, and disarming restores the engine.
#[cfg(all(test, feature = "fault-injection"))]
mod injected {
    use crate::{BundleFile, DecisionErrorKind, Effect, Engine, EntityUid, Request, RequestParts};

    const POLICIES: &str = r#"@id("all") permit (principal, action, resource);"#;
    const REQUEST: &str = r#"{"principal": {"type": "User", "id": "ann"}, "action": {"type": "Action", "id": "read"}, "resource": {"type": "Doc", "id": "d1"}}"#;

    fn uid(text: &str) -> EntityUid {
        text.parse().unwrap()
    }

    fn assert_internal_deny(decision: &crate::Decision) {
        assert_eq!(decision.decision, Effect::Deny);
        assert!(decision.reasons.is_empty());
        assert_eq!(decision.errors.len(), 1);
        assert_eq!(decision.errors[0].kind, DecisionErrorKind::Internal);
        assert!(decision.errors[0]
            .message
            .contains("fault injected while deciding"));
    }

    #[test]
    fn injected_panics_are_denies_and_failed_reloads() {
        let engine = Engine::from_files([BundleFile::new("p.cedar", POLICIES)]).unwrap();
        let typed = Request::new(
            uid(r#"User::"ann""#),
            uid(r#"Action::"read""#),
            uid(r#"Doc::"d1""#),
        );
        let parts = RequestParts {
            principal: Some(("User", "ann")),
            action: ("Action", "read"),
            resource: ("Doc", "d1"),
            context_json: None,
            entities_json: None,
            token: None,
            request_id: None,
        };
        assert!(engine.authorize(&typed).unwrap().allowed());

        engine.inject_panics(true);
        assert_internal_deny(&engine.authorize(&typed).unwrap());
        assert_internal_deny(&engine.decide_json(REQUEST, None).unwrap());
        assert_internal_deny(&engine.authorize_parts(&parts).unwrap());
        for d in engine.authorize_batch(&[typed.clone(), typed.clone()]) {
            assert_internal_deny(&d.unwrap());
        }
        for d in engine.authorize_parts_batch(&[parts, parts]) {
            assert_internal_deny(&d.unwrap());
        }
        let answers: serde_json::Value = serde_json::from_str(
            &engine
                .authorize_json_batch(&format!("[{REQUEST},{REQUEST}]"))
                .unwrap(),
        )
        .unwrap();
        for answer in answers.as_array().unwrap() {
            assert_eq!(answer["decision"], "deny");
            assert_eq!(answer["errors"][0]["kind"], "internal");
        }
        // The decision JSON says the same.
        let json: serde_json::Value =
            serde_json::from_str(&engine.authorize_json(REQUEST).unwrap()).unwrap();
        assert_eq!(
            (
                json["decision"].as_str(),
                json["errors"][0]["kind"].as_str()
            ),
            (Some("deny"), Some("internal"))
        );

        let err = engine
            .reload_from_files([BundleFile::new(
                "p.cedar",
                "forbid (principal, action, resource);",
            )])
            .unwrap_err();
        assert_eq!((err.code(), err.kind()), (900, "internal"));
        assert!(err.to_string().contains("fault injected while reloading"));

        engine.inject_panics(false);
        let d = engine.authorize(&typed).unwrap();
        assert_eq!(
            (d.decision, d.reasons),
            (Effect::Allow, vec!["all".to_owned()])
        );
    }

    #[test]
    fn injected_panics_in_many_threads_never_allow() {
        let engine = std::sync::Arc::new(
            Engine::from_files([BundleFile::new("p.cedar", POLICIES)]).unwrap(),
        );
        engine.inject_panics(true);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let engine = std::sync::Arc::clone(&engine);
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        assert_internal_deny(&engine.decide_json(REQUEST, None).unwrap());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The engine is whole after all those panics.
        engine.inject_panics(false);
        assert!(engine.decide_json(REQUEST, None).unwrap().allowed());
    }
}
