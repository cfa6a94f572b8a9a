//! `Arbiter::Decision` and `Arbiter::DecisionError`: frozen values over core's decision.

use arbiter_core::{Decision as CoreDecision, DecisionErrorKind, Effect};
use magnus::typed_data::{self};
use magnus::value::ReprValue;
use magnus::{method, prelude::*, Error, RArray, RHash, RModule, Ruby, Value};

/// An error met while deciding: a policy that failed to evaluate (`policy` set), or a token
/// that was refused.
#[magnus::wrap(
    class = "Arbiter::DecisionError",
    free_immediately,
    size,
    frozen_shareable
)]
#[derive(Clone, PartialEq, Eq, Hash)]
struct DecisionError {
    kind: DecisionErrorKind,
    policy: Option<String>,
    message: String,
}

impl DecisionError {
    fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    fn policy(&self) -> Option<String> {
        self.policy.clone()
    }

    fn message(&self) -> String {
        self.message.clone()
    }

    fn inspect(ruby: &Ruby, rb_self: &Self) -> String {
        let inspect = |value: Value| value.inspect();
        format!(
            "#<Arbiter::DecisionError kind={} policy={} message={}>",
            inspect(ruby.into_value(rb_self.kind.as_str())),
            inspect(ruby.into_value(rb_self.policy.as_deref())),
            inspect(ruby.into_value(rb_self.message.as_str()))
        )
    }

    /// `{kind:, policy:, message:}`, as the contract's decision JSON has it.
    fn to_h(ruby: &Ruby, rb_self: &Self) -> Result<RHash, Error> {
        let hash = ruby.hash_new();
        hash.aset(ruby.to_symbol("kind"), rb_self.kind.as_str())?;
        hash.aset(ruby.to_symbol("policy"), rb_self.policy.as_deref())?;
        hash.aset(ruby.to_symbol("message"), rb_self.message.as_str())?;
        Ok(hash)
    }
}

/// The answer to a request.
#[magnus::wrap(class = "Arbiter::Decision", free_immediately, size, frozen_shareable)]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct Decision {
    decision: Effect,
    reasons: Vec<String>,
    errors: Vec<DecisionError>,
}

impl From<CoreDecision> for Decision {
    fn from(d: CoreDecision) -> Self {
        Self {
            decision: d.decision,
            reasons: d.reasons,
            errors: d
                .errors
                .into_iter()
                .map(|e| DecisionError {
                    kind: e.kind,
                    policy: e.policy,
                    message: e.message,
                })
                .collect(),
        }
    }
}

/// How many distinct decisions of one `authorize_many` are looked for among those made.
pub(crate) const MAX_SHARED_DECISIONS: usize = 16;

impl Decision {
    /// A frozen Ruby Decision.
    pub(crate) fn object(ruby: &Ruby, decision: CoreDecision) -> Value {
        let object = ruby.obj_wrap(Decision::from(decision)).as_value();
        object.freeze();
        object
    }

    fn allowed(&self) -> bool {
        self.decision == Effect::Allow
    }

    fn reasons(ruby: &Ruby, rb_self: &Self) -> RArray {
        ruby.ary_from_iter(rb_self.reasons.iter().map(String::as_str))
    }

    fn errors(ruby: &Ruby, rb_self: &Self) -> RArray {
        ruby.ary_from_iter(rb_self.errors.iter().cloned())
    }

    /// `{decision: "allow" | "deny", reasons:, errors: [{kind:, policy:, message:}]}`, the
    /// contract's decision JSON with Symbol keys.
    fn to_h(ruby: &Ruby, rb_self: &Self) -> Result<RHash, Error> {
        let errors = ruby.ary_new_capa(rb_self.errors.len());
        for error in &rb_self.errors {
            errors.push(DecisionError::to_h(ruby, error)?)?;
        }
        let hash = ruby.hash_new();
        hash.aset(ruby.to_symbol("decision"), rb_self.decision.as_str())?;
        hash.aset(ruby.to_symbol("reasons"), Decision::reasons(ruby, rb_self))?;
        hash.aset(ruby.to_symbol("errors"), errors)?;
        Ok(hash)
    }

    fn inspect(ruby: &Ruby, rb_self: &Self) -> String {
        format!(
            "#<Arbiter::Decision allowed={} reasons={} errors={}>",
            rb_self.allowed(),
            Decision::reasons(ruby, rb_self).inspect(),
            rb_self.errors.len()
        )
    }
}

/// Defines `Arbiter::Decision` and `Arbiter::DecisionError`.
pub(crate) fn init(ruby: &Ruby, module: RModule) -> Result<(), Error> {
    let decision = module.define_class("Decision", ruby.class_object())?;
    decision.undef_default_alloc_func();
    decision.define_method("allowed?", method!(Decision::allowed, 0))?;
    decision.define_method("reasons", method!(Decision::reasons, 0))?;
    decision.define_method("errors", method!(Decision::errors, 0))?;
    decision.define_method("inspect", method!(Decision::inspect, 0))?;
    decision.define_method("to_h", method!(Decision::to_h, 0))?;

    let error = module.define_class("DecisionError", ruby.class_object())?;
    error.undef_default_alloc_func();
    error.define_method("kind", method!(DecisionError::kind, 0))?;
    error.define_method("policy", method!(DecisionError::policy, 0))?;
    error.define_method("message", method!(DecisionError::message, 0))?;
    error.define_method("inspect", method!(DecisionError::inspect, 0))?;
    error.define_method("to_h", method!(DecisionError::to_h, 0))?;
    // Both are values: equal when every field is.
    for name in ["==", "eql?"] {
        decision.define_method(name, method!(<Decision as typed_data::IsEql>::is_eql, 1))?;
        error.define_method(
            name,
            method!(<DecisionError as typed_data::IsEql>::is_eql, 1),
        )?;
    }
    decision.define_method("hash", method!(<Decision as typed_data::Hash>::hash, 0))?;
    error.define_method(
        "hash",
        method!(<DecisionError as typed_data::Hash>::hash, 0),
    )?;
    Ok(())
}
