//! Errors: core's error table as `Arbiter::Error` subclasses, raised from failures.

use arbiter_core::ffi::guarded;
use arbiter_core::{CallError, ErrorKind};
use magnus::value::{Lazy, ReprValue};
use magnus::{prelude::*, Error, ExceptionClass, RModule, RObject, Ruby, Value};

/// The `Arbiter::Error` subclass of a kind of core's error table: `PolicyParseError` for
/// `policy_parse`. Every kind has one, defined at load from the table.
fn error_class_name(kind: ErrorKind) -> String {
    format!("{}Error", kind.name())
}

pub(crate) static ARBITER: Lazy<RModule> = Lazy::new(|ruby| {
    ruby.class_object()
        .const_get("Arbiter")
        .expect("Arbiter is defined at load")
});

/// An error before it becomes a Ruby exception.
pub(crate) type Failure = CallError;

/// Raising a [`Failure`] as the `Arbiter::Error` subclass for its kind.
pub(crate) trait RubyError {
    fn exception(&self, ruby: &Ruby) -> Result<Value, Error>;
    fn into_error(self, ruby: &Ruby) -> Error;
}

impl RubyError for Failure {
    /// The exception object: the class for the kind, with `@code` and `@kind` set.
    fn exception(&self, ruby: &Ruby) -> Result<Value, Error> {
        let class: ExceptionClass = ruby
            .get_inner(&ARBITER)
            .const_get(error_class_name(self.kind))?;
        let exception = class.new_instance((self.message.as_str(),))?;
        let object = RObject::from_value(exception.as_value()).expect("exceptions are objects");
        object.ivar_set("@code", self.code())?;
        object.ivar_set("@kind", self.kind.as_str())?;
        Ok(exception.as_value())
    }

    fn into_error(self, ruby: &Ruby) -> Error {
        match self.exception(ruby) {
            Ok(exception) => Error::from(
                magnus::Exception::from_value(exception).expect("an exception instance"),
            ),
            Err(e) => e,
        }
    }
}

/// [`guarded`], a failure raised as the `Arbiter::Error` for its kind.
pub(crate) fn guard<T>(ruby: &Ruby, f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Error> {
    guarded(f).map_err(|e| e.into_error(ruby))
}

/// Defines `Arbiter::Error`, a subclass per kind of core's error table, and `ERROR_KINDS`.
pub(crate) fn init(ruby: &Ruby, module: RModule) -> Result<(), Error> {
    let base = module.define_error("Error", ruby.exception_standard_error())?;
    // One class per kind of core's error table, and the table itself ([code, kind, class name]),
    // which the tests walk.
    let table = ruby.ary_new();
    for kind in ErrorKind::ALL {
        let name = error_class_name(kind);
        module.define_error(name.as_str(), base)?;
        let row = ruby.ary_new_from_values(&[
            ruby.into_value(kind.code()),
            ruby.into_value(kind.as_str()),
            ruby.into_value(name.as_str()),
        ]);
        row.freeze();
        table.push(row)?;
    }
    table.freeze();
    module.const_set("ERROR_KINDS", table)?;
    Ok(())
}
