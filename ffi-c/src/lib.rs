//! The C ABI of Arbiter (rustls-ffi is the model).
//!
//! Conventions, for every function:
//! - Every symbol starts with `arbiter_`. Objects are opaque and owned by the caller once
//!   returned; each has a `_free` function, and `_free(NULL)` does nothing.
//! - A fallible function returns a result code, `ARBITER_RESULT_OK` (0) on success, and takes
//!   an optional last `arbiter_error **err_out`: when it is not NULL and the call fails, it
//!   receives an error the caller frees with `arbiter_error_free`. Outputs are written only on
//!   success.
//! - Strings passed in are UTF-8; either NUL-terminated (`const char *`) or pointer and length
//!   (`arbiter_str`, `request` with `request_len`). Strings handed out are NUL-terminated.
//! - A panic inside Arbiter never unwinds into C and never yields an allow: while deciding, the
//!   decision is a deny with an `internal` error; anywhere else the call fails with
//!   `ARBITER_RESULT_INTERNAL` (a reload that fails so keeps the old bundle).
//! - A `const arbiter_engine *` may be used from many threads at once, a reload included.
//!
//! Result codes come in blocks: 1-99 misuse of the ABI, 100-199 bundle loading (the `kind`s of
//! `LoadError`), 200-299 requests (the `kind`s of `RequestError`), 900 internal errors.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use arbiter_core::{
    BundleFile, CallError, Decision, DecisionLogOptions, Engine, ErrorKind, LoadError,
    RequestParts, TokenReport, TrustedKeys,
};

/// What every fallible call returns (as `uint32_t`): `ARBITER_RESULT_OK` (0), or the code of
/// the error's kind, one constant per kind of core's error table (`arbiter::ErrorKind`), named
/// after it: kind `policy_parse` is `ARBITER_RESULT_POLICY_PARSE`. A test checks this enum
/// against the table.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum arbiter_result {
    /// Success.
    ARBITER_RESULT_OK = 0,
    /// A required pointer argument was NULL.
    ARBITER_RESULT_NULL_ARGUMENT = 1,
    /// A string argument is not valid UTF-8.
    ARBITER_RESULT_INVALID_UTF8 = 2,
    /// An argument is out of its range (a decision log's sample rate, ...).
    ARBITER_RESULT_INVALID_ARGUMENT = 3,
    /// A bundle file or directory could not be read.
    ARBITER_RESULT_IO = 100,
    /// `manifest.json` is invalid.
    ARBITER_RESULT_MANIFEST = 101,
    /// A policy does not parse, or two share an id.
    ARBITER_RESULT_POLICY_PARSE = 102,
    /// Policies do not validate against the schema.
    ARBITER_RESULT_POLICY_VALIDATION = 103,
    /// The schema is invalid.
    ARBITER_RESULT_SCHEMA = 104,
    /// `entities.json` is invalid.
    ARBITER_RESULT_ENTITIES = 105,
    /// `links.json` is invalid.
    ARBITER_RESULT_LINKS = 106,
    /// `tokens.json` is invalid or names a key that is missing or unusable.
    ARBITER_RESULT_TOKENS = 107,
    /// The bundle's signature is missing, by an untrusted key, older than the bundle served, or
    /// does not match its files (or a trusted key is unusable).
    ARBITER_RESULT_SIGNATURE = 108,
    /// The request is not valid JSON, lacks a field, or names an entity badly.
    ARBITER_RESULT_MALFORMED_REQUEST = 200,
    /// The request does not conform to the bundle's schema.
    ARBITER_RESULT_INVALID_REQUEST = 201,
    /// The context does not conform to the schema.
    ARBITER_RESULT_INVALID_CONTEXT = 202,
    /// A per-request entity is invalid.
    ARBITER_RESULT_INVALID_ENTITIES = 203,
    /// Arbiter panicked outside a decision (loading, reloading, reading arguments); nothing
    /// changed. A panic while deciding is a deny with an `internal` error instead.
    ARBITER_RESULT_INTERNAL = 900,
}

use arbiter_result::*;

/// Success, as the `uint32_t` every fallible call returns.
const OK: u32 = ARBITER_RESULT_OK as u32;

impl PartialEq<arbiter_result> for u32 {
    fn eq(&self, result: &arbiter_result) -> bool {
        *self == *result as u32
    }
}

/// An engine: a loaded bundle that decides requests. Create it with one of the
/// `arbiter_engine_new_*` functions; free it with `arbiter_engine_free`.
pub struct arbiter_engine {
    engine: Engine,
}

/// An error: a result code, a kind (`"policy_parse"`, `"malformed_request"`, ...) and a
/// one-line message. Owned by the caller; free it with `arbiter_error_free`.
pub struct arbiter_error {
    code: u32,
    kind: CString,
    message: CString,
}

/// A decision of `arbiter_engine_authorize`. Owned by the caller; free it with
/// `arbiter_decision_free`. Strings it hands out live as long as it does.
pub struct arbiter_decision {
    pub(crate) decision: Decision,
    reasons: Vec<CString>,
    errors: Vec<DecisionErrorStrings>,
    /// Pointers into `reasons` and `errors`, for `arbiter_decision_view`.
    reason_ptrs: Vec<*const c_char>,
    error_views: Vec<arbiter_decision_error_view>,
}

/// An error of a decision, as `arbiter_decision_get_view` shows it. `policy` is NULL when the error
/// names no policy. The strings live as long as the decision.
#[repr(C)]
pub struct arbiter_decision_error_view {
    pub kind: *const c_char,
    pub policy: *const c_char,
    pub message: *const c_char,
}

/// Everything a decision holds, from `arbiter_decision_get_view` in one call: whether it
/// allows, the ids of the determining policies (`reason_count` strings at `reasons`) and its
/// errors (`error_count` at `errors`). An empty list is NULL. The pointers live as long as the
/// decision.
#[repr(C)]
pub struct arbiter_decision_view {
    pub allowed: bool,
    pub reasons: *const *const c_char,
    pub reason_count: usize,
    pub errors: *const arbiter_decision_error_view,
    pub error_count: usize,
}

struct DecisionErrorStrings {
    kind: CString,
    policy: Option<CString>,
    message: CString,
}

/// A borrowed UTF-8 string: `ptr` to `len` bytes, not necessarily NUL-terminated. A NULL `ptr`
/// means "absent" where a field is optional.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct arbiter_str {
    pub ptr: *const c_char,
    pub len: usize,
}

/// An entity reference: its type (`Gitlab::User`) and id (`42`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct arbiter_entity_ref {
    pub type_name: arbiter_str,
    pub id: arbiter_str,
}

/// A request without request JSON. `principal.type_name.ptr` may be NULL when `token` is
/// given. `context_json` (a JSON object), `entities_json` (a JSON array of entities), `token`
/// and `request_id` (the host's id for the request, carried into its decision log event) are
/// optional: NULL `ptr` when absent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct arbiter_request {
    pub principal: arbiter_entity_ref,
    pub action: arbiter_entity_ref,
    pub resource: arbiter_entity_ref,
    pub context_json: arbiter_str,
    pub entities_json: arbiter_str,
    pub token: arbiter_str,
    pub request_id: arbiter_str,
}

/// One file of an in-memory bundle: its path relative to the bundle root (UTF-8) and its bytes
/// (policies, the schema and JSON files must be UTF-8 text; a raw secret file may hold any
/// bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct arbiter_bundle_file {
    pub path: arbiter_str,
    pub contents: arbiter_str,
}

/// Why a call failed, before it becomes an `arbiter_error`.
type Failure = CallError;

/// The C side of a [`Failure`].
trait Report: Sized {
    fn null(what: &str) -> Self;
    fn report(self, err_out: *mut *mut arbiter_error) -> u32;
}

impl Report for Failure {
    fn null(what: &str) -> Self {
        Self::new(ErrorKind::NullArgument, format!("`{what}` is NULL"))
    }

    /// Hands the error to `err_out` (if given) and returns its code.
    fn report(self, err_out: *mut *mut arbiter_error) -> u32 {
        if !err_out.is_null() {
            let error = Box::new(arbiter_error {
                code: self.code(),
                kind: c_string(self.kind.as_str()),
                message: c_string(&self.message),
            });
            // SAFETY: the caller passes either NULL (checked above) or a pointer it owns.
            unsafe { *err_out = Box::into_raw(error) };
        }
        self.code()
    }
}

/// A C string from Rust text; an interior NUL (impossible in Arbiter's own output) is replaced.
fn c_string(text: &str) -> CString {
    CString::new(text)
        .unwrap_or_else(|_| CString::new(text.replace('\0', "\u{FFFD}")).unwrap_or_default())
}

/// Runs `body` inside the panic boundary: its error, or a panic, becomes a result code and an
/// `arbiter_error`.
fn boundary(err_out: *mut *mut arbiter_error, body: impl FnOnce() -> Result<(), Failure>) -> u32 {
    match arbiter_core::ffi::guarded(body) {
        Ok(()) => OK,
        Err(failure) => failure.report(err_out),
    }
}

/// A NUL-terminated UTF-8 argument.
///
/// # Safety
/// `s` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn c_str<'a>(s: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if s.is_null() {
        return Err(Failure::null(what));
    }
    CStr::from_ptr(s)
        .to_str()
        .map_err(|_| Failure::new(ErrorKind::InvalidUtf8, format!("`{what}` is not UTF-8")))
}

/// A pointer-and-length argument of any bytes.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes valid for the call.
unsafe fn bytes<'a>(ptr: *const c_char, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    Ok(std::slice::from_raw_parts(ptr.cast::<u8>(), len))
}

/// A pointer-and-length UTF-8 argument.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes valid for the call.
unsafe fn bytes_str<'a>(ptr: *const c_char, len: usize, what: &str) -> Result<&'a str, Failure> {
    std::str::from_utf8(bytes(ptr, len, what)?)
        .map_err(|_| Failure::new(ErrorKind::InvalidUtf8, format!("`{what}` is not UTF-8")))
}

/// An optional `arbiter_str`: `None` when its pointer is NULL.
///
/// # Safety
/// As `bytes_str`.
unsafe fn optional_str<'a>(s: arbiter_str, what: &str) -> Result<Option<&'a str>, Failure> {
    if s.ptr.is_null() {
        Ok(None)
    } else {
        bytes_str(s.ptr, s.len, what).map(Some)
    }
}

/// # Safety
/// As `bytes_str`, for both parts.
unsafe fn entity_ref<'a>(r: arbiter_entity_ref, what: &str) -> Result<(&'a str, &'a str), Failure> {
    Ok((
        bytes_str(r.type_name.ptr, r.type_name.len, what)?,
        bytes_str(r.id.ptr, r.id.len, what)?,
    ))
}

/// # Safety
/// `engine` is NULL or a live engine.
unsafe fn engine_ref<'a>(engine: *const arbiter_engine) -> Result<&'a Engine, Failure> {
    engine
        .as_ref()
        .map(|e| &e.engine)
        .ok_or_else(|| Failure::null("engine"))
}

/// Writes an owned value to an output pointer.
///
/// # Safety
/// `out` is a pointer the caller owns (checked non-NULL before any work).
unsafe fn write_out<T>(out: *mut *mut T, value: Box<T>) {
    *out = Box::into_raw(value);
}

/// # Safety
/// `out` is a pointer the caller owns (checked non-NULL before any work).
unsafe fn write_string(out: *mut *mut c_char, text: &str) {
    *out = c_string(text).into_raw();
}

/// # Safety
/// `files` is NULL only with `count` 0; otherwise it points to `count` readable entries whose
/// strings are valid for the call.
unsafe fn bundle_files(
    files: *const arbiter_bundle_file,
    count: usize,
) -> Result<Vec<BundleFile>, Failure> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if files.is_null() {
        return Err(Failure::null("files"));
    }
    std::slice::from_raw_parts(files, count)
        .iter()
        .map(|f| {
            Ok(BundleFile::new(
                bytes_str(f.path.ptr, f.path.len, "path")?,
                bytes(f.contents.ptr, f.contents.len, "contents")?,
            ))
        })
        .collect()
}

fn new_engine(
    engine_out: *mut *mut arbiter_engine,
    load: impl FnOnce() -> Result<Engine, Failure>,
) -> Result<(), Failure> {
    if engine_out.is_null() {
        return Err(Failure::null("engine_out"));
    }
    let engine = load()?;
    // SAFETY: checked non-NULL above; the caller owns it.
    unsafe { write_out(engine_out, Box::new(arbiter_engine { engine })) };
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
    boundary(err_out, || {
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
    boundary(err_out, || {
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
    boundary(err_out, || {
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
    boundary(err_out, || {
        let path = c_str(path, "path")?;
        let pems: Vec<&str> = match key_count {
            0 => Vec::new(),
            _ if public_keys.is_null() => return Err(Failure::null("public_keys")),
            _ => std::slice::from_raw_parts(public_keys, key_count)
                .iter()
                .map(|k| bytes_str(k.ptr, k.len, "public_keys"))
                .collect::<Result<_, _>>()?,
        };
        let keys = TrustedKeys::from_pems(&pems).map_err(LoadError::from)?;
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
    boundary(err_out, || {
        let engine = engine_ref(engine)?;
        Ok(engine.reload_from_dir(c_str(path, "path")?)?)
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
    boundary(err_out, || {
        let engine = engine_ref(engine)?;
        Ok(engine.reload_from_files(bundle_files(files, count)?)?)
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
    let input = (request, request_len, "request");
    string_call(
        engine,
        input,
        (decision_out, "decision_out"),
        err_out,
        |e, request| Ok(e.authorize_json(request)?),
    )
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
    let input = (requests, requests_len, "requests");
    string_call(
        engine,
        input,
        (answers_out, "answers_out"),
        err_out,
        |e, requests| Ok(e.authorize_json_batch(requests)?),
    )
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
    boundary(err_out, || {
        if decision_out.is_null() {
            return Err(Failure::null("decision_out"));
        }
        write_out(decision_out, decide_parts(engine, request)?);
        Ok(())
    })
}

/// A decision packed into bytes by `arbiter_engine_authorize_packed`: `len` bytes at `data`.
///
/// Layout, with every number a native-endian `uint32_t` and no padding: allowed (1 or 0), the
/// number of reasons R, the number of errors E; then R reasons, each a string; then E errors,
/// each three strings: kind, policy, message. A string is its length in bytes and that many
/// bytes of UTF-8; a policy of length `ARBITER_PACKED_ABSENT` is absent (no bytes follow).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct arbiter_packed_decision {
    pub data: *const u8,
    pub len: usize,
}

/// The length of an absent string in a packed decision.
pub const ARBITER_PACKED_ABSENT: u32 = 0xFFFF_FFFF;

/// Decides like `arbiter_engine_authorize` and packs the decision into the caller's buffer
/// `buf` (`buf_len` bytes), for bindings where each call into the library and each allocation
/// costs: one call, and nothing to free when the decision fits. On success `*packed_out`
/// describes it (layout at `arbiter_packed_decision`): `data` is `buf` when it fits, else memory
/// Arbiter allocated, which the caller frees with `arbiter_packed_decision_free`.
///
/// # Safety
/// As `arbiter_engine_authorize`; `buf` is NULL (with `buf_len` 0) or `buf_len` writable bytes;
/// `packed_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_authorize_packed(
    engine: *const arbiter_engine,
    request: *const arbiter_request,
    buf: *mut u8,
    buf_len: usize,
    packed_out: *mut arbiter_packed_decision,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    boundary(err_out, || {
        if packed_out.is_null() {
            return Err(Failure::null("packed_out"));
        }
        if buf.is_null() && buf_len > 0 {
            return Err(Failure::null("buf"));
        }
        let decision = decide_request(engine, request)?;
        let len = packed_len(&decision);
        let data = if len <= buf_len {
            pack(&decision, std::slice::from_raw_parts_mut(buf, len));
            buf.cast_const()
        } else {
            let mut owned = vec![0u8; len].into_boxed_slice();
            pack(&decision, &mut owned);
            Box::into_raw(owned).cast::<u8>().cast_const()
        };
        *packed_out = arbiter_packed_decision { data, len };
        Ok(())
    })
}

/// Frees a packed decision Arbiter allocated (one whose `data` is not the caller's buffer).
/// A NULL `data` does nothing.
///
/// # Safety
/// `packed` is from `arbiter_engine_authorize_packed`, its `data` not the caller's buffer, not
/// freed before.
#[no_mangle]
pub unsafe extern "C" fn arbiter_packed_decision_free(packed: arbiter_packed_decision) {
    if !packed.data.is_null() {
        let slice = ptr::slice_from_raw_parts_mut(packed.data.cast_mut(), packed.len);
        drop(Box::from_raw(slice));
    }
}

/// The bytes `pack` writes for `decision`.
pub(crate) fn packed_len(decision: &Decision) -> usize {
    let strings = decision.reasons.iter().map(String::len).sum::<usize>()
        + decision
            .errors
            .iter()
            .map(|e| {
                e.kind.as_str().len() + e.policy.as_ref().map_or(0, String::len) + e.message.len()
            })
            .sum::<usize>();
    4 * (3 + decision.reasons.len() + 3 * decision.errors.len()) + strings
}

/// Writes `decision` into `out`, exactly `packed_len(decision)` bytes.
pub(crate) fn pack(decision: &Decision, out: &mut [u8]) {
    let mut p = Packer { out, at: 0 };
    p.number(usize::from(decision.allowed()));
    p.number(decision.reasons.len());
    p.number(decision.errors.len());
    for reason in &decision.reasons {
        p.string(reason);
    }
    for error in &decision.errors {
        p.string(error.kind.as_str());
        match &error.policy {
            Some(policy) => p.string(policy),
            None => p.bytes(&ARBITER_PACKED_ABSENT.to_ne_bytes()),
        }
        p.string(&error.message);
    }
}

/// A cursor writing a packed decision.
struct Packer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Packer<'_> {
    fn bytes(&mut self, bytes: &[u8]) {
        self.out[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    /// A count or a length (a request's limits keep both far below `u32::MAX`).
    fn number(&mut self, n: usize) {
        self.bytes(&u32::try_from(n).unwrap_or(u32::MAX - 1).to_ne_bytes());
    }

    fn string(&mut self, s: &str) {
        self.number(s.len());
        self.bytes(s.as_bytes());
    }
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
unsafe fn decide_request(
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

fn decision_strings(decision: Decision) -> arbiter_decision {
    let reasons: Vec<CString> = decision.reasons.iter().map(|r| c_string(r)).collect();
    let errors: Vec<DecisionErrorStrings> = decision
        .errors
        .iter()
        .map(|e| DecisionErrorStrings {
            kind: c_string(e.kind.as_str()),
            policy: e.policy.as_deref().map(c_string),
            message: c_string(&e.message),
        })
        .collect();
    // The CStrings' buffers live on the heap: these pointers stay valid as the vectors move.
    let reason_ptrs = reasons.iter().map(|r| r.as_ptr()).collect();
    let error_views = errors
        .iter()
        .map(|e| arbiter_decision_error_view {
            kind: e.kind.as_ptr(),
            policy: e.policy.as_ref().map_or(ptr::null(), |p| p.as_ptr()),
            message: e.message.as_ptr(),
        })
        .collect();
    arbiter_decision {
        decision,
        reasons,
        errors,
        reason_ptrs,
        error_views,
    }
}

/// The whole decision at once (an `arbiter_decision_view`), for bindings where each call into
/// the library costs. A NULL decision is a deny with nothing in it.
///
/// # Safety
/// `decision` is NULL or a live decision.
#[no_mangle]
pub unsafe extern "C" fn arbiter_decision_get_view(
    decision: *const arbiter_decision,
) -> arbiter_decision_view {
    match decision.as_ref() {
        None => arbiter_decision_view {
            allowed: false,
            reasons: ptr::null(),
            reason_count: 0,
            errors: ptr::null(),
            error_count: 0,
        },
        Some(d) => view_of(d),
    }
}

fn view_of(d: &arbiter_decision) -> arbiter_decision_view {
    // An empty list is NULL, never the dangling pointer of an empty Vec (Go's garbage
    // collector rejects such values in pointer-typed variables).
    arbiter_decision_view {
        allowed: d.decision.allowed(),
        reasons: if d.reason_ptrs.is_empty() {
            ptr::null()
        } else {
            d.reason_ptrs.as_ptr()
        },
        reason_count: d.reason_ptrs.len(),
        errors: if d.error_views.is_empty() {
            ptr::null()
        } else {
            d.error_views.as_ptr()
        },
        error_count: d.error_views.len(),
    }
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
    let input = (token, token_len, "token");
    string_call(
        engine,
        input,
        (info_out, "info_out"),
        err_out,
        |e, token| {
            Ok(TokenReport::from(&e.verify_token(token))
                .to_json()
                .to_string())
        },
    )
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
    boundary(err_out, || {
        let engine = engine_ref(engine)?;
        Ok(engine.set_candidate_from_dir(c_str(path, "path")?)?)
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
    boundary(err_out, || {
        let engine = engine_ref(engine)?;
        Ok(engine.set_candidate_from_files(bundle_files(files, count)?)?)
    })
}

/// Drops the candidate bundle. NULL does nothing.
///
/// # Safety
/// `engine` is NULL or a live engine.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_clear_candidate(engine: *const arbiter_engine) {
    if let Some(engine) = engine.as_ref() {
        let _ = catch_unwind(AssertUnwindSafe(|| engine.engine.clear_candidate()));
    }
}

/// Receives one decision log event: `event_len` bytes of JSON at `event`, NUL-terminated,
/// valid only during the call. Called on the deciding thread, from many threads at once.
pub type arbiter_decision_log_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const c_char, event_len: usize)>;

/// Called once when Arbiter no longer needs a decision log's `user_data`.
pub type arbiter_release_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// A host's decision log callback with its `user_data`, released when dropped.
struct CSink {
    log: arbiter_decision_log_fn,
    release: arbiter_release_fn,
    user_data: *mut c_void,
}

// SAFETY: `arbiter_engine_set_decision_log` requires the callback and `user_data` to be usable
// from any thread, at once.
unsafe impl Send for CSink {}
unsafe impl Sync for CSink {}

impl CSink {
    fn log(&self, event: &str) {
        if let Some(log) = self.log {
            let event = c_string(event);
            // SAFETY: the host gave this callback for this `user_data`; `event` outlives the call.
            unsafe { log(self.user_data, event.as_ptr(), event.as_bytes().len()) };
        }
    }
}

impl Drop for CSink {
    fn drop(&mut self) {
        if let Some(release) = self.release {
            // SAFETY: the host gave this function for this `user_data`; called once.
            unsafe { release(self.user_data) };
        }
    }
}

/// Logs the engine's decisions from now on: each decision (of every call but explain) is
/// offered as one JSON event (see the README's decision logs) to `log`, which runs on the
/// deciding thread inside the deciding call, from many threads at once. `sample_rate` (0 to 1)
/// is the fraction logged (decisions with the same `request_id` alike); at most
/// `max_events_per_second` are logged (0: no limit). Replaces any earlier log. An out-of-range
/// option fails with `ARBITER_RESULT_INVALID_ARGUMENT` and changes nothing.
///
/// `release` (may be NULL) is called exactly once, when Arbiter is done with `user_data`: when
/// this log is replaced or cleared and no decision under way still uses it, when the engine is
/// freed, or before this call returns if it fails.
///
/// # Safety
/// `engine` is NULL or a live engine; `log` and `release` are safe to call with `user_data`
/// from any thread, `log` concurrently; `err_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_set_decision_log(
    engine: *const arbiter_engine,
    sample_rate: f64,
    max_events_per_second: u32,
    log: arbiter_decision_log_fn,
    release: arbiter_release_fn,
    user_data: *mut c_void,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    let sink = CSink {
        log,
        release,
        user_data,
    };
    boundary(err_out, move || {
        let engine = engine_ref(engine)?;
        if log.is_none() {
            return Err(Failure::null("log"));
        }
        let options = DecisionLogOptions {
            sample_rate,
            max_events_per_second: (max_events_per_second > 0).then_some(max_events_per_second),
        };
        engine
            .set_decision_log(options, move |event| sink.log(event))
            .map_err(|e| Failure::new(ErrorKind::InvalidArgument, e.to_string()))
    })
}

/// Stops logging decisions (the log's `release` runs once no decision under way uses it). NULL
/// does nothing.
///
/// # Safety
/// `engine` is NULL or a live engine.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_clear_decision_log(engine: *const arbiter_engine) {
    if let Some(engine) = engine.as_ref() {
        let _ = catch_unwind(AssertUnwindSafe(|| engine.engine.clear_decision_log()));
    }
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
    engine_string(engine, json_out, err_out, |e| e.shadow_report().to_json())
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
    let (input, out) = (
        (request, request_len, "request"),
        (explanation_out, "explanation_out"),
    );
    string_call(engine, input, out, err_out, |e, request| {
        Ok(e.explain_json(request)?.to_json())
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
    let (input, out) = (
        (request, request_len, "request"),
        (explanation_out, "explanation_out"),
    );
    string_call(engine, input, out, err_out, |e, request| {
        Ok(e.explain_json(request)?.to_text())
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
    err_out: *mut *mut arbiter_error,
    call: impl FnOnce(&Engine, &str) -> Result<String, Failure>,
) -> u32 {
    boundary(err_out, || {
        let engine = engine_ref(engine)?;
        let input = bytes_str(input, input_len, input_name)?;
        if out.is_null() {
            return Err(Failure::null(out_name));
        }
        write_string(out, &call(engine, input)?);
        Ok(())
    })
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
    engine_string(engine, json_out, err_out, |e| e.metrics().to_json())
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
    engine_string(engine, text_out, err_out, |e| e.metrics().to_prometheus())
}

/// A call that takes no input and hands out a string `report` makes of the engine.
///
/// # Safety
/// As `arbiter_engine_metrics_json`.
unsafe fn engine_string(
    engine: *const arbiter_engine,
    out: *mut *mut c_char,
    err_out: *mut *mut arbiter_error,
    report: impl FnOnce(&Engine) -> String,
) -> u32 {
    boundary(err_out, || {
        let engine = engine_ref(engine)?;
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        write_string(out, &report(engine));
        Ok(())
    })
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
    if let Some(engine) = engine.as_ref() {
        engine.engine.inject_panics(on);
    }
}

/// Frees an engine. NULL does nothing. No other thread may be using it.
///
/// # Safety
/// `engine` is NULL or an engine from `arbiter_engine_new_*`, not freed before.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_free(engine: *mut arbiter_engine) {
    if !engine.is_null() {
        // A panic in a destructor must not unwind into C either; there is nothing to report.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(engine))));
    }
}

/// Whether the decision allows the request. NULL is a deny.
///
/// # Safety
/// `decision` is NULL or a live decision.
#[no_mangle]
pub unsafe extern "C" fn arbiter_decision_is_allowed(decision: *const arbiter_decision) -> bool {
    decision.as_ref().is_some_and(|d| d.decision.allowed())
}

/// How many determining policies the decision names (0 for NULL).
///
/// # Safety
/// `decision` is NULL or a live decision.
#[no_mangle]
pub unsafe extern "C" fn arbiter_decision_reason_count(decision: *const arbiter_decision) -> usize {
    decision.as_ref().map_or(0, |d| d.reasons.len())
}

/// The id of the `index`th determining policy, or NULL when out of range. Valid until the
/// decision is freed.
///
/// # Safety
/// `decision` is NULL or a live decision.
#[no_mangle]
pub unsafe extern "C" fn arbiter_decision_reason(
    decision: *const arbiter_decision,
    index: usize,
) -> *const c_char {
    decision
        .as_ref()
        .and_then(|d| d.reasons.get(index))
        .map_or(ptr::null(), |r| r.as_ptr())
}

/// How many errors the decision carries (0 for NULL).
///
/// # Safety
/// `decision` is NULL or a live decision.
#[no_mangle]
pub unsafe extern "C" fn arbiter_decision_error_count(decision: *const arbiter_decision) -> usize {
    decision.as_ref().map_or(0, |d| d.errors.len())
}

/// The kind of the `index`th error (`"policy_evaluation"`, `"expired"`, ...), or NULL when out
/// of range. Valid until the decision is freed.
///
/// # Safety
/// `decision` is NULL or a live decision.
#[no_mangle]
pub unsafe extern "C" fn arbiter_decision_error_kind(
    decision: *const arbiter_decision,
    index: usize,
) -> *const c_char {
    decision
        .as_ref()
        .and_then(|d| d.errors.get(index))
        .map_or(ptr::null(), |e| e.kind.as_ptr())
}

/// The policy of the `index`th error, or NULL when it names none or is out of range. Valid
/// until the decision is freed.
///
/// # Safety
/// `decision` is NULL or a live decision.
#[no_mangle]
pub unsafe extern "C" fn arbiter_decision_error_policy(
    decision: *const arbiter_decision,
    index: usize,
) -> *const c_char {
    decision
        .as_ref()
        .and_then(|d| d.errors.get(index))
        .and_then(|e| e.policy.as_ref())
        .map_or(ptr::null(), |p| p.as_ptr())
}

/// The message of the `index`th error, or NULL when out of range. Valid until the decision is
/// freed.
///
/// # Safety
/// `decision` is NULL or a live decision.
#[no_mangle]
pub unsafe extern "C" fn arbiter_decision_error_message(
    decision: *const arbiter_decision,
    index: usize,
) -> *const c_char {
    decision
        .as_ref()
        .and_then(|d| d.errors.get(index))
        .map_or(ptr::null(), |e| e.message.as_ptr())
}

/// The decision as contract JSON. On success `*json_out` receives a string the caller frees
/// with `arbiter_string_free`.
///
/// # Safety
/// `decision` is NULL or a live decision; `json_out` and `err_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_decision_to_json(
    decision: *const arbiter_decision,
    json_out: *mut *mut c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    boundary(err_out, || {
        let decision = decision.as_ref().ok_or_else(|| Failure::null("decision"))?;
        if json_out.is_null() {
            return Err(Failure::null("json_out"));
        }
        write_string(json_out, &decision.decision.to_json());
        Ok(())
    })
}

/// Frees a decision. NULL does nothing.
///
/// # Safety
/// `decision` is NULL or a decision from `arbiter_engine_authorize`, not freed before.
#[no_mangle]
pub unsafe extern "C" fn arbiter_decision_free(decision: *mut arbiter_decision) {
    if !decision.is_null() {
        drop(Box::from_raw(decision));
    }
}

/// Frees a string Arbiter handed out. NULL does nothing.
///
/// # Safety
/// `s` is NULL or a string from an Arbiter `_out` parameter, not freed before.
#[no_mangle]
pub unsafe extern "C" fn arbiter_string_free(s: *mut c_char) {
    if !s.is_null() {
        drop(CString::from_raw(s));
    }
}

/// The error's result code (0 for NULL).
///
/// # Safety
/// `err` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn arbiter_error_code(err: *const arbiter_error) -> u32 {
    err.as_ref().map_or(OK, |e| e.code)
}

/// The error's kind, e.g. `"policy_parse"` (`""` for NULL). Valid until `arbiter_error_free`.
///
/// # Safety
/// `err` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn arbiter_error_kind(err: *const arbiter_error) -> *const c_char {
    err.as_ref().map_or(c"".as_ptr(), |e| e.kind.as_ptr())
}

/// The error's one-line message (`""` for NULL). Valid until `arbiter_error_free`.
///
/// # Safety
/// `err` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn arbiter_error_message(err: *const arbiter_error) -> *const c_char {
    err.as_ref().map_or(c"".as_ptr(), |e| e.message.as_ptr())
}

/// Frees an error. NULL does nothing.
///
/// # Safety
/// `err` is NULL or an error from an Arbiter `err_out` parameter, not freed before.
#[no_mangle]
pub unsafe extern "C" fn arbiter_error_free(err: *mut arbiter_error) {
    if !err.is_null() {
        drop(Box::from_raw(err));
    }
}

/// The snake_case kind of a result code (`"policy_parse"` for `ARBITER_RESULT_POLICY_PARSE`),
/// or NULL for `ARBITER_RESULT_OK` and any code that is not one of Arbiter's. Static; never
/// freed; may be called from any thread.
#[no_mangle]
pub extern "C" fn arbiter_result_kind(code: u32) -> *const c_char {
    static KINDS: std::sync::LazyLock<Vec<(u32, CString)>> = std::sync::LazyLock::new(|| {
        ErrorKind::ALL
            .iter()
            .map(|k| (k.code(), c_string(k.as_str())))
            .collect()
    });
    // Nothing here can panic but the first use's allocation; a NULL then is "unknown".
    catch_unwind(|| {
        KINDS
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(ptr::null(), |(_, kind)| kind.as_ptr())
    })
    .unwrap_or(ptr::null())
}

/// The library's version, e.g. `"0.1.0"`. Static; never freed.
#[no_mangle]
pub extern "C" fn arbiter_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// The C ABI's pointer handling, driven from Rust: what `make miri` runs under Miri (which
/// checks every unsafe access, aliasing and leak). Bundles here have no tokens, so nothing
/// reaches aws-lc's C code, which Miri cannot run.
#[cfg(test)]
mod tests {
    use super::*;

    /// The header's result codes are core's error table, each named after its kind: a kind
    /// added to core and missing here (or misnamed) fails this test.
    #[test]
    fn the_header_has_one_result_code_per_error_kind_named_after_it() {
        let header = include_str!("../include/arbiter.h");
        let mut declared: Vec<(String, u32)> = header
            .lines()
            .filter_map(|line| {
                let (name, value) = line.trim().trim_end_matches(',').split_once(" = ")?;
                let kind = name.strip_prefix("ARBITER_RESULT_")?;
                Some((kind.to_lowercase(), value.parse().ok()?))
            })
            .collect();
        declared.sort_by_key(|(_, code)| *code);
        let mut table: Vec<(String, u32)> = ErrorKind::ALL
            .iter()
            .map(|k| (k.as_str().to_owned(), k.code()))
            .collect();
        table.insert(0, ("ok".to_owned(), 0));
        assert_eq!(declared, table);
        for kind in ErrorKind::ALL {
            let report = Failure::new(kind, "x").report(ptr::null_mut());
            assert_eq!(report, kind.code());
            let name = unsafe { CStr::from_ptr(arbiter_result_kind(kind.code())) };
            assert_eq!(name.to_str().unwrap(), kind.as_str());
        }
        assert!(arbiter_result_kind(0).is_null());
        assert!(arbiter_result_kind(999).is_null());
    }

    const POLICIES: &str = r#"@id("owner") permit (principal, action, resource) when { resource.owner == principal };"#;
    const ENTITIES: &str = r#"[{"uid": {"type": "Doc", "id": "d1"}, "attrs": {"owner": {"__entity": {"type": "User", "id": "ann"}}}, "parents": []}]"#;
    const REQUEST: &str = r#"{"principal": {"type": "User", "id": "ann"}, "action": {"type": "Action", "id": "read"}, "resource": {"type": "Doc", "id": "d1"}}"#;

    fn s(text: &str) -> arbiter_str {
        arbiter_str {
            ptr: text.as_ptr().cast(),
            len: text.len(),
        }
    }

    fn text(p: *const c_char) -> String {
        unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned()
    }

    fn engine(policies: &str) -> *mut arbiter_engine {
        let files = [
            arbiter_bundle_file {
                path: s("p.cedar"),
                contents: s(policies),
            },
            arbiter_bundle_file {
                path: s("entities.json"),
                contents: s(ENTITIES),
            },
        ];
        let mut engine = ptr::null_mut();
        let code = unsafe {
            arbiter_engine_new_from_files(files.as_ptr(), 2, &mut engine, ptr::null_mut())
        };
        assert_eq!(code, ARBITER_RESULT_OK);
        engine
    }

    #[test]
    fn json_and_fast_path_decisions_are_read_and_freed() {
        let engine = engine(POLICIES);
        unsafe {
            let mut out = ptr::null_mut();
            let code = arbiter_engine_authorize_json(
                engine,
                REQUEST.as_ptr().cast(),
                REQUEST.len(),
                &mut out,
                ptr::null_mut(),
            );
            assert_eq!(code, ARBITER_RESULT_OK);
            assert_eq!(
                text(out),
                r#"{"decision":"allow","reasons":["owner"],"errors":[]}"#
            );
            arbiter_string_free(out);

            let request = arbiter_request {
                principal: arbiter_entity_ref {
                    type_name: s("User"),
                    id: s("ann"),
                },
                action: arbiter_entity_ref {
                    type_name: s("Action"),
                    id: s("read"),
                },
                resource: arbiter_entity_ref {
                    type_name: s("Doc"),
                    id: s("d1"),
                },
                context_json: s("{}"),
                entities_json: arbiter_str {
                    ptr: ptr::null(),
                    len: 0,
                },
                token: arbiter_str {
                    ptr: ptr::null(),
                    len: 0,
                },
                request_id: arbiter_str {
                    ptr: ptr::null(),
                    len: 0,
                },
            };
            let mut decision = ptr::null_mut();
            assert_eq!(
                arbiter_engine_authorize(engine, &request, &mut decision, ptr::null_mut()),
                ARBITER_RESULT_OK
            );
            let view = arbiter_decision_get_view(decision);
            assert!(view.allowed && arbiter_decision_is_allowed(decision));
            assert_eq!((view.reason_count, view.error_count), (1, 0));
            assert_eq!(text(*view.reasons), "owner");
            assert_eq!(text(arbiter_decision_reason(decision, 0)), "owner");
            assert!(arbiter_decision_reason(decision, 1).is_null());
            let mut json = ptr::null_mut();
            assert_eq!(
                arbiter_decision_to_json(decision, &mut json, ptr::null_mut()),
                ARBITER_RESULT_OK
            );
            assert!(text(json).starts_with(r#"{"decision":"allow""#));
            arbiter_string_free(json);
            arbiter_decision_free(decision);

            // The decision packed into the caller's buffer, in one call.
            let mut buf = [0u8; 64];
            let mut packed = arbiter_packed_decision {
                data: ptr::null(),
                len: 0,
            };
            let code = arbiter_engine_authorize_packed(
                engine,
                &request,
                buf.as_mut_ptr(),
                buf.len(),
                &mut packed,
                ptr::null_mut(),
            );
            assert_eq!(code, ARBITER_RESULT_OK);
            assert_eq!(packed.data, buf.as_ptr());
            assert_eq!(unpack(&packed), (true, vec!["owner".to_owned()], vec![]));

            // A policy that errors: the error's strings, through the view.
            let erring = engine_with_error();
            let mut decision = ptr::null_mut();
            assert_eq!(
                arbiter_engine_authorize(erring, &request, &mut decision, ptr::null_mut()),
                ARBITER_RESULT_OK
            );
            let view = arbiter_decision_get_view(decision);
            assert!(!view.allowed);
            assert_eq!(view.error_count, 1);
            let error = &*view.errors;
            assert_eq!(text(error.kind), "policy_evaluation");
            assert_eq!(text(error.policy), "bad");
            assert!(!text(error.message).is_empty());
            assert_eq!(
                text(arbiter_decision_error_kind(decision, 0)),
                "policy_evaluation"
            );
            arbiter_decision_free(decision);

            // Packed, into a buffer too small for it: Arbiter's memory, freed by the caller.
            let code = arbiter_engine_authorize_packed(
                erring,
                &request,
                buf.as_mut_ptr(),
                16,
                &mut packed,
                ptr::null_mut(),
            );
            assert_eq!(code, ARBITER_RESULT_OK);
            assert_ne!(packed.data, buf.as_ptr());
            let (allowed, reasons, errors) = unpack(&packed);
            assert!(!allowed && reasons.is_empty());
            assert_eq!(errors.len(), 1);
            assert_eq!(
                errors[0][..2],
                ["policy_evaluation".to_owned(), "bad".to_owned()]
            );
            assert!(!errors[0][2].is_empty());
            arbiter_packed_decision_free(packed);
            // No buffer at all is a buffer too small; a NULL one with a length is refused.
            let code = arbiter_engine_authorize_packed(
                engine,
                &request,
                ptr::null_mut(),
                0,
                &mut packed,
                ptr::null_mut(),
            );
            assert_eq!(code, ARBITER_RESULT_OK);
            assert_eq!(unpack(&packed).1, ["owner"]);
            arbiter_packed_decision_free(packed);
            let mut err = ptr::null_mut();
            let code = arbiter_engine_authorize_packed(
                engine,
                &request,
                ptr::null_mut(),
                8,
                &mut packed,
                &mut err,
            );
            assert_eq!(code, ARBITER_RESULT_NULL_ARGUMENT);
            arbiter_error_free(err);
            arbiter_engine_free(erring);
            arbiter_engine_free(engine);
        }
    }

    /// A packed decision read back: allowed, reasons, and each error's kind, policy (empty when
    /// absent) and message.
    unsafe fn unpack(packed: &arbiter_packed_decision) -> (bool, Vec<String>, Vec<[String; 3]>) {
        fn number(bytes: &[u8], at: &mut usize) -> u32 {
            *at += 4;
            u32::from_ne_bytes(bytes[*at - 4..*at].try_into().unwrap())
        }
        fn string(bytes: &[u8], at: &mut usize) -> String {
            let n = number(bytes, at);
            if n == ARBITER_PACKED_ABSENT {
                return String::new();
            }
            *at += n as usize;
            String::from_utf8(bytes[*at - n as usize..*at].to_vec()).unwrap()
        }
        let bytes = std::slice::from_raw_parts(packed.data, packed.len);
        let at = &mut 0;
        let (allowed, reasons, errors) = (number(bytes, at), number(bytes, at), number(bytes, at));
        let reasons = (0..reasons).map(|_| string(bytes, at)).collect();
        let errors = (0..errors)
            .map(|_| [string(bytes, at), string(bytes, at), string(bytes, at)])
            .collect();
        assert_eq!(*at, bytes.len(), "the length covers the decision exactly");
        (allowed == 1, reasons, errors)
    }

    fn engine_with_error() -> *mut arbiter_engine {
        engine(r#"@id("bad") permit (principal, action, resource) when { resource.missing == 1 };"#)
    }

    #[test]
    fn errors_are_handed_out_only_on_failure_and_outputs_only_on_success() {
        let engine = engine(POLICIES);
        unsafe {
            let (mut out, mut err) = (ptr::null_mut(), ptr::null_mut());
            let bad = b"{\"principal\": \xff}";
            let code = arbiter_engine_authorize_json(
                engine,
                bad.as_ptr().cast(),
                bad.len(),
                &mut out,
                &mut err,
            );
            assert_eq!(code, ARBITER_RESULT_INVALID_UTF8);
            assert!(out.is_null());
            assert_eq!(arbiter_error_code(err), code);
            assert_eq!(text(arbiter_error_kind(err)), "invalid_utf8");
            arbiter_error_free(err);

            let mut err = ptr::null_mut();
            let code =
                arbiter_engine_authorize_json(engine, b"{".as_ptr().cast(), 1, &mut out, &mut err);
            assert_eq!(code, ARBITER_RESULT_MALFORMED_REQUEST);
            assert!(out.is_null());
            assert!(!text(arbiter_error_message(err)).is_empty());
            arbiter_error_free(err);

            let code = arbiter_engine_authorize_json(
                ptr::null(),
                REQUEST.as_ptr().cast(),
                REQUEST.len(),
                &mut out,
                ptr::null_mut(),
            );
            assert_eq!(code, ARBITER_RESULT_NULL_ARGUMENT);
            assert_eq!(arbiter_error_code(ptr::null()), ARBITER_RESULT_OK);
            assert_eq!(text(arbiter_error_kind(ptr::null())), "");

            // A failed reload leaves the engine deciding as before; a good one replaces it.
            let broken = [arbiter_bundle_file {
                path: s("p.cedar"),
                contents: s("permit ("),
            }];
            let mut err = ptr::null_mut();
            assert_eq!(
                arbiter_engine_reload_from_files(engine, broken.as_ptr(), 1, &mut err),
                ARBITER_RESULT_POLICY_PARSE
            );
            assert!(text(arbiter_error_message(err)).contains("p.cedar:1:"));
            arbiter_error_free(err);
            let batch = format!("[{REQUEST}, 7]");
            let mut answers = ptr::null_mut();
            assert_eq!(
                arbiter_engine_authorize_json_batch(
                    engine,
                    batch.as_ptr().cast(),
                    batch.len(),
                    &mut answers,
                    ptr::null_mut()
                ),
                ARBITER_RESULT_OK
            );
            let answers = CString::from_raw(answers).into_string().unwrap();
            assert!(
                answers.starts_with(r#"[{"decision":"allow""#)
                    && answers.contains("malformed_request"),
                "{answers}"
            );

            // Every free takes NULL.
            arbiter_engine_free(ptr::null_mut());
            arbiter_decision_free(ptr::null_mut());
            arbiter_string_free(ptr::null_mut());
            arbiter_error_free(ptr::null_mut());
            arbiter_engine_free(engine);
        }
        assert!(text(arbiter_version()).contains('.'));
    }

    /// A string-out call: its output, or `None` (and the error freed) on failure.
    fn output(
        call: impl FnOnce(*mut *mut c_char, *mut *mut arbiter_error) -> u32,
    ) -> Option<String> {
        let (mut out, mut err) = (ptr::null_mut(), ptr::null_mut());
        match call(&mut out, &mut err) {
            OK => Some(unsafe { CString::from_raw(out) }.into_string().unwrap()),
            _ => {
                unsafe { arbiter_error_free(err) };
                None
            }
        }
    }

    #[test]
    fn operator_calls_hand_out_strings_the_caller_frees() {
        let engine = engine(POLICIES);
        unsafe {
            let explained = output(|o, e| {
                arbiter_engine_explain_json(engine, REQUEST.as_ptr().cast(), REQUEST.len(), o, e)
            })
            .unwrap();
            assert!(
                explained.contains(
                    r#""policies":[{"id":"owner","effect":"permit","outcome":"satisfied""#
                ),
                "{explained}"
            );
            let text = output(|o, e| {
                arbiter_engine_explain_text(engine, REQUEST.as_ptr().cast(), REQUEST.len(), o, e)
            })
            .unwrap();
            assert!(text.starts_with("ALLOW by owner\n"), "{text}");
            assert_eq!(
                output(|o, e| arbiter_engine_explain_json(engine, b"{".as_ptr().cast(), 1, o, e)),
                None
            );

            let candidate = [arbiter_bundle_file {
                path: s("p.cedar"),
                contents: s("forbid (principal, action, resource);"),
            }];
            assert_eq!(
                arbiter_engine_set_candidate_from_files(
                    engine,
                    candidate.as_ptr(),
                    1,
                    ptr::null_mut()
                ),
                ARBITER_RESULT_OK
            );
            assert!(output(|o, e| arbiter_engine_authorize_json(
                engine,
                REQUEST.as_ptr().cast(),
                REQUEST.len(),
                o,
                e
            ))
            .is_some());
            let report = output(|o, e| arbiter_engine_shadow_report_json(engine, o, e)).unwrap();
            assert!(
                report.contains(r#""agreements":0,"disagreements":1"#),
                "{report}"
            );
            let metrics = output(|o, e| arbiter_engine_metrics_json(engine, o, e)).unwrap();
            assert!(metrics.contains(r#""shadow_disagreements":1"#), "{metrics}");
            arbiter_engine_clear_candidate(engine);
            let text = output(|o, e| arbiter_engine_metrics_prometheus(engine, o, e)).unwrap();
            assert!(
                text.contains(r#"arbiter_decisions_total{action="other",decision="allow"} 1"#),
                "{text}"
            );
            assert_eq!(
                output(|o, e| arbiter_engine_metrics_json(ptr::null(), o, e)),
                None
            );
            arbiter_engine_free(engine);
        }
    }

    /// What a test's decision log callback saw: the events, and how often it was released.
    #[derive(Default)]
    struct Seen {
        events: std::sync::Mutex<Vec<String>>,
        released: std::sync::atomic::AtomicUsize,
    }

    unsafe extern "C" fn seen_event(user_data: *mut c_void, event: *const c_char, len: usize) {
        let seen = &*user_data.cast::<Seen>();
        let bytes = std::slice::from_raw_parts(event.cast::<u8>(), len);
        assert_eq!(CStr::from_ptr(event).to_bytes(), bytes, "NUL-terminated");
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        seen.events.lock().unwrap().push(text);
    }

    unsafe extern "C" fn seen_release(user_data: *mut c_void) {
        let seen = &*user_data.cast::<Seen>();
        seen.released
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    #[test]
    fn a_decision_log_hands_events_over_and_releases_once() {
        let released = |seen: &Seen| seen.released.load(std::sync::atomic::Ordering::SeqCst);
        let engine = engine(POLICIES);
        let seen = Seen::default();
        let user_data = std::ptr::addr_of!(seen).cast_mut().cast::<c_void>();
        let set = |rate: f64, err_out: *mut *mut arbiter_error| unsafe {
            arbiter_engine_set_decision_log(
                engine,
                rate,
                0,
                Some(seen_event),
                Some(seen_release),
                user_data,
                err_out,
            )
        };
        unsafe {
            assert_eq!(set(1.0, ptr::null_mut()), ARBITER_RESULT_OK);
            let request = r#"{"principal": {"type": "User", "id": "ann"}, "action": {"type": "Action", "id": "read"}, "resource": {"type": "Doc", "id": "d1"}, "request_id": "r-1"}"#;
            let mut out = ptr::null_mut();
            let code = arbiter_engine_authorize_json(
                engine,
                request.as_ptr().cast(),
                request.len(),
                &mut out,
                ptr::null_mut(),
            );
            assert_eq!(code, ARBITER_RESULT_OK);
            arbiter_string_free(out);
            {
                let events = seen.events.lock().unwrap();
                assert_eq!(events.len(), 1);
                let event: serde_json::Value = serde_json::from_str(&events[0]).unwrap();
                assert_eq!(event["request_id"], "r-1");
                assert_eq!(event["decision"], "allow");
                assert_eq!(event["reasons"][0], "owner");
            }
            assert_eq!(released(&seen), 0);

            // A refused option: the code and kind say so, and `release` has run already.
            let mut err = ptr::null_mut();
            assert_eq!(set(2.0, &mut err), ARBITER_RESULT_INVALID_ARGUMENT);
            assert!(text(arbiter_error_message(err)).contains("sample_rate"));
            arbiter_error_free(err);
            assert_eq!(released(&seen), 1);
            // Replacing and clearing release the earlier log; freeing the engine the last.
            assert_eq!(set(1.0, ptr::null_mut()), ARBITER_RESULT_OK);
            assert_eq!(released(&seen), 2);
            arbiter_engine_clear_decision_log(engine);
            assert_eq!(released(&seen), 3);
            assert_eq!(set(0.0, ptr::null_mut()), ARBITER_RESULT_OK);
            arbiter_engine_free(engine);
            assert_eq!(released(&seen), 4);
            assert_eq!(seen.events.lock().unwrap().len(), 1);
            // A NULL engine or callback still releases `user_data`.
            let code = arbiter_engine_set_decision_log(
                ptr::null(),
                1.0,
                0,
                None,
                Some(seen_release),
                user_data,
                ptr::null_mut(),
            );
            assert_eq!(code, ARBITER_RESULT_NULL_ARGUMENT);
            assert_eq!(released(&seen), 5);
        }
    }

    #[test]
    fn threads_decide_while_another_reloads() {
        struct Shared(*mut arbiter_engine);
        // SAFETY: an engine may be used from many threads at once.
        unsafe impl Send for Shared {}
        unsafe impl Sync for Shared {}
        let engine = std::sync::Arc::new(Shared(engine(POLICIES)));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let engine = std::sync::Arc::clone(&engine);
                std::thread::spawn(move || {
                    for _ in 0..3 {
                        let mut out = ptr::null_mut();
                        let code = unsafe {
                            arbiter_engine_authorize_json(
                                engine.0,
                                REQUEST.as_ptr().cast(),
                                REQUEST.len(),
                                &mut out,
                                ptr::null_mut(),
                            )
                        };
                        assert_eq!(code, ARBITER_RESULT_OK);
                        let decision = unsafe { CString::from_raw(out) }.into_string().unwrap();
                        assert!(
                            decision.contains(r#""reasons":["owner"]"#)
                                || decision.contains(r#""reasons":["all"]"#)
                        );
                    }
                })
            })
            .collect();
        let all = [arbiter_bundle_file {
            path: s("p.cedar"),
            contents: s(r#"@id("all") permit (principal, action, resource);"#),
        }];
        for _ in 0..2 {
            assert_eq!(
                unsafe {
                    arbiter_engine_reload_from_files(engine.0, all.as_ptr(), 1, ptr::null_mut())
                },
                ARBITER_RESULT_OK
            );
        }
        for r in readers {
            r.join().unwrap();
        }
        unsafe { arbiter_engine_free(engine.0) };
    }
}
