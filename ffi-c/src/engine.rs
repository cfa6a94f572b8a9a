//! `arbiter_engine`: creating, reloading, deciding, tokens, candidates, explanations, metrics.
//!
//! Long: every exported function carries its C contract (ownership, NULL, threads) in its doc
//! comment, which the header repeats.

use std::ffi::c_char;

use super::args::{
    arbiter_bundle_file, arbiter_request, arbiter_str, bundle_files, bytes_str, c_str, engine_ref,
    entity_ref, optional_str, pems, write_out, write_string,
};
use super::decision::{arbiter_decision, decision_strings};
use super::result::{arbiter_error, ffi_boundary, Failure, Report};
use arbiter_core::ffi::in_own_arena;
use arbiter_core::{Decision, Engine, LoadError, RequestParts, TokenReport, TrustedKeys};

/// An engine: a loaded bundle that decides requests. Create it with one of the
/// `arbiter_engine_new_*` functions; free it with `arbiter_engine_free`.
pub struct arbiter_engine {
    pub(crate) engine: Engine,
    /// The OpenTelemetry exporter that is its decision log, when one is.
    pub(crate) otlp: std::sync::Mutex<Option<std::sync::Arc<arbiter_otlp::OtlpExporter>>>,
}

impl arbiter_engine {
    pub(crate) fn new(engine: Engine) -> Self {
        Self {
            engine,
            otlp: std::sync::Mutex::default(),
        }
    }
}

/// Loads an engine (`load`, run in an arena of its own: see `in_own_arena`) into `*engine_out`.
pub(crate) fn new_engine(
    engine_out: *mut *mut arbiter_engine,
    load: impl FnOnce() -> Result<Engine, Failure> + Send,
) -> Result<(), Failure> {
    if engine_out.is_null() {
        return Err(Failure::null("engine_out"));
    }
    let engine = in_own_arena(load)?;
    // SAFETY: checked non-NULL above; the caller owns it.
    unsafe { write_out(engine_out, Box::new(arbiter_engine::new(engine))) };
    Ok(())
}

/// Loads the bundle in directory `path` (NUL-terminated UTF-8). On success `*engine_out`
/// receives an engine the caller frees with `arbiter_engine_free`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `engine_out` is NULL or writable; `err_out` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_new_from_bundle_dir(
    path: *const c_char,
    engine_out: *mut *mut arbiter_engine,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let path = c_str(path, "path")?;
        new_engine(engine_out, || Ok(Engine::from_bundle_dir(path)?))
    })
}

/// Loads the default GitLab bundle embedded in the library.
///
/// # Safety
/// `engine_out` is NULL or writable; `err_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_new_gitlab_default(
    engine_out: *mut *mut arbiter_engine,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        new_engine(engine_out, || Ok(Engine::gitlab_default()?))
    })
}

/// Loads a bundle held in memory: `count` files at `files` (paths relative to the bundle root,
/// e.g. `schema.cedarschema`, `policies/roles.cedar`). The strings are copied.
///
/// # Safety
/// `files` points to `count` entries (or is NULL with `count` 0) whose strings are valid for
/// the call; `engine_out` and `err_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_new_from_files(
    files: *const arbiter_bundle_file,
    count: usize,
    engine_out: *mut *mut arbiter_engine,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let files = bundle_files(files, count)?;
        new_engine(engine_out, || Ok(Engine::from_files(files)?))
    })
}

/// Loads the signed bundle in directory `path`: it must carry a valid `signature.json` by one of
/// the `key_count` trusted public keys at `public_keys` (SPKI PEM, `BEGIN PUBLIC KEY`) and be
/// exactly the files signed. The engine then loads only bundles so signed, on every reload.
///
/// # Safety
/// As `arbiter_engine_new_from_bundle_dir`; `public_keys` points to `key_count` strings valid
/// for the call (or is NULL with `key_count` 0).
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_new_from_signed_bundle_dir(
    path: *const c_char,
    public_keys: *const arbiter_str,
    key_count: usize,
    engine_out: *mut *mut arbiter_engine,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let path = c_str(path, "path")?;
        let keys =
            TrustedKeys::from_pems(&pems(public_keys, key_count)?).map_err(LoadError::from)?;
        new_engine(engine_out, || {
            Ok(Engine::from_signed_bundle_dir(path, keys)?)
        })
    })
}

/// Replaces the engine's bundle with the one in directory `path`. Other threads may decide
/// with the same engine meanwhile; each decision sees the old bundle or the new one, whole. On
/// failure the old bundle keeps serving.
///
/// # Safety
/// `engine` is NULL or a live engine; `path` is NULL or NUL-terminated; `err_out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_reload_from_dir(
    engine: *const arbiter_engine,
    path: *const c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let engine = engine_ref(engine)?;
        let path = c_str(path, "path")?;
        Ok(in_own_arena(|| engine.reload_from_dir(path))?)
    })
}

/// Replaces the engine's bundle with one held in memory (see `arbiter_engine_new_from_files`).
///
/// # Safety
/// As `arbiter_engine_new_from_files`, and `engine` is NULL or a live engine.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_reload_from_files(
    engine: *const arbiter_engine,
    files: *const arbiter_bundle_file,
    count: usize,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let engine = engine_ref(engine)?;
        let files = bundle_files(files, count)?;
        Ok(in_own_arena(|| engine.reload_from_files(files))?)
    })
}

/// Decides one request given as contract JSON (`request_len` bytes, not necessarily
/// NUL-terminated). On success `*decision_out` receives the decision JSON, which the caller
/// frees with `arbiter_string_free`. A bad token is a deny, not an error.
///
/// # Safety
/// `engine` is NULL or a live engine; `request` points to `request_len` bytes (or is NULL);
/// `decision_out` and `err_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_authorize_json(
    engine: *const arbiter_engine,
    request: *const c_char,
    request_len: usize,
    decision_out: *mut *mut c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let input = (request, request_len, "request");
        string_call(
            engine,
            input,
            (decision_out, "decision_out"),
            |e, request| Ok(e.authorize_json(request)?),
        )
    })
}

/// Answers a list query: which resources of a type the principal may act on. `request` is
/// request JSON (`request_len` bytes) whose `resource` names a `type` and no `id`; `dialect` is
/// `"postgres"` or `"sqlite"` (NUL-terminated). On success `*query_out` receives
/// `{"kind": "all" | "none" | "where", "sql", "params"}`: a WHERE clause for
/// `SELECT <table>.id FROM <table>`, its parameters bound in order (`$1`... or `?`), which the
/// caller frees with `arbiter_string_free`. A residual the bundle's SQL mapping cannot express
/// is `ARBITER_RESULT_UNTRANSLATABLE`.
///
/// # Safety
/// As `arbiter_engine_authorize_json`, and `dialect` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_query_json(
    engine: *const arbiter_engine,
    request: *const c_char,
    request_len: usize,
    dialect: *const c_char,
    query_out: *mut *mut c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let dialect = c_str(dialect, "dialect")?;
        let input = (request, request_len, "request");
        string_call(engine, input, (query_out, "query_out"), |e, request| {
            arbiter_core::ffi::query_json(e, request, dialect)
        })
    })
}

/// Decides a JSON array of requests against one bundle version. On success `*answers_out`
/// receives a JSON array of the same length: each decision, or `{"error": {"kind", "code",
/// "message"}}` for a request that could not be decided. Only input that is not a JSON array
/// fails the call.
///
/// # Safety
/// As `arbiter_engine_authorize_json`.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_authorize_json_batch(
    engine: *const arbiter_engine,
    requests: *const c_char,
    requests_len: usize,
    answers_out: *mut *mut c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let input = (requests, requests_len, "requests");
        string_call(
            engine,
            input,
            (answers_out, "answers_out"),
            |e, requests| Ok(e.authorize_json_batch(requests)?),
        )
    })
}

/// Decides one request given as parts, without request JSON (the fast path). On success
/// `*decision_out` receives a decision the caller reads with the `arbiter_decision_*`
/// functions and frees with `arbiter_decision_free`.
///
/// # Safety
/// `engine` is NULL or a live engine; `request` is NULL or points to a request whose strings
/// are valid for the call; `decision_out` and `err_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_authorize(
    engine: *const arbiter_engine,
    request: *const arbiter_request,
    decision_out: *mut *mut arbiter_decision,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        if decision_out.is_null() {
            return Err(Failure::null("decision_out"));
        }
        write_out(decision_out, decide_parts(engine, request)?);
        Ok(())
    })
}

/// # Safety
/// As `arbiter_engine_authorize`.
unsafe fn decide_parts(
    engine: *const arbiter_engine,
    request: *const arbiter_request,
) -> Result<Box<arbiter_decision>, Failure> {
    Ok(Box::new(decision_strings(decide_request(engine, request)?)))
}

/// # Safety
/// As `arbiter_engine_authorize`.
pub(crate) unsafe fn decide_request(
    engine: *const arbiter_engine,
    request: *const arbiter_request,
) -> Result<Decision, Failure> {
    let engine = engine_ref(engine)?;
    let request = request.as_ref().ok_or_else(|| Failure::null("request"))?;
    let parts = RequestParts {
        principal: match request.principal.type_name.ptr.is_null() {
            true => None,
            false => Some(entity_ref(request.principal, "principal")?),
        },
        action: entity_ref(request.action, "action")?,
        resource: entity_ref(request.resource, "resource")?,
        context_json: optional_str(request.context_json, "context_json")?,
        entities_json: optional_str(request.entities_json, "entities_json")?,
        token: optional_str(request.token, "token")?,
        request_id: optional_str(request.request_id, "request_id")?,
    };
    Ok(engine.authorize_parts(&parts)?)
}

/// Verifies a token against the engine's `tokens.json` without deciding anything. On success
/// `*info_out` receives JSON, `{"valid": true, "kind", "principal", "claims"}` or
/// `{"valid": false, "error": {"kind", "message"}}`, which the caller frees with
/// `arbiter_string_free`.
///
/// # Safety
/// `engine` is NULL or a live engine; `token` points to `token_len` bytes (or is NULL);
/// `info_out` and `err_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_verify_token(
    engine: *const arbiter_engine,
    token: *const c_char,
    token_len: usize,
    info_out: *mut *mut c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let input = (token, token_len, "token");
        string_call(engine, input, (info_out, "info_out"), |e, token| {
            Ok(TokenReport::from(&e.verify_token(token))
                .to_json()
                .to_string())
        })
    })
}

/// Sets a candidate bundle (directory `path`) beside the engine's live one: decisions are still
/// taken from the live bundle, and the candidate decides each request too, for comparison
/// (`arbiter_engine_shadow_report_json`). Replaces any earlier candidate. On failure nothing
/// changes.
///
/// # Safety
/// As `arbiter_engine_reload_from_dir`.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_set_candidate_from_dir(
    engine: *const arbiter_engine,
    path: *const c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let engine = engine_ref(engine)?;
        let path = c_str(path, "path")?;
        Ok(in_own_arena(|| engine.set_candidate_from_dir(path))?)
    })
}

/// Sets a candidate bundle held in memory (see `arbiter_engine_set_candidate_from_dir`).
///
/// # Safety
/// As `arbiter_engine_reload_from_files`.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_set_candidate_from_files(
    engine: *const arbiter_engine,
    files: *const arbiter_bundle_file,
    count: usize,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let engine = engine_ref(engine)?;
        let files = bundle_files(files, count)?;
        Ok(in_own_arena(|| engine.set_candidate_from_files(files))?)
    })
}

/// Drops the candidate bundle. NULL does nothing.
///
/// # Safety
/// `engine` is NULL or a live engine.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_clear_candidate(engine: *const arbiter_engine) {
    ffi_boundary!({
        if let Some(engine) = engine.as_ref() {
            engine.engine.clear_candidate();
        }
    })
}

/// What shadow evaluation has seen since the candidate was set, as JSON: `candidate` (`name`,
/// `version`; null without one), `agreements`, `disagreements` and `recent` (the latest
/// disagreements: `principal`, `action`, `resource`, `live` and `candidate` decisions). On
/// success `*json_out` receives a string the caller frees with `arbiter_string_free`.
///
/// # Safety
/// As `arbiter_engine_metrics_json`.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_shadow_report_json(
    engine: *const arbiter_engine,
    json_out: *mut *mut c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        engine_string(engine, json_out, |e| e.shadow_report().to_json())
    })
}

/// Decides one request given as contract JSON and explains it, as JSON: the decision's fields
/// plus `policies`, one `{"id", "effect", "outcome", "condition", "error"}` per policy whose
/// scope matched (`outcome` is `satisfied`, `not_satisfied` or `errored`; `condition` is the
/// condition that was false or errored). On success `*explanation_out` receives a string the
/// caller frees with `arbiter_string_free`.
///
/// # Safety
/// As `arbiter_engine_authorize_json`.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_explain_json(
    engine: *const arbiter_engine,
    request: *const c_char,
    request_len: usize,
    explanation_out: *mut *mut c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let (input, out) = (
            (request, request_len, "request"),
            (explanation_out, "explanation_out"),
        );
        string_call(
            engine,
            input,
            out,
            |e, request| Ok(e.explain_json(request)?),
        )
    })
}

/// The same explanation as text for a person: the decision and what determined it, then one
/// line per policy.
///
/// # Safety
/// As `arbiter_engine_authorize_json`.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_explain_text(
    engine: *const arbiter_engine,
    request: *const c_char,
    request_len: usize,
    explanation_out: *mut *mut c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let (input, out) = (
            (request, request_len, "request"),
            (explanation_out, "explanation_out"),
        );
        string_call(engine, input, out, |e, request| {
            Ok(e.explain(&e.read_request(request)?)?.to_text())
        })
    })
}

/// A call that reads one string (pointer, length, name) and hands out the string `call` makes:
/// the engine, the input and the output (pointer, name) are checked in that order.
///
/// # Safety
/// As `arbiter_engine_authorize_json`.
unsafe fn string_call(
    engine: *const arbiter_engine,
    (input, input_len, input_name): (*const c_char, usize, &str),
    (out, out_name): (*mut *mut c_char, &str),
    call: impl FnOnce(&Engine, &str) -> Result<String, Failure>,
) -> Result<(), Failure> {
    let engine = engine_ref(engine)?;
    let input = bytes_str(input, input_len, input_name)?;
    if out.is_null() {
        return Err(Failure::null(out_name));
    }
    write_string(out, &call(engine, input)?);
    Ok(())
}

/// The engine's metrics since it was created (reloads included) as JSON: `decisions` (by
/// action: `action`, `allow`, `deny`), `request_errors` and `token_failures` (by kind),
/// `policy_errors` (by policy id), `internal_errors`, `latency` (`count`, `sum_seconds`,
/// cumulative `buckets` of `le_seconds` and `count`, the last `le_seconds` null for +Inf) and
/// `bundle` (`name`, `version`, `loaded_at_unix_seconds`, `load_seconds`, `reloads`,
/// `reload_failures`). On success `*json_out` receives a string the caller frees with
/// `arbiter_string_free`.
///
/// # Safety
/// `engine` is NULL or a live engine; `json_out` and `err_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_metrics_json(
    engine: *const arbiter_engine,
    json_out: *mut *mut c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        engine_string(engine, json_out, |e| e.metrics().to_json())
    })
}

/// The same metrics in the Prometheus text exposition format, ready to serve on `/metrics`.
/// On success `*text_out` receives a string the caller frees with `arbiter_string_free`.
///
/// # Safety
/// As `arbiter_engine_metrics_json`.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_metrics_prometheus(
    engine: *const arbiter_engine,
    text_out: *mut *mut c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        engine_string(engine, text_out, |e| e.metrics().to_prometheus())
    })
}

/// A call that takes no input and hands out a string `report` makes of the engine.
///
/// # Safety
/// As `arbiter_engine_metrics_json`.
unsafe fn engine_string(
    engine: *const arbiter_engine,
    out: *mut *mut c_char,
    report: impl FnOnce(&Engine) -> String,
) -> Result<(), Failure> {
    let engine = engine_ref(engine)?;
    if out.is_null() {
        return Err(Failure::null("out"));
    }
    write_string(out, &report(engine));
    Ok(())
}

/// Test builds only (feature `fault-injection`; the header declares it when
/// `ARBITER_FAULT_INJECTION` is defined): while `on`, every decision and reload of `engine`
/// panics inside Arbiter, so a test can see how it surfaces (a deny with an `internal` error; a
/// reload failing with `ARBITER_RESULT_INTERNAL`). NULL does nothing.
///
/// # Safety
/// `engine` is NULL or a live engine.
#[cfg(feature = "fault-injection")]
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_inject_panics(engine: *const arbiter_engine, on: bool) {
    ffi_boundary!({
        if let Some(engine) = engine.as_ref() {
            engine.engine.inject_panics(on);
        }
    })
}

/// Frees an engine. NULL does nothing. No other thread may be using it.
///
/// # Safety
/// `engine` is NULL or an engine from `arbiter_engine_new_*`, not freed before.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_free(engine: *mut arbiter_engine) {
    ffi_boundary!({
        if !engine.is_null() {
            drop(Box::from_raw(engine));
        }
    })
}
