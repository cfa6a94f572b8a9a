//! `Arbiter::Engine`: loading, deciding, batches, tokens and what an operator sets on it.

use std::path::PathBuf;

use crate::decision::{Decision, MAX_SHARED_DECISIONS};
use crate::error::{guard, Failure, RubyError};
use crate::gvl::without_gvl;
use crate::request::{elements, read_request, read_request_hash, text_argument, with_text};
use arbiter_core::ffi::{self, in_own_arena, Logged, RequestText, SpannedRequest};
use arbiter_core::{
    BridgeResult, BundleFile, Decision as CoreDecision, DecisionLogOptions, Explanation,
    RequestParts, TokenReport,
};
use magnus::r_hash::ForEach;
use magnus::typed_data::Obj;
use magnus::value::ReprValue;
use magnus::{function, method, prelude::*, Error, RArray, RHash, RModule, RString, Ruby, Value};

fn bundle_files(files: RHash) -> Result<Vec<BundleFile>, Failure> {
    let mut out = Vec::new();
    files
        .foreach(|path: String, contents: RString| {
            // Bytes as they are: text files must be UTF-8 (the load says so, naming the file),
            // a raw secret file (a binary String) need not be.
            // SAFETY: the string is only read, and copied before any Ruby code runs.
            out.push(BundleFile::new(
                path,
                unsafe { contents.as_slice() }.to_vec(),
            ));
            Ok(ForEach::Continue)
        })
        .map_err(|_| Failure::malformed("bundle files map String paths to String contents"))?;
    Ok(out)
}

/// Decides requests against one bundle at a time; safe to share between threads.
#[magnus::wrap(class = "Arbiter::Engine", free_immediately, size, frozen_shareable)]
pub(crate) struct Engine {
    inner: arbiter_core::Engine,
    /// The OpenTelemetry exporter that is its decision log, when one is.
    otlp: std::sync::Mutex<Option<std::sync::Arc<arbiter_otlp::OtlpExporter>>>,
}

fn load(
    ruby: &Ruby,
    f: impl FnOnce() -> Result<arbiter_core::Engine, arbiter_core::LoadError> + Send,
) -> Result<Engine, Error> {
    without_gvl(ruby, || Ok(in_own_arena(f)?)).map(Engine::wrap)
}

impl Engine {
    /// An engine built elsewhere (a refresher's start).
    pub(crate) fn wrap(inner: arbiter_core::Engine) -> Self {
        Self {
            inner,
            otlp: std::sync::Mutex::default(),
        }
    }

    fn otlp(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<std::sync::Arc<arbiter_otlp::OtlpExporter>>> {
        self.otlp.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The body of `Engine#export_decision_log_otlp` (its keywords are read in lib/arbiter.rb).
    fn export_decision_log_otlp(
        ruby: &Ruby,
        rb_self: &Self,
        options_json: String,
    ) -> Result<(), Error> {
        let exported = guard(ruby, || {
            let (options, log) = arbiter_otlp::options_from_json(&options_json)
                .map_err(|e| Failure::new(arbiter_core::ErrorKind::InvalidArgument, e))?;
            arbiter_otlp::export_decision_log(&rb_self.inner, options, log)
        })?;
        *rb_self.otlp() = Some(exported);
        Ok(())
    }

    fn otlp_stats_json(&self) -> String {
        arbiter_otlp::stats_json(self.otlp().as_ref().map(|e| e.stats()).as_ref())
    }

    pub(crate) fn core(&self) -> &arbiter_core::Engine {
        &self.inner
    }

    fn from_bundle_dir(ruby: &Ruby, path: PathBuf) -> Result<Self, Error> {
        load(ruby, move || arbiter_core::Engine::from_bundle_dir(&path))
    }

    fn gitlab_default(ruby: &Ruby) -> Result<Self, Error> {
        load(ruby, arbiter_core::Engine::gitlab_default)
    }

    fn from_signed_bundle_dir(
        ruby: &Ruby,
        path: PathBuf,
        public_keys: Vec<String>,
    ) -> Result<Self, Error> {
        let keys = arbiter_core::TrustedKeys::from_pems(&public_keys)
            .map_err(|e| Failure::from(arbiter_core::LoadError::from(e)).into_error(ruby))?;
        load(ruby, move || {
            arbiter_core::Engine::from_signed_bundle_dir(&path, keys)
        })
    }

    fn from_files(ruby: &Ruby, files: RHash) -> Result<Self, Error> {
        let files = bundle_files(files).map_err(|e| e.into_error(ruby))?;
        load(ruby, move || arbiter_core::Engine::from_files(files))
    }

    fn reload_from_dir(ruby: &Ruby, rb_self: &Self, path: PathBuf) -> Result<(), Error> {
        without_gvl(ruby, || {
            Ok(in_own_arena(|| rb_self.inner.reload_from_dir(&path))?)
        })
    }

    fn reload_from_files(ruby: &Ruby, rb_self: &Self, files: RHash) -> Result<(), Error> {
        let files = bundle_files(files).map_err(|e| e.into_error(ruby))?;
        without_gvl(ruby, || {
            Ok(in_own_arena(|| rb_self.inner.reload_from_files(files))?)
        })
    }

    fn authorize_json(ruby: &Ruby, rb_self: Obj<Self>, request: Value) -> Result<String, Error> {
        let request = text_argument(ruby, "request", request)?;
        let decided = guard(ruby, || Ok(ffi::authorize_json(&rb_self.inner, &request)))?;
        deliver(ruby, rb_self, decided)
    }

    fn authorize_json_batch(
        ruby: &Ruby,
        rb_self: Obj<Self>,
        requests: Value,
    ) -> Result<String, Error> {
        let requests = text_argument(ruby, "requests", requests)?;
        let engine = &rb_self.inner;
        let decided = without_gvl(ruby, || Ok(ffi::authorize_json_batch(engine, &requests)))?;
        deliver(ruby, rb_self, decided)
    }

    /// The body of `Engine#authorize` (its keywords are read in lib/arbiter.rb).
    #[allow(clippy::too_many_arguments)]
    fn authorize_parts(
        ruby: &Ruby,
        rb_self: Obj<Self>,
        principal: Value,
        action: Value,
        resource: Value,
        context: Value,
        entities: Value,
        token: Value,
        request_id: Value,
    ) -> Result<Value, Error> {
        let engine = &rb_self.inner;
        let mut text = RequestText::new(engine);
        let request = guard(ruby, || {
            read_request(
                &mut text,
                [
                    principal, action, resource, context, entities, token, request_id,
                ],
            )
        })?;
        let decide = || Ok(ffi::authorize_parts(engine, &request.parts(&text)));
        // A token may need a signature check, which pays for giving up the GVL.
        let decided = if request.token.is_some() {
            without_gvl(ruby, decide)
        } else {
            guard(ruby, decide)
        }?;
        deliver(ruby, rb_self, decided).map(|d| Decision::object(ruby, d))
    }

    /// Decides an Array of requests (Hashes with the keywords of `authorize`) against one
    /// bundle version, without the GVL. Answers, in order, a Decision per request or the
    /// `Arbiter::Error` of a request that could not be decided (returned, not raised).
    fn authorize_many(ruby: &Ruby, rb_self: Obj<Self>, requests: RArray) -> Result<RArray, Error> {
        let engine = &rb_self.inner;
        let mut text = RequestText::new(engine);
        let items: Vec<Result<SpannedRequest, Failure>> = guard(ruby, || {
            Ok(elements(requests)
                .map(|request| read_request_hash(&mut text, request))
                .collect())
        })?;
        let decided = without_gvl(ruby, || {
            let read: Vec<Result<RequestParts<'_>, Failure>> = items
                .iter()
                .map(|item| item.as_ref().map(|r| r.parts(&text)).map_err(Clone::clone))
                .collect();
            Ok(ffi::authorize_read_batch(engine, &read))
        })?;
        let answers = deliver_events(ruby, rb_self, decided.events).map(|()| decided.answer)?;
        let out = ruby.ary_new_capa(answers.len());
        // Equal decisions share one (frozen) Decision: a list page's checks have few distinct
        // answers. Each is found again by its place in `out`, which holds it: a reference kept
        // on the Rust heap would be neither marked nor updated when the collector compacts.
        let mut shared: Vec<(CoreDecision, isize)> = Vec::new();
        for (at, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok(decision) => match shared.iter().find(|(d, _)| *d == decision) {
                    Some(&(_, first)) => out.push(out.entry::<Value>(first)?)?,
                    None => {
                        let object = Decision::object(ruby, decision.clone());
                        if shared.len() < MAX_SHARED_DECISIONS {
                            shared.push((decision, at as isize));
                        }
                        out.push(object)?
                    }
                },
                Err(failure) => out.push(failure.exception(ruby)?)?,
            }
        }
        Ok(out)
    }

    /// Verifies a token without deciding anything: `{"valid" => true, "kind", "principal",
    /// "claims"}` or `{"valid" => false, "error" => {...}}`.
    fn verify_token(ruby: &Ruby, rb_self: &Self, token: RString) -> Result<Value, Error> {
        // Bytes that are not text are no token: Arbiter reports them malformed, like any other.
        let token = with_text(token.as_value(), str::to_owned).unwrap_or_else(|| {
            // SAFETY: the bytes are copied before any Ruby code can run.
            String::from_utf8_lossy(unsafe { token.as_slice() }).into_owned()
        });
        let verified = without_gvl(ruby, || {
            let verified = rb_self.inner.verify_token(&token);
            if let Ok(info) = &verified {
                info.claims(); // a JWT's payload is parsed here, without the GVL
            }
            Ok(verified)
        })?;
        serde_magnus::serialize(ruby, &TokenReport::from(&verified))
    }

    fn entities_json(ruby: &Ruby, rb_self: &Self) -> Result<String, Error> {
        guard(ruby, || Ok(rb_self.inner.entities_json()))
    }

    fn set_candidate_from_dir(ruby: &Ruby, rb_self: &Self, path: PathBuf) -> Result<(), Error> {
        without_gvl(ruby, || Ok(rb_self.inner.set_candidate_from_dir(&path)?))
    }

    fn set_candidate_from_files(ruby: &Ruby, rb_self: &Self, files: RHash) -> Result<(), Error> {
        let files = bundle_files(files).map_err(|e| e.into_error(ruby))?;
        without_gvl(ruby, || {
            Ok(rb_self.inner.set_candidate_from_files(files)?)
        })
    }

    fn clear_candidate(&self) {
        self.inner.clear_candidate();
    }

    fn shadow_report(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        hash(ruby, &guard(ruby, || Ok(rb_self.inner.shadow_report()))?)
    }

    fn explain(ruby: &Ruby, rb_self: &Self, request: Value) -> Result<Value, Error> {
        hash(ruby, &rb_self.explained(ruby, request)?)
    }

    fn explain_text(ruby: &Ruby, rb_self: &Self, request: Value) -> Result<String, Error> {
        Ok(rb_self.explained(ruby, request)?.to_text())
    }

    /// A list query given as request JSON (its `resource` a `type` and no `id`), answered as
    /// `{"kind", "sql", "params"}` JSON in the dialect named `postgres` or `sqlite`.
    fn query_json(
        ruby: &Ruby,
        rb_self: &Self,
        request: Value,
        dialect: String,
    ) -> Result<String, Error> {
        let request = text_argument(ruby, "request", request)?;
        guard(ruby, || ffi::query_json(&rb_self.inner, &request, &dialect))
    }

    /// Explains a request given as contract JSON.
    fn explained(&self, ruby: &Ruby, request: Value) -> Result<Explanation, Error> {
        let request = text_argument(ruby, "request", request)?;
        guard(ruby, || {
            Ok(self.inner.explain(&self.inner.read_request(&request)?)?)
        })
    }

    /// The native half of `set_decision_log` (lib/arbiter.rb keeps the block).
    fn enable_decision_log(
        ruby: &Ruby,
        rb_self: &Self,
        sample_rate: f64,
        max_events_per_second: Option<u32>,
    ) -> Result<(), Error> {
        let options = DecisionLogOptions {
            sample_rate,
            max_events_per_second,
        };
        ffi::log_to_caller(&rb_self.inner, options)
            .map_err(|e| Error::new(ruby.exception_arg_error(), e.to_string()))?;
        *rb_self.otlp() = None;
        Ok(())
    }

    fn disable_decision_log(&self) {
        self.inner.clear_decision_log();
        *self.otlp() = None;
    }

    fn metrics(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        hash(ruby, &guard(ruby, || Ok(rb_self.inner.metrics()))?)
    }

    fn metrics_prometheus(ruby: &Ruby, rb_self: &Self) -> Result<String, Error> {
        guard(ruby, || Ok(rb_self.inner.metrics().to_prometheus()))
    }

    /// The serving bundle's `abilities.json` as a Hash with String keys, or nil.
    fn abilities(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        match guard(ruby, || Ok(rb_self.inner.abilities()))? {
            Some(abilities) => hash(ruby, &abilities),
            None => Ok(ruby.qnil().as_value()),
        }
    }

    /// Counts a bridge check of `ability`: `result` is "agree", "mismatch", "fallback" or
    /// "error".
    fn count_bridge_check(
        ruby: &Ruby,
        rb_self: &Self,
        ability: String,
        result: String,
    ) -> Result<(), Error> {
        let result = BridgeResult::parse(&result).ok_or_else(|| {
            Error::new(
                ruby.exception_arg_error(),
                format!(
                    "a bridge check's result is agree, mismatch, fallback or error, not {result:?}"
                ),
            )
        })?;
        rb_self.inner.count_bridge_check(&ability, result);
        Ok(())
    }

    #[cfg(feature = "fault-injection")]
    fn inject_panics(&self, on: bool) {
        self.inner.inject_panics(on);
    }
}

/// Hands a call's decision log events to the engine's block, then gives the call's answer.
fn deliver<T, E: Into<Failure>>(
    ruby: &Ruby,
    engine: Obj<Engine>,
    decided: Logged<Result<T, E>>,
) -> Result<T, Error> {
    deliver_events(ruby, engine, decided.events)?;
    decided.answer.map_err(|e| e.into().into_error(ruby))
}

/// Hands decision log events to the engine's block, now that the GVL is held again. A block
/// that raises a StandardError is reported with `warn` (that event is lost, the decision
/// stands); any other exception propagates.
fn deliver_events(ruby: &Ruby, engine: Obj<Engine>, events: Vec<String>) -> Result<(), Error> {
    if events.is_empty() {
        return Ok(());
    }
    let block: Value = engine.ivar_get("@decision_log")?;
    if block.is_nil() {
        return Ok(());
    }
    for event in events {
        let event = ruby.str_new(&event);
        event.freeze();
        if let Err(e) = block.funcall::<_, _, Value>("call", (event,)) {
            if !e.is_kind_of(ruby.exception_standard_error()) {
                return Err(e);
            }
            let warning =
                format!("arbiter: the decision log block raised ({e}); the event is lost");
            let _: Value = ruby.module_kernel().funcall("warn", (warning,))?;
        }
    }
    Ok(())
}

/// A report as a Hash with String keys, as JSON would give it.
fn hash(ruby: &Ruby, report: &impl serde::Serialize) -> Result<Value, Error> {
    let json = serde_json::to_value(report)
        .map_err(|e| Failure::internal(e.to_string()).into_error(ruby))?;
    serde_magnus::serialize(ruby, &json)
}

/// Defines `Arbiter::Engine`'s methods (its Ruby side is lib/arbiter.rb).
pub(crate) fn init(ruby: &Ruby, module: RModule) -> Result<(), Error> {
    let engine = module.define_class("Engine", ruby.class_object())?;
    engine.undef_default_alloc_func();
    engine.define_singleton_method("from_bundle_dir", function!(Engine::from_bundle_dir, 1))?;
    engine.define_singleton_method("gitlab_default", function!(Engine::gitlab_default, 0))?;
    engine.define_singleton_method("from_files", function!(Engine::from_files, 1))?;
    engine.define_singleton_method(
        "from_signed_bundle_dir",
        function!(Engine::from_signed_bundle_dir, 2),
    )?;
    engine.define_method("reload_from_dir", method!(Engine::reload_from_dir, 1))?;
    engine.define_method("reload_from_files", method!(Engine::reload_from_files, 1))?;
    engine.define_method("authorize_json", method!(Engine::authorize_json, 1))?;
    engine.define_method("query_json", method!(Engine::query_json, 2))?;
    engine.define_method(
        "authorize_json_batch",
        method!(Engine::authorize_json_batch, 1),
    )?;
    engine.define_private_method("authorize_parts", method!(Engine::authorize_parts, 7))?;
    engine.define_private_method(
        "enable_decision_log",
        method!(Engine::enable_decision_log, 2),
    )?;
    engine.define_private_method(
        "disable_decision_log",
        method!(Engine::disable_decision_log, 0),
    )?;
    engine.define_method("authorize_many", method!(Engine::authorize_many, 1))?;
    engine.define_method("verify_token", method!(Engine::verify_token, 1))?;
    engine.define_method("entities_json", method!(Engine::entities_json, 0))?;
    engine.define_method(
        "set_candidate_from_dir",
        method!(Engine::set_candidate_from_dir, 1),
    )?;
    engine.define_method(
        "set_candidate_from_files",
        method!(Engine::set_candidate_from_files, 1),
    )?;
    engine.define_method("clear_candidate", method!(Engine::clear_candidate, 0))?;
    engine.define_method("shadow_report", method!(Engine::shadow_report, 0))?;
    engine.define_method("explain", method!(Engine::explain, 1))?;
    engine.define_method("explain_text", method!(Engine::explain_text, 1))?;
    engine.define_method("metrics", method!(Engine::metrics, 0))?;
    engine.define_method(
        "_export_decision_log_otlp",
        method!(Engine::export_decision_log_otlp, 1),
    )?;
    engine.define_method("_otlp_stats_json", method!(Engine::otlp_stats_json, 0))?;
    engine.define_method("metrics_prometheus", method!(Engine::metrics_prometheus, 0))?;
    engine.define_method("abilities", method!(Engine::abilities, 0))?;
    engine.define_method("count_bridge_check", method!(Engine::count_bridge_check, 2))?;
    #[cfg(feature = "fault-injection")]
    engine.define_method("inject_panics", method!(Engine::inject_panics, 1))?;
    Ok(())
}
