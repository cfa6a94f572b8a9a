//! `arbiter_decision` and its view (the one way C reads a decision), and the packed form
//! bindings read in one call.

use std::ffi::{c_char, CString};
use std::ptr;

use super::args::arbiter_request;
use super::engine::{arbiter_engine, decide_request};
use super::result::{arbiter_error, c_string, ffi_boundary, Failure, OnPanic, Report};
use arbiter_core::Decision;

/// A decision of `arbiter_engine_authorize`. Owned by the caller; free it with
/// `arbiter_decision_free`. Strings it hands out live as long as it does.
pub struct arbiter_decision {
    pub(crate) decision: Decision,
    /// The strings `reason_ptrs` and `error_views` point into, owned here (their buffers stay
    /// put as the vector moves): the reasons, then kind, policy (empty when none) and message
    /// of each error.
    _strings: Vec<CString>,
    reason_ptrs: Vec<*const c_char>,
    error_views: Vec<arbiter_decision_error_view>,
}

/// An error of a decision, as `arbiter_decision_read` shows it. `policy` is NULL when the error
/// names no policy. The strings live as long as the decision.
#[repr(C)]
pub struct arbiter_decision_error_view {
    pub kind: *const c_char,
    pub policy: *const c_char,
    pub message: *const c_char,
}

/// Everything a decision holds, from `arbiter_decision_read` in one call: whether it
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
    ffi_boundary!(err_out, {
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
    ffi_boundary!({
        if !packed.data.is_null() {
            let slice = ptr::slice_from_raw_parts_mut(packed.data.cast_mut(), packed.len);
            drop(Box::from_raw(slice));
        }
    })
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

pub(crate) fn decision_strings(decision: Decision) -> arbiter_decision {
    // Every string first, then pointers to them: a CString moved after its pointer was taken
    // would invalidate that pointer (its buffer is a Box; Miri checks this).
    let mut strings: Vec<CString> = decision.reasons.iter().map(|r| c_string(r)).collect();
    for e in &decision.errors {
        strings.push(c_string(e.kind.as_str()));
        strings.push(e.policy.as_deref().map(c_string).unwrap_or_default());
        strings.push(c_string(&e.message));
    }
    let (reasons, errors) = strings.split_at(decision.reasons.len());
    let reason_ptrs = reasons.iter().map(|r| r.as_ptr()).collect();
    let error_views = errors
        .chunks_exact(3)
        .zip(&decision.errors)
        .map(|(e, error)| arbiter_decision_error_view {
            kind: e[0].as_ptr(),
            policy: error.policy.as_ref().map_or(ptr::null(), |_| e[1].as_ptr()),
            message: e[2].as_ptr(),
        })
        .collect();
    arbiter_decision {
        decision,
        _strings: strings,
        reason_ptrs,
        error_views,
    }
}

/// Reads the whole decision at once (the one way to read it): whether it allows, the ids of
/// the determining policies and its errors. A NULL decision is a deny with nothing in it.
///
/// # Safety
/// `decision` is NULL or a live decision.
#[no_mangle]
pub unsafe extern "C" fn arbiter_decision_read(
    decision: *const arbiter_decision,
) -> arbiter_decision_view {
    ffi_boundary!({
        decision
            .as_ref()
            .map_or_else(arbiter_decision_view::on_panic, view_of)
    })
}

impl OnPanic for arbiter_decision_view {
    /// A deny with nothing in it.
    fn on_panic() -> Self {
        arbiter_decision_view {
            allowed: false,
            reasons: ptr::null(),
            reason_count: 0,
            errors: ptr::null(),
            error_count: 0,
        }
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

/// Frees a decision. NULL does nothing.
///
/// # Safety
/// `decision` is NULL or a decision from `arbiter_engine_authorize`, not freed before.
#[no_mangle]
pub unsafe extern "C" fn arbiter_decision_free(decision: *mut arbiter_decision) {
    ffi_boundary!({
        if !decision.is_null() {
            drop(Box::from_raw(decision));
        }
    })
}
