//! `arbiter_refresher`: an engine whose bundle comes from a source (a directory, an HTTP(S) URL,
//! an OCI reference) and is refreshed when the host asks (crate `arbiter-fleet`).

use std::ffi::c_char;

use arbiter_core::{LoadError, TrustedKeys};
use arbiter_fleet::{RefreshOptions, Refreshed, Refresher, Source};

use super::args::{arbiter_str, c_str, engine_ref, pems, write_out, write_string};
use super::engine::{arbiter_engine, new_engine};
use super::result::{arbiter_error, ffi_boundary, Failure, Report};

/// Fetches a bundle from its source and refreshes an engine's bundle from it. Not for
/// concurrent use: one thread at a time (the engines it serves may be used by any number).
pub struct arbiter_refresher {
    refresher: Refresher,
    keys: Option<TrustedKeys>,
}

/// A refresher for `source` (`oci://HOST/REPO[:TAG|@DIGEST]`, `https://...`, or a directory)
/// with `options_json` (NULL for the defaults; members `cache_dir`, `interval_seconds`,
/// `max_backoff_seconds`, `timeout_seconds`, `max_bytes`, `plain_http`, `ca_file`,
/// `allow_rollback`) and the `key_count` trusted public keys at `public_keys` (SPKI PEM; at
/// least one for a remote source). Nothing is fetched yet. On success `*refresher_out`
/// receives a refresher the caller frees with `arbiter_refresher_free`.
///
/// # Safety
/// `source` is NULL or NUL-terminated; `options_json` is NULL or NUL-terminated;
/// `public_keys` points to `key_count` strings (or is NULL with `key_count` 0);
/// `refresher_out` and `err_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_refresher_new(
    source: *const c_char,
    options_json: *const c_char,
    public_keys: *const arbiter_str,
    key_count: usize,
    refresher_out: *mut *mut arbiter_refresher,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        if refresher_out.is_null() {
            return Err(Failure::null("refresher_out"));
        }
        let source: Source = c_str(source, "source")?.parse()?;
        let options = match options_json.is_null() {
            true => RefreshOptions::default(),
            false => RefreshOptions::from_json(c_str(options_json, "options_json")?)?,
        };
        let pems = pems(public_keys, key_count)?;
        let keys = match pems.is_empty() {
            true => None,
            false => Some(TrustedKeys::from_pems(&pems).map_err(LoadError::from)?),
        };
        let refresher = Refresher::new(source, options)?;
        write_out(
            refresher_out,
            Box::new(arbiter_refresher { refresher, keys }),
        );
        Ok(())
    })
}

/// Fetches the bundle and builds an engine from it, or, when the source fails, from the cache
/// (see docs/fleet.md). On success `*engine_out` receives an engine the caller frees with
/// `arbiter_engine_free`; its `arbiter_engine_metrics_json` reports the source's status.
///
/// # Safety
/// `refresher` is NULL or a live refresher no other thread is using; `engine_out` and
/// `err_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_refresher_start(
    refresher: *mut arbiter_refresher,
    engine_out: *mut *mut arbiter_engine,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let refresher = refresher_mut(refresher)?;
        new_engine(engine_out, || {
            Ok(refresher.refresher.start(refresher.keys.clone())?)
        })
    })
}

/// Refreshes `engine` from the source: at once, or only when the schedule says a refresh is
/// due when `only_if_due`. On success `*outcome_out` receives `{"refreshed": "updated",
/// "digest": "..."}`, `{"refreshed": "unchanged"}` or `{"refreshed": "not_due"}`, which the
/// caller frees with `arbiter_string_free`. On failure the engine keeps its bundle, and the
/// error says why (`io` for a fetch that failed, the bundle's own kind for one refused).
///
/// # Safety
/// `refresher` is NULL or a live refresher no other thread is using; `engine` is NULL or a
/// live engine (other threads may decide with it meanwhile); `outcome_out` and `err_out` are
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn arbiter_refresher_refresh(
    refresher: *mut arbiter_refresher,
    engine: *const arbiter_engine,
    only_if_due: bool,
    outcome_out: *mut *mut c_char,
    err_out: *mut *mut arbiter_error,
) -> u32 {
    ffi_boundary!(err_out, {
        let refresher = refresher_mut(refresher)?;
        let engine = engine_ref(engine)?;
        if outcome_out.is_null() {
            return Err(Failure::null("outcome_out"));
        }
        let outcome = match only_if_due {
            true => refresher.refresher.refresh_if_due(engine).transpose()?,
            false => Some(refresher.refresher.refresh(engine)?),
        };
        write_string(outcome_out, &Refreshed::to_json(outcome.as_ref()));
        Ok(())
    })
}

/// # Safety
/// `refresher` is NULL or a live refresher no other thread is using.
unsafe fn refresher_mut<'a>(
    refresher: *mut arbiter_refresher,
) -> Result<&'a mut arbiter_refresher, Failure> {
    refresher.as_mut().ok_or_else(|| Failure::null("refresher"))
}

/// Frees a refresher. NULL does nothing. Engines it started live on.
///
/// # Safety
/// `refresher` is NULL or a refresher from `arbiter_refresher_new`, not freed before.
#[no_mangle]
pub unsafe extern "C" fn arbiter_refresher_free(refresher: *mut arbiter_refresher) {
    ffi_boundary!({
        if !refresher.is_null() {
            drop(Box::from_raw(refresher));
        }
    })
}
