//! `Arbiter::Refresher`: an engine's bundle fetched from a source and refreshed when the host
//! asks (crate `arbiter-fleet`). Fetches run without the GVL; nothing starts a thread.

use std::sync::Mutex;

use crate::engine::Engine;
use crate::error::{Failure, RubyError};
use crate::gvl::without_gvl;
use arbiter_core::ffi::in_own_arena;
use arbiter_core::{LoadError, TrustedKeys};
use arbiter_fleet::{RefreshOptions, Refreshed, Source};
use magnus::{function, method, prelude::*, Error, RModule, Ruby};

/// One source's refresher; its calls take turns.
#[magnus::wrap(class = "Arbiter::Refresher", free_immediately, size)]
struct Refresher {
    inner: Mutex<arbiter_fleet::Refresher>,
    keys: Option<TrustedKeys>,
}

impl Refresher {
    /// The body of `Refresher.new` (its keywords are read in lib/arbiter.rb).
    fn create(
        ruby: &Ruby,
        source: String,
        options_json: String,
        public_keys: Vec<String>,
    ) -> Result<Self, Error> {
        let made = (|| -> Result<Self, Failure> {
            let source: Source = source.parse()?;
            let options = RefreshOptions::from_json(&options_json)?;
            let keys = match public_keys.is_empty() {
                true => None,
                false => Some(TrustedKeys::from_pems(&public_keys).map_err(LoadError::from)?),
            };
            let inner = arbiter_fleet::Refresher::new(source, options)?;
            Ok(Self {
                inner: Mutex::new(inner),
                keys,
            })
        })();
        made.map_err(|e| e.into_error(ruby))
    }

    fn start(ruby: &Ruby, rb_self: &Self) -> Result<Engine, Error> {
        let keys = rb_self.keys.clone();
        let engine = without_gvl(ruby, || {
            Ok(in_own_arena(|| lock(&rb_self.inner).start(keys))?)
        })?;
        Ok(Engine::wrap(engine))
    }

    fn refresh(
        ruby: &Ruby,
        rb_self: &Self,
        engine: &Engine,
        only_if_due: bool,
    ) -> Result<String, Error> {
        let engine = engine.core();
        without_gvl(ruby, || {
            let mut refresher = lock(&rb_self.inner);
            let outcome = match only_if_due {
                true => refresher.refresh_if_due(engine).transpose()?,
                false => Some(refresher.refresh(engine)?),
            };
            Ok(Refreshed::to_json(outcome.as_ref()))
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn init(ruby: &Ruby, module: RModule) -> Result<(), Error> {
    let class = module.define_class("Refresher", ruby.class_object())?;
    class.define_singleton_method("_new", function!(Refresher::create, 3))?;
    class.define_method("start", method!(Refresher::start, 0))?;
    class.define_method("_refresh", method!(Refresher::refresh, 2))?;
    Ok(())
}
