//! Decision logs to a C callback: events handed over on the deciding thread.

use std::ffi::{c_char, c_void};

use super::args::{c_str, wrapper_ref, write_string};
use super::engine::arbiter_engine;
use super::result::{arbiter_error, c_string, ffi_boundary, Failure, Report};
use arbiter_core::{DecisionLogOptions, ErrorKind};

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
    ffi_boundary!(err_out, {
        // Made first, so that a failure drops it, which releases `user_data`.
        let sink = CSink {
            log,
            release,
            user_data,
        };
        let wrapper = wrapper_ref(engine)?;
        let engine = &wrapper.engine;
        if log.is_none() {
            return Err(Failure::null("log"));
        }
        let options = DecisionLogOptions {
            sample_rate,
            max_events_per_second: (max_events_per_second > 0).then_some(max_events_per_second),
        };
        engine
            .set_decision_log(options, move |event| sink.log(event))
            .map_err(|e| Failure::new(ErrorKind::InvalidArgument, e.to_string()))?;
        *otlp(wrapper) = None;
        Ok(())
    })
}

/// Stops logging decisions (the log's `release` runs once no decision under way uses it). NULL
/// does nothing.
///
/// # Safety
/// `engine` is NULL or a live engine.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_clear_decision_log(engine: *const arbiter_engine) {
    ffi_boundary!({
        if let Some(engine) = engine.as_ref() {
            engine.engine.clear_decision_log();
            *otlp(engine) = None;
        }
    })
}

fn otlp(
    engine: &arbiter_engine,
) -> std::sync::MutexGuard<'_, Option<std::sync::Arc<arbiter_otlp::OtlpExporter>>> {
    engine.otlp.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends the engine's decision log to an OpenTelemetry receiver over OTLP/HTTP, from a bounded
/// queue on an exporter thread of its own (a forking host sets it in each worker, after the
/// fork), replacing any other decision log. `options_json`: `{"endpoint":
/// "http://127.0.0.1:4318/v1/logs", "encoding": "protobuf"|"json", "max_queue", "max_batch",
/// "flush_interval_seconds", "timeout_seconds", "service_name", "ca_file", "sample_rate",
/// "max_events_per_second"}`, all but `endpoint` optional. A decision never waits for the
/// receiver; `arbiter_engine_otlp_stats_json` counts what was exported and lost.
///
/// # Safety
/// `engine` is NULL or a live engine; `options_json` is NULL or NUL-terminated; `err_out` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_export_decision_log_otlp(
    engine: *const arbiter_engine,
    options_json: *const c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let wrapper = wrapper_ref(engine)?;
        let (options, log) = arbiter_otlp::options_from_json(c_str(options_json, "options_json")?)
            .map_err(|e| Failure::new(ErrorKind::InvalidArgument, e))?;
        let exporter = arbiter_otlp::export_decision_log(&wrapper.engine, options, log)?;
        *otlp(wrapper) = Some(exporter);
        Ok(())
    })
}

/// What the engine's OpenTelemetry exporter has done: `{"exported", "dropped",
/// "failed_exports"}`, or `null` when its decision log is not one. On success `*json_out`
/// receives a string the caller frees with `arbiter_string_free`.
///
/// # Safety
/// `engine` is NULL or a live engine; `json_out` and `err_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_engine_otlp_stats_json(
    engine: *const arbiter_engine,
    json_out: *mut *mut c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let wrapper = wrapper_ref(engine)?;
        if json_out.is_null() {
            return Err(Failure::null("json_out"));
        }
        let stats = otlp(wrapper).as_ref().map(|e| e.stats());
        write_string(json_out, &arbiter_otlp::stats_json(stats.as_ref()));
        Ok(())
    })
}
