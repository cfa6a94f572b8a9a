//! Ruby bindings of Arbiter (magnus), linking the core directly: converts values and errors,
//! nothing more. Bundle loads, reloads, batches and token checks run without the GVL; a single
//! decision is shorter than a GVL round trip and keeps it (unless it carries a token). No
//! wrapped object holds a Ruby value, so the garbage collector (stress, compaction) never needs
//! to know about them (a decision log's block is an instance variable of the engine), and
//! nothing here starts a thread, so a fork leaves a working engine. Each call's decision log
//! events come back with its answer (`arbiter_core::ffi::Logged`) and go to the block once the
//! call has the GVL again.

mod decision;
mod engine;
mod error;
mod gvl;
mod refresher;
mod request;

use magnus::{prelude::*, Error, Ruby};

#[magnus::init(name = "arbiter_ruby")]
fn init(ruby: &Ruby) -> Result<(), Error> {
    let module = ruby.define_module("Arbiter")?;
    error::init(ruby, module)?;
    engine::init(ruby, module)?;
    decision::init(ruby, module)?;
    refresher::init(ruby, module)?;
    module.const_set("VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{guard, Failure, ARBITER};
    use crate::gvl::without_gvl;

    /// A panic, with or without the GVL, reaches Ruby as `Arbiter::InternalError`.
    #[test]
    fn panics_become_internal_errors() {
        // SAFETY: the only Ruby VM of this test binary, started on this thread.
        let ruby = unsafe { magnus::embed::init() };
        init(&ruby).unwrap();
        let errors = [
            guard(&ruby, || -> Result<(), Failure> { panic!("inside") }).unwrap_err(),
            without_gvl(&ruby, || -> Result<(), Failure> {
                panic!("without the GVL")
            })
            .unwrap_err(),
        ];
        for error in errors {
            let exception = error.value().expect("an exception");
            let class: magnus::RClass =
                ruby.get_inner(&ARBITER).const_get("InternalError").unwrap();
            let base: magnus::RClass = ruby.get_inner(&ARBITER).const_get("Error").unwrap();
            assert!(exception.is_kind_of(class) && exception.is_kind_of(base));
            let code: u32 = exception
                .funcall("instance_variable_get", ("@code",))
                .unwrap();
            assert_eq!(code, 900);
        }
        assert_eq!(without_gvl(&ruby, || Ok(7)).ok(), Some(7));
    }
}
