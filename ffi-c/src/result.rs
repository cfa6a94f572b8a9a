//! Result codes (core's error table as one C enum), errors handed to C, the panic boundary every
//! fallible call runs in, strings handed out, and the library's version.

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use arbiter_core::{CallError, ErrorKind};

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
    /// `sql/mapping.json` is invalid.
    ARBITER_RESULT_SQL_MAPPING = 109,
    /// `abilities.json` is invalid.
    ARBITER_RESULT_ABILITIES = 110,
    /// `http.json` is invalid.
    ARBITER_RESULT_HTTP = 111,
    /// The request is not valid JSON, lacks a field, or names an entity badly.
    ARBITER_RESULT_MALFORMED_REQUEST = 200,
    /// The request does not conform to the bundle's schema.
    ARBITER_RESULT_INVALID_REQUEST = 201,
    /// The context does not conform to the schema.
    ARBITER_RESULT_INVALID_CONTEXT = 202,
    /// A per-request entity is invalid.
    ARBITER_RESULT_INVALID_ENTITIES = 203,
    /// A query the bundle's SQL mapping cannot express exactly.
    ARBITER_RESULT_UNTRANSLATABLE = 204,
    /// Arbiter panicked outside a decision (loading, reloading, reading arguments); nothing
    /// changed. A panic while deciding is a deny with an `internal` error instead.
    ARBITER_RESULT_INTERNAL = 900,
}

use arbiter_result::*;

/// Success, as the `uint32_t` every fallible call returns.
pub(crate) const OK: u32 = ARBITER_RESULT_OK as u32;

impl PartialEq<arbiter_result> for u32 {
    fn eq(&self, result: &arbiter_result) -> bool {
        *self == *result as u32
    }
}

/// An error: a result code, a kind (`"policy_parse"`, `"malformed_request"`, ...) and a
/// one-line message. Owned by the caller; free it with `arbiter_error_free`.
pub struct arbiter_error {
    pub(crate) code: u32,
    pub(crate) kind: CString,
    pub(crate) message: CString,
}

/// Why a call failed, before it becomes an `arbiter_error`.
pub(crate) type Failure = CallError;

/// The C side of a [`Failure`].
pub(crate) trait Report: Sized {
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
pub(crate) fn c_string(text: &str) -> CString {
    CString::new(text)
        .unwrap_or_else(|_| CString::new(text.replace('\0', "\u{FFFD}")).unwrap_or_default())
}

/// The panic boundary: every exported function's whole body runs inside it (a test checks), so
/// a panic never unwinds into C.
///
/// - `ffi_boundary!(err_out, { ... })`, for a fallible call: the body gives
///   `Result<(), Failure>`; its error, or a panic, becomes the result code and `*err_out`.
/// - `ffi_boundary!({ ... })`, for a call that cannot fail: a panic gives the return type's
///   [`OnPanic`] value instead (NULL, `ARBITER_RESULT_INTERNAL`, a deny, nothing).
macro_rules! ffi_boundary {
    ($err_out:expr, $body:block) => {
        super::result::fallible($err_out, move || $body)
    };
    ($body:block) => {
        super::result::infallible(move || $body)
    };
}
pub(crate) use ffi_boundary;

/// The body of `ffi_boundary!(err_out, ...)`.
pub(crate) fn fallible(
    err_out: *mut *mut arbiter_error,
    body: impl FnOnce() -> Result<(), Failure>,
) -> u32 {
    match arbiter_core::ffi::guarded(body) {
        Ok(()) => OK,
        Err(failure) => failure.report(err_out),
    }
}

/// The body of `ffi_boundary!(...)` without `err_out`.
pub(crate) fn infallible<T: OnPanic>(body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| T::on_panic())
}

/// What a call that cannot fail answers if Arbiter panics inside it: never an allow.
pub(crate) trait OnPanic {
    fn on_panic() -> Self;
}

impl OnPanic for () {
    fn on_panic() {}
}

impl OnPanic for u32 {
    fn on_panic() -> Self {
        ARBITER_RESULT_INTERNAL as u32
    }
}

impl<T> OnPanic for *const T {
    fn on_panic() -> Self {
        ptr::null()
    }
}

/// Frees a string Arbiter handed out. NULL does nothing.
///
/// # Safety
/// `s` is NULL or a string from an Arbiter `_out` parameter, not freed before.
#[no_mangle]
pub unsafe extern "C" fn arbiter_string_free(s: *mut c_char) {
    ffi_boundary!({
        if !s.is_null() {
            drop(CString::from_raw(s));
        }
    })
}

/// The error's result code (0 for NULL).
///
/// # Safety
/// `err` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn arbiter_error_code(err: *const arbiter_error) -> u32 {
    ffi_boundary!({ err.as_ref().map_or(OK, |e| e.code) })
}

/// The error's kind, e.g. `"policy_parse"` (`""` for NULL). Valid until `arbiter_error_free`.
///
/// # Safety
/// `err` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn arbiter_error_kind(err: *const arbiter_error) -> *const c_char {
    ffi_boundary!({ err.as_ref().map_or(c"".as_ptr(), |e| e.kind.as_ptr()) })
}

/// The error's one-line message (`""` for NULL). Valid until `arbiter_error_free`.
///
/// # Safety
/// `err` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn arbiter_error_message(err: *const arbiter_error) -> *const c_char {
    ffi_boundary!({ err.as_ref().map_or(c"".as_ptr(), |e| e.message.as_ptr()) })
}

/// Frees an error. NULL does nothing.
///
/// # Safety
/// `err` is NULL or an error from an Arbiter `err_out` parameter, not freed before.
#[no_mangle]
pub unsafe extern "C" fn arbiter_error_free(err: *mut arbiter_error) {
    ffi_boundary!({
        if !err.is_null() {
            drop(Box::from_raw(err));
        }
    })
}

/// The snake_case kind of a result code (`"policy_parse"` for `ARBITER_RESULT_POLICY_PARSE`),
/// or NULL for `ARBITER_RESULT_OK` and any code that is not one of Arbiter's. Static; never
/// freed; may be called from any thread.
#[no_mangle]
pub extern "C" fn arbiter_result_kind(code: u32) -> *const c_char {
    ffi_boundary!({
        // Nothing here can panic but the first use's allocation; a NULL then is "unknown".
        static KINDS: std::sync::LazyLock<Vec<(u32, CString)>> = std::sync::LazyLock::new(|| {
            ErrorKind::ALL
                .iter()
                .map(|k| (k.code(), c_string(k.as_str())))
                .collect()
        });
        KINDS
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(ptr::null(), |(_, kind)| kind.as_ptr())
    })
}

/// The library's version, e.g. `"0.1.0"`. Static; never freed.
#[no_mangle]
pub extern "C" fn arbiter_version() -> *const c_char {
    ffi_boundary!({
        const VERSION: &CStr =
            match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
                Ok(v) => v,
                Err(_) => c"unknown",
            };
        VERSION.as_ptr()
    })
}
