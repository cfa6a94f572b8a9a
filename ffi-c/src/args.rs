//! What C passes in: borrowed strings, entity references, requests and bundle files, read and
//! checked (NULL, UTF-8) before use; outputs written only on success.

use std::ffi::{c_char, CStr};

use super::engine::arbiter_engine;
use super::result::{c_string, Failure, Report};
use arbiter_core::{BundleFile, Engine, ErrorKind};

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

/// A NUL-terminated UTF-8 argument.
///
/// # Safety
/// `s` is NULL or points to a NUL-terminated string valid for the call.
pub(crate) unsafe fn c_str<'a>(s: *const c_char, what: &str) -> Result<&'a str, Failure> {
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
pub(crate) unsafe fn bytes<'a>(
    ptr: *const c_char,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    Ok(std::slice::from_raw_parts(ptr.cast::<u8>(), len))
}

/// A pointer-and-length UTF-8 argument.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes valid for the call.
pub(crate) unsafe fn bytes_str<'a>(
    ptr: *const c_char,
    len: usize,
    what: &str,
) -> Result<&'a str, Failure> {
    std::str::from_utf8(bytes(ptr, len, what)?)
        .map_err(|_| Failure::new(ErrorKind::InvalidUtf8, format!("`{what}` is not UTF-8")))
}

/// An optional `arbiter_str`: `None` when its pointer is NULL.
///
/// # Safety
/// As `bytes_str`.
pub(crate) unsafe fn optional_str<'a>(
    s: arbiter_str,
    what: &str,
) -> Result<Option<&'a str>, Failure> {
    if s.ptr.is_null() {
        Ok(None)
    } else {
        bytes_str(s.ptr, s.len, what).map(Some)
    }
}

/// # Safety
/// As `bytes_str`, for both parts.
pub(crate) unsafe fn entity_ref<'a>(
    r: arbiter_entity_ref,
    what: &str,
) -> Result<(&'a str, &'a str), Failure> {
    Ok((
        bytes_str(r.type_name.ptr, r.type_name.len, what)?,
        bytes_str(r.id.ptr, r.id.len, what)?,
    ))
}

/// # Safety
/// `engine` is NULL or a live engine.
pub(crate) unsafe fn engine_ref<'a>(engine: *const arbiter_engine) -> Result<&'a Engine, Failure> {
    wrapper_ref(engine).map(|e| &e.engine)
}

/// The engine with what the C ABI keeps beside it.
///
/// # Safety
/// `engine` is NULL or a live engine.
pub(crate) unsafe fn wrapper_ref<'a>(
    engine: *const arbiter_engine,
) -> Result<&'a arbiter_engine, Failure> {
    engine.as_ref().ok_or_else(|| Failure::null("engine"))
}

/// The `count` PEM strings at `keys` (NULL with `count` 0 is none).
///
/// # Safety
/// `keys` points to `count` strings valid for the call, or is NULL.
pub(crate) unsafe fn pems<'a>(
    keys: *const arbiter_str,
    count: usize,
) -> Result<Vec<&'a str>, Failure> {
    match count {
        0 => Ok(Vec::new()),
        _ if keys.is_null() => Err(Failure::null("public_keys")),
        _ => std::slice::from_raw_parts(keys, count)
            .iter()
            .map(|k| bytes_str(k.ptr, k.len, "public_keys"))
            .collect(),
    }
}

/// Writes an owned value to an output pointer.
///
/// # Safety
/// `out` is a pointer the caller owns (checked non-NULL before any work).
pub(crate) unsafe fn write_out<T>(out: *mut *mut T, value: Box<T>) {
    *out = Box::into_raw(value);
}

/// # Safety
/// `out` is a pointer the caller owns (checked non-NULL before any work).
pub(crate) unsafe fn write_string(out: *mut *mut c_char, text: &str) {
    *out = c_string(text).into_raw();
}

/// # Safety
/// `files` is NULL only with `count` 0; otherwise it points to `count` readable entries whose
/// strings are valid for the call.
pub(crate) unsafe fn bundle_files(
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
