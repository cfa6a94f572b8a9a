//! The C ABI's entry points driven from Rust with raw bytes (invalid UTF-8, embedded NULs,
//! absent fields): every call returns a code, writes its output only on success and an error
//! only on failure, and everything it hands out is read in full and freed (LeakSanitizer
//! checks the frees, AddressSanitizer the reads).
#![no_main]

// The C ABI's source, compiled into this target (its library is a cdylib and staticlib only),
// with the name it gives the core crate.
extern crate arbiter as arbiter_core;
#[allow(dead_code, unused_imports, unexpected_cfgs, clippy::all)]
#[path = "../../ffi-c/src/lib.rs"]
mod ffi;

use std::ffi::{c_char, CStr};
use std::ptr;
use std::sync::OnceLock;

use arbiter_fuzz::check_decision_json;
use ffi::*;
use libfuzzer_sys::fuzz_target;

struct Shared(*mut arbiter_engine);
// SAFETY: an engine may be used from many threads; this one is never freed.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

fn engine() -> *const arbiter_engine {
    static ENGINE: OnceLock<Shared> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut engine = ptr::null_mut();
            let code = unsafe { arbiter_engine_new_gitlab_default(&mut engine, ptr::null_mut()) };
            assert_eq!(code, ARBITER_RESULT_OK);
            // Every decision is logged, and every event must be one JSON object.
            let code = unsafe {
                arbiter_engine_set_decision_log(
                    engine,
                    1.0,
                    0,
                    Some(check_event),
                    None,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            };
            assert_eq!(code, ARBITER_RESULT_OK);
            Shared(engine)
        })
        .0
}

unsafe extern "C" fn check_event(_: *mut std::ffi::c_void, event: *const c_char, len: usize) {
    let bytes = unsafe { std::slice::from_raw_parts(event.cast::<u8>(), len + 1) };
    assert_eq!(bytes[len], 0, "an event is NUL-terminated");
    let event: serde_json::Value = serde_json::from_slice(&bytes[..len]).expect("an event is JSON");
    assert!(
        matches!(event["decision"].as_str(), Some("allow" | "deny")),
        "{event}"
    );
}

fn text(p: *const c_char) -> String {
    assert!(!p.is_null());
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Checks the output/error protocol of a call that returned `code`, frees the error, and
/// says whether the call succeeded.
fn settle<T>(code: u32, out: *mut T, err: *mut arbiter_error) -> bool {
    if code == ARBITER_RESULT_OK {
        assert!(!out.is_null(), "success without output");
        assert!(err.is_null(), "success with an error");
        true
    } else {
        assert!(out.is_null(), "output written on failure (code {code})");
        assert!(!err.is_null(), "failure without an error (code {code})");
        unsafe {
            assert_eq!(arbiter_error_code(err), code);
            text(arbiter_error_kind(err));
            text(arbiter_error_message(err));
            arbiter_error_free(err);
        }
        false
    }
}

fn str_of(field: Option<&[u8]>) -> arbiter_str {
    match field {
        Some(bytes) => arbiter_str {
            ptr: bytes.as_ptr().cast(),
            len: bytes.len(),
        },
        None => arbiter_str {
            ptr: ptr::null(),
            len: 0,
        },
    }
}

/// Everything a view shows, read through its pointers.
unsafe fn view_strings(view: &arbiter_decision_view) -> (bool, Vec<String>, Vec<[String; 3]>) {
    let reasons = (0..view.reason_count)
        .map(|i| text(*view.reasons.add(i)))
        .collect();
    let errors = (0..view.error_count)
        .map(|i| {
            let e = &*view.errors.add(i);
            let policy = if e.policy.is_null() {
                String::new()
            } else {
                text(e.policy)
            };
            [text(e.kind), policy, text(e.message)]
        })
        .collect();
    (view.allowed, reasons, errors)
}

fn string_call(call: impl FnOnce(*mut *mut c_char, *mut *mut arbiter_error) -> u32) {
    let (mut out, mut err) = (ptr::null_mut(), ptr::null_mut());
    let code = call(&mut out, &mut err);
    if settle(code, out, err) {
        text(out);
        unsafe { arbiter_string_free(out) };
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // Fields separated by NUL bytes; a missing field is a NULL pointer.
    let fields: Vec<&[u8]> = rest.split(|b| *b == 0).collect();
    let field = |i: usize| fields.get(i).copied();
    let engine = engine();
    unsafe {
        match selector % 5 {
            0 => {
                let (mut out, mut err) = (ptr::null_mut(), ptr::null_mut());
                let code = arbiter_engine_authorize_json(
                    engine,
                    rest.as_ptr().cast(),
                    rest.len(),
                    &mut out,
                    &mut err,
                );
                if settle(code, out, err) {
                    check_decision_json(&text(out));
                    arbiter_string_free(out);
                }
            }
            1 => string_call(|out, err| {
                arbiter_engine_authorize_json_batch(
                    engine,
                    rest.as_ptr().cast(),
                    rest.len(),
                    out,
                    err,
                )
            }),
            2 => string_call(|out, err| {
                arbiter_engine_verify_token(engine, rest.as_ptr().cast(), rest.len(), out, err)
            }),
            3 => {
                let entity = |t: usize| arbiter_entity_ref {
                    type_name: str_of(field(t)),
                    id: str_of(field(t + 1)),
                };
                let request = arbiter_request {
                    principal: entity(0),
                    action: entity(2),
                    resource: entity(4),
                    context_json: str_of(field(6)),
                    entities_json: str_of(field(7)),
                    token: str_of(field(8)),
                    request_id: str_of(field(9)),
                };
                let (mut decision, mut err) = (ptr::null_mut(), ptr::null_mut());
                let code = arbiter_engine_authorize(engine, &request, &mut decision, &mut err);
                // The same request packed, into a buffer that may be too small: the same code,
                // and the bytes of the same decision.
                let mut buf = [0u8; 48];
                let (mut packed, mut packed_err) = (
                    arbiter_packed_decision {
                        data: ptr::null(),
                        len: 0,
                    },
                    ptr::null_mut(),
                );
                let packed_code = arbiter_engine_authorize_packed(
                    engine,
                    &request,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut packed,
                    &mut packed_err,
                );
                assert_eq!(code, packed_code);
                let packed_bytes = match settle(packed_code, packed.data.cast_mut(), packed_err) {
                    true => {
                        let bytes = std::slice::from_raw_parts(packed.data, packed.len).to_vec();
                        if packed.data != buf.as_ptr() {
                            arbiter_packed_decision_free(packed);
                        }
                        Some(bytes)
                    }
                    false => None,
                };
                if settle(code, decision, err) {
                    let mut expected = vec![0; packed_len(&(*decision).decision)];
                    pack(&(*decision).decision, &mut expected);
                    assert_eq!(packed_bytes, Some(expected));
                    let decided = &(*decision).decision;
                    let (allowed, reasons, errors) = view_strings(&arbiter_decision_read(decision));
                    assert_eq!(allowed, decided.allowed());
                    assert_eq!(reasons, decided.reasons);
                    assert_eq!(errors.len(), decided.errors.len());
                    check_decision_json(&decided.to_json());
                    arbiter_decision_free(decision);
                }
            }
            _ => {
                // Pairs of fields are (path, contents) of an in-memory bundle.
                let files: Vec<arbiter_bundle_file> = fields
                    .chunks(2)
                    .map(|pair| arbiter_bundle_file {
                        path: str_of(pair.first().copied()),
                        contents: str_of(pair.get(1).copied()),
                    })
                    .collect();
                let (mut loaded, mut err) = (ptr::null_mut(), ptr::null_mut());
                let code = arbiter_engine_new_from_files(
                    files.as_ptr(),
                    files.len(),
                    &mut loaded,
                    &mut err,
                );
                let loads = settle(code, loaded, err);
                if loads {
                    // Reloading an engine with the same files succeeds too.
                    let mut err = ptr::null_mut();
                    let code = arbiter_engine_reload_from_files(
                        loaded,
                        files.as_ptr(),
                        files.len(),
                        &mut err,
                    );
                    assert_eq!(code, ARBITER_RESULT_OK);
                    arbiter_engine_free(loaded);
                }
            }
        }
    }
});
