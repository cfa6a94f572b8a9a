//! `Refresher`: an engine's bundle fetched from a source and refreshed when the host asks
//! (crate `arbiter-fleet`). Fetches run without the GIL; nothing starts a thread.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::engine::Engine;
use crate::error::{Failure, IntoPyErr};
use arbiter_core::ffi::{guarded, in_own_arena};
use arbiter_core::{LoadError, TrustedKeys};
use arbiter_fleet::{RefreshOptions, Refreshed, Source};
use pyo3::prelude::*;
use pythonize::pythonize;

/// Fetches an engine's bundle from a source (a directory, an ``https://`` URL serving a bundle
/// archive, or ``oci://HOST/REPO[:TAG|@DIGEST]``) and refreshes it when asked: there is no
/// background thread. Calls take turns; fetches release the GIL.
#[pyclass(frozen, module = "arbiter")]
struct Refresher {
    inner: Mutex<arbiter_fleet::Refresher>,
    keys: Option<TrustedKeys>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[pymethods]
impl Refresher {
    #[new]
    #[pyo3(signature = (source, *, public_keys=Vec::new(), cache_dir=None, interval=None,
                        max_backoff=None, timeout=None, max_bytes=None, plain_http=false,
                        ca_file=None, allow_rollback=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        source: String,
        public_keys: Vec<String>,
        cache_dir: Option<PathBuf>,
        interval: Option<f64>,
        max_backoff: Option<f64>,
        timeout: Option<f64>,
        max_bytes: Option<usize>,
        plain_http: bool,
        ca_file: Option<PathBuf>,
        allow_rollback: bool,
    ) -> PyResult<Self> {
        let options = serde_json::json!({
            "cache_dir": cache_dir, "interval_seconds": interval, "max_backoff_seconds": max_backoff,
            "timeout_seconds": timeout, "max_bytes": max_bytes, "plain_http": plain_http,
            "ca_file": ca_file, "allow_rollback": allow_rollback,
        });
        let made = (|| -> Result<Self, Failure> {
            let source: Source = source.parse()?;
            let options = RefreshOptions::from_json(&options.to_string())?;
            let keys = match public_keys.is_empty() {
                true => None,
                false => Some(TrustedKeys::from_pems(&public_keys).map_err(LoadError::from)?),
            };
            Ok(Self {
                inner: Mutex::new(arbiter_fleet::Refresher::new(source, options)?),
                keys,
            })
        })();
        made.map_err(|e| e.into_py(py))
    }

    /// Fetches the bundle and builds an engine from it, or from the cache when the source fails.
    /// The engine's ``metrics()["source"]`` reports the source's status from then on.
    fn start(&self, py: Python<'_>) -> PyResult<Engine> {
        let keys = self.keys.clone();
        py.detach(|| guarded(|| Ok(in_own_arena(|| lock(&self.inner).start(keys))?)))
            .map(Engine::wrap)
            .map_err(|e| e.into_py(py))
    }

    /// Fetches now and swaps a new bundle into ``engine``: ``{"refreshed": "updated", "digest":
    /// ...}`` or ``{"refreshed": "unchanged"}``. On an error the engine keeps its bundle.
    fn refresh<'py>(&self, py: Python<'py>, engine: &Engine) -> PyResult<Bound<'py, PyAny>> {
        self.refreshed(py, engine, false)
    }

    /// ``refresh`` when the schedule says one is due; ``{"refreshed": "not_due"}`` otherwise.
    fn refresh_if_due<'py>(&self, py: Python<'py>, engine: &Engine) -> PyResult<Bound<'py, PyAny>> {
        self.refreshed(py, engine, true)
    }
}

impl Refresher {
    fn refreshed<'py>(
        &self,
        py: Python<'py>,
        engine: &Engine,
        only_if_due: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = engine.core();
        let json = py
            .detach(|| {
                guarded(|| {
                    let mut refresher = lock(&self.inner);
                    let outcome = match only_if_due {
                        true => refresher.refresh_if_due(engine).transpose()?,
                        false => Some(refresher.refresh(engine)?),
                    };
                    Ok(Refreshed::to_json(outcome.as_ref()))
                })
            })
            .map_err(|e| e.into_py(py))?;
        let value: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| Failure::internal(e.to_string()).into_py(py))?;
        Ok(pythonize(py, &value)?)
    }
}

pub(crate) fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Refresher>()
}
