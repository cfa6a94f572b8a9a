//! The C ABI's pointer handling, driven from Rust: what `make miri` runs under Miri (which
//! checks every unsafe access, aliasing and leak). Bundles here have no tokens, so nothing
//! reaches aws-lc's C code, which Miri cannot run.
//!
//! Long: every exported function is driven here, in and out of its pointers.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;

use arbiter_core::ErrorKind;

use super::args::*;
use super::decision::*;
use super::decision_log::*;
use super::engine::*;
use super::result::arbiter_result::*;
use super::result::*;

/// Every function the header declares runs its whole body inside `ffi_boundary!`: a function
/// added without it (where a panic would unwind into C) fails this test. (It reads text only,
/// so `make miri` leaves it to `cargo test`.)
#[test]
#[cfg_attr(miri, ignore = "no unsafe code: cargo test runs it")]
fn every_exported_body_runs_inside_the_panic_boundary() {
    let sources = [
        ("args.rs", include_str!("args.rs")),
        ("decision.rs", include_str!("decision.rs")),
        ("decision_log.rs", include_str!("decision_log.rs")),
        ("engine.rs", include_str!("engine.rs")),
        ("refresher.rs", include_str!("refresher.rs")),
        ("result.rs", include_str!("result.rs")),
    ];
    let mut exported = Vec::new();
    for (file, source) in sources {
        let lines: Vec<&str> = source.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            let Some(rest) = line.split_once("extern \"C\" fn ").map(|(_, r)| r) else {
                continue;
            };
            if !line.starts_with("pub ") {
                continue; // a callback type, not an export
            }
            let name = &rest[..rest.find('(').unwrap()];
            // The body opens where the signature ends: a line ending in `{` at the top level.
            let open = (at..lines.len())
                .find(|&n| lines[n].ends_with('{'))
                .unwrap_or_else(|| panic!("{file}: no body for {name}"));
            let close = (open..lines.len())
                .find(|&n| lines[n] == "}")
                .unwrap_or_else(|| panic!("{file}: {name} never closes"));
            let body = &lines[open + 1..close];
            assert!(
                body.first()
                    .is_some_and(|l| l.starts_with("    ffi_boundary!(")),
                "{file}: {name} does not open its body with ffi_boundary!"
            );
            assert!(
                body.last()
                    .is_some_and(|l| *l == "    })" || l.ends_with(" })")),
                "{file}: {name} does something after its ffi_boundary!"
            );
            exported.push(name.to_owned());
        }
    }
    // The scan found every function the header declares (the fault injection one included).
    let header = include_str!("../include/arbiter.h");
    let mut declared: Vec<String> = header
        .lines()
        .filter(|line| !line.trim_start().starts_with(['*', '/']))
        .flat_map(|line| line.split_inclusive('('))
        .filter_map(|part| {
            let name = part.strip_suffix('(')?;
            let name = &name[name.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))? + 1..];
            name.starts_with("arbiter_").then(|| name.to_owned())
        })
        .collect();
    declared.sort();
    declared.dedup();
    exported.sort();
    assert_eq!(exported, declared);
}

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

const POLICIES: &str =
    r#"@id("owner") permit (principal, action, resource) when { resource.owner == principal };"#;
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
    let code =
        unsafe { arbiter_engine_new_from_files(files.as_ptr(), 2, &mut engine, ptr::null_mut()) };
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
        let view = arbiter_decision_read(decision);
        assert!(view.allowed);
        assert_eq!((view.reason_count, view.error_count), (1, 0));
        assert_eq!(text(*view.reasons), "owner");
        assert!(view.errors.is_null(), "an empty list is NULL");
        arbiter_decision_free(decision);
        let none = arbiter_decision_read(ptr::null());
        assert!(!none.allowed && none.reason_count == 0 && none.reasons.is_null());

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
        let view = arbiter_decision_read(decision);
        assert!(!view.allowed);
        assert_eq!(view.error_count, 1);
        let error = &*view.errors;
        assert_eq!(text(error.kind), "policy_evaluation");
        assert_eq!(text(error.policy), "bad");
        assert!(!text(error.message).is_empty());
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
            answers.starts_with(r#"[{"decision":"allow""#) && answers.contains("malformed_request"),
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
fn output(call: impl FnOnce(*mut *mut c_char, *mut *mut arbiter_error) -> u32) -> Option<String> {
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
            explained
                .contains(r#""policies":[{"id":"owner","effect":"permit","outcome":"satisfied""#),
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
            arbiter_engine_set_candidate_from_files(engine, candidate.as_ptr(), 1, ptr::null_mut()),
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
            unsafe { arbiter_engine_reload_from_files(engine.0, all.as_ptr(), 1, ptr::null_mut()) },
            ARBITER_RESULT_OK
        );
    }
    for r in readers {
        r.join().unwrap();
    }
    unsafe { arbiter_engine_free(engine.0) };
}
