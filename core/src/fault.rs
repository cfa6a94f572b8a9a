//! Panics contained: a bug inside the engine never unwinds into the host, never allows and never
//! loses a bundle. A decision that panics is a deny with an `internal` error; a load that panics
//! is a `LoadError::Internal` and the engine keeps its bundle.
//!
//! With the `fault-injection` feature (test builds only; never enable it in a release), an
//! engine can be told to panic inside every decision and every reload, so each language's
//! tests can check that a panic surfaces as an error and a deny.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::decision::{Decision, DecisionError, DecisionErrorKind};
use crate::error::{LoadError, RequestError};

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

/// Runs a load; a panic becomes `LoadError::Internal`.
pub(crate) fn contain_load<T>(load: impl FnOnce() -> Result<T, LoadError>) -> Result<T, LoadError> {
    catch_unwind(AssertUnwindSafe(load)).unwrap_or_else(|panic| {
        Err(LoadError::Internal(format!(
            "Arbiter panicked while loading the bundle ({}); nothing was changed",
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
    fn a_panic_in_a_load_is_an_internal_error() {
        let err = contain_load::<()>(|| panic!("{}", String::from("bad"))).unwrap_err();
        assert_eq!((err.code(), err.kind()), (900, "internal"));
        assert!(err.to_string().contains("(bad)"));
    }
}
