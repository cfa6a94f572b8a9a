//! `Engine`: loading, deciding, batches, tokens and what an operator sets on it.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::decision::Decision;
use crate::error::{Failure, IntoPyErr};
use crate::request::{read_request, read_request_dict};
use arbiter_core::ffi::{self, guarded, in_own_arena, Logged, RequestText, SpannedRequest};
use arbiter_core::{BundleFile, DecisionLogOptions, Explanation, RequestParts, TokenReport};
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use pyo3::{PyTraverseError, PyVisit};
use pythonize::pythonize;

fn bundle_files(files: &Bound<'_, PyDict>) -> Result<Vec<BundleFile>, Failure> {
    files
        .iter()
        .map(|(path, contents)| {
            let path: String = path
                .extract()
                .map_err(|_| Failure::malformed("bundle file paths are str"))?;
            // Text as str; a raw secret file's bytes as bytes.
            let contents: Vec<u8> = match contents.cast::<PyBytes>() {
                Ok(bytes) => bytes.as_bytes().to_vec(),
                Err(_) => contents
                    .extract::<String>()
                    .map_err(|_| {
                        Failure::malformed(format!("the contents of `{path}` must be str or bytes"))
                    })?
                    .into(),
            };
            Ok(BundleFile::new(path, contents))
        })
        .collect()
}

/// Decides requests against one bundle at a time. Safe to share between threads, reloads
/// included; a forked child keeps a working copy.
#[pyclass(frozen, module = "arbiter")]
pub(crate) struct Engine {
    inner: arbiter_core::Engine,
    /// The decision log's sink, while one is set.
    decision_log: Mutex<Option<Py<PyAny>>>,
    /// The OpenTelemetry exporter that is its decision log, when one is.
    otlp: Mutex<Option<std::sync::Arc<arbiter_otlp::OtlpExporter>>>,
}

fn load(
    py: Python<'_>,
    f: impl FnOnce() -> Result<arbiter_core::Engine, arbiter_core::LoadError> + Send,
) -> PyResult<Engine> {
    py.detach(|| guarded(|| Ok(in_own_arena(f)?)))
        .map(Engine::wrap)
        .map_err(|e| e.into_py(py))
}

impl Engine {
    /// An engine built elsewhere (a refresher's start).
    pub(crate) fn wrap(inner: arbiter_core::Engine) -> Self {
        Self {
            inner,
            decision_log: Mutex::new(None),
            otlp: Mutex::new(None),
        }
    }

    fn otlp(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<std::sync::Arc<arbiter_otlp::OtlpExporter>>> {
        self.otlp.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn core(&self) -> &arbiter_core::Engine {
        &self.inner
    }

    fn sink(&self) -> std::sync::MutexGuard<'_, Option<Py<PyAny>>> {
        self.decision_log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets go of the sink outside the lock: dropping it may run its finalizer, Python code that
    /// may release the GIL to a thread waiting for the lock.
    fn drop_sink(&self) {
        let sink = self.sink().take();
        drop(sink);
    }

    /// Explains a request given as contract JSON, without the GIL.
    fn explained(&self, py: Python<'_>, request: &str) -> PyResult<Explanation> {
        py.detach(|| guarded(|| Ok(self.inner.explain(&self.inner.read_request(request)?)?)))
            .map_err(|e| e.into_py(py))
    }

    /// Hands a call's decision log events to the sink, then gives the call's answer.
    fn deliver<T, E: Into<Failure>>(
        &self,
        py: Python<'_>,
        decided: Result<Logged<Result<T, E>>, Failure>,
    ) -> PyResult<T> {
        let decided = decided.map_err(|e| e.into_py(py))?;
        self.deliver_events(py, decided.events)?;
        decided.answer.map_err(|e| e.into().into_py(py))
    }

    /// Hands decision log events to the sink, now that the GIL is held again. A sink that
    /// raises an `Exception` is reported through `sys.unraisablehook` (that event is lost, the
    /// decision stands); any other exception (`KeyboardInterrupt`, ...) propagates.
    fn deliver_events(&self, py: Python<'_>, events: Vec<String>) -> PyResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let Some(sink) = self.sink().as_ref().map(|s| s.clone_ref(py)) else {
            return Ok(());
        };
        for event in events {
            if let Err(e) = sink.call1(py, (event,)) {
                if !e.is_instance_of::<PyException>(py) {
                    return Err(e);
                }
                e.write_unraisable(py, Some(sink.bind(py)));
            }
        }
        Ok(())
    }
}

#[pymethods]
impl Engine {
    /// Loads the bundle in directory `path`.
    #[staticmethod]
    fn from_bundle_dir(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        load(py, move || arbiter_core::Engine::from_bundle_dir(&path))
    }

    /// Loads the default GitLab bundle embedded in the library.
    #[staticmethod]
    fn gitlab_default(py: Python<'_>) -> PyResult<Self> {
        load(py, arbiter_core::Engine::gitlab_default)
    }

    /// Loads the signed bundle in directory `path`; `public_keys` are the trusted signing keys
    /// (SPKI PEM). The engine then loads only bundles they signed, on every reload too.
    #[staticmethod]
    fn from_signed_bundle_dir(
        py: Python<'_>,
        path: PathBuf,
        public_keys: Vec<String>,
    ) -> PyResult<Self> {
        let keys = arbiter_core::TrustedKeys::from_pems(&public_keys)
            .map_err(|e| Failure::from(arbiter_core::LoadError::from(e)).into_py(py))?;
        load(py, move || {
            arbiter_core::Engine::from_signed_bundle_dir(&path, keys)
        })
    }

    /// Loads a bundle held in memory: relative path -> contents.
    #[staticmethod]
    fn from_files(py: Python<'_>, files: &Bound<'_, PyDict>) -> PyResult<Self> {
        let files = bundle_files(files).map_err(|e| e.into_py(py))?;
        load(py, move || arbiter_core::Engine::from_files(files))
    }

    /// Replaces the bundle with the one in `path`; on failure the old one keeps serving.
    fn reload_from_dir(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| guarded(|| Ok(in_own_arena(|| self.inner.reload_from_dir(&path))?)))
            .map_err(|e| e.into_py(py))
    }

    /// Replaces the bundle with one held in memory; on failure the old one keeps serving.
    fn reload_from_files(&self, py: Python<'_>, files: &Bound<'_, PyDict>) -> PyResult<()> {
        let files = bundle_files(files).map_err(|e| e.into_py(py))?;
        py.detach(|| guarded(|| Ok(in_own_arena(|| self.inner.reload_from_files(files))?)))
            .map_err(|e| e.into_py(py))
    }

    /// Decides one request given as contract JSON; returns the decision JSON.
    fn authorize_json(&self, py: Python<'_>, request: &str) -> PyResult<String> {
        self.deliver(
            py,
            guarded(|| Ok(ffi::authorize_json(&self.inner, request))),
        )
    }

    /// Which resources of `resource_type` may the principal act on? Answered as SQL for the
    /// bundle's tables (its `sql/mapping.json`) in `dialect` `"postgres"` (`$1`, `$2`, ...) or
    /// `"sqlite"` (`?`): a dict `{"kind": "all" | "none" | "where", "sql", "params"}`, the
    /// clause written for `SELECT <table>.id FROM <table>`. Principal, action, context and
    /// entities are read as in `authorize`. A residual the mapping cannot express exactly
    /// raises `UntranslatableError`.
    #[pyo3(signature = (*, principal, action, resource_type, context=None, entities=None, dialect="postgres"))]
    #[allow(clippy::too_many_arguments)] // the keywords of `authorize`, a type and a dialect
    fn query<'py>(
        &self,
        py: Python<'py>,
        principal: &Bound<'py, PyAny>,
        action: &Bound<'py, PyAny>,
        resource_type: &str,
        context: Option<&Bound<'py, PyAny>>,
        entities: Option<&Bound<'py, PyAny>>,
        dialect: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = PyDict::new(py);
        request.set_item("principal", principal)?;
        request.set_item("action", action)?;
        let resource = PyDict::new(py);
        resource.set_item("type", resource_type)?;
        request.set_item("resource", resource)?;
        if let Some(context) = context {
            request.set_item("context", context)?;
        }
        if let Some(entities) = entities {
            request.set_item("entities", entities)?;
        }
        let json = py.import("json")?;
        let text: String = json
            .call_method1("dumps", (request,))
            .map_err(|e| Failure::malformed(e.to_string()).into_py(py))?
            .extract()?;
        let answer = py
            .detach(|| guarded(|| ffi::query(&self.inner, &text, dialect)))
            .map_err(|e| e.into_py(py))?;
        pythonize(py, &answer).map_err(|e| Failure::internal(e.to_string()).into_py(py))
    }

    /// A list query given as request JSON (its `resource` a `type` and no `id`), answered as
    /// `{"kind", "sql", "params"}` JSON in `dialect` (`"postgres"` or `"sqlite"`).
    fn query_json(&self, py: Python<'_>, request: &str, dialect: &str) -> PyResult<String> {
        py.detach(|| guarded(|| ffi::query_json(&self.inner, request, dialect)))
            .map_err(|e| e.into_py(py))
    }

    /// Decides a JSON array of requests; returns a JSON array with a decision, or
    /// `{"error": {...}}`, per request.
    fn authorize_json_batch(&self, py: Python<'_>, requests: &str) -> PyResult<String> {
        let decided =
            py.detach(|| guarded(|| Ok(ffi::authorize_json_batch(&self.inner, requests))));
        self.deliver(py, decided)
    }

    /// Decides one request. Entity references are `{"type": ..., "id": ...}` dicts; `context`
    /// a dict and `entities` a list of Cedar entity dicts; `principal` may be left out when a
    /// `token` is given. `request_id`, the host's id for the request, goes into the decision
    /// log.
    #[pyo3(signature = (*, principal=None, action, resource, context=None, entities=None, token=None, request_id=None))]
    #[allow(clippy::too_many_arguments)] // the keywords of the contract's `authorize`
    fn authorize(
        &self,
        py: Python<'_>,
        principal: Option<&Bound<'_, PyAny>>,
        action: &Bound<'_, PyAny>,
        resource: &Bound<'_, PyAny>,
        context: Option<&Bound<'_, PyAny>>,
        entities: Option<&Bound<'_, PyAny>>,
        token: Option<&Bound<'_, PyAny>>,
        request_id: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Decision> {
        let decided = guarded(|| {
            let mut text = RequestText::new(&self.inner);
            let request = read_request(
                &mut text,
                [
                    principal,
                    Some(action),
                    Some(resource),
                    context,
                    entities,
                    token,
                    request_id,
                ],
            )?;
            Ok(ffi::authorize_parts(&self.inner, &request.parts(&text)))
        });
        self.deliver(py, decided).map(Decision::from)
    }

    /// Decides many requests (a list or tuple of dicts with the keys of `authorize`) in one
    /// call, against one bundle version, without the GIL. Returns, in order, a `Decision` per
    /// request, or the `ArbiterError` a request that could not be decided raised (returned, not
    /// raised; falsy, like a deny).
    fn authorize_many<'py>(
        &self,
        py: Python<'py>,
        requests: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        // Not any iterable: a dict (one request by mistake) would iterate its keys.
        if !requests.is_instance_of::<PyList>() && !requests.is_instance_of::<PyTuple>() {
            return Err(PyTypeError::new_err(format!(
                "authorize_many takes a list or tuple of request dicts, not {}",
                requests.get_type().name()?
            )));
        }
        let mut text = RequestText::new(&self.inner);
        let items: Vec<Result<SpannedRequest, Failure>> = requests
            .try_iter()?
            .map(|item| Ok(read_request_dict(&mut text, &item?)))
            .collect::<PyResult<_>>()?;
        let answers = py.detach(|| {
            guarded(|| {
                let read: Vec<Result<RequestParts<'_>, Failure>> = items
                    .iter()
                    .map(|item| item.as_ref().map(|r| r.parts(&text)).map_err(Clone::clone))
                    .collect();
                Ok(ffi::authorize_read_batch(&self.inner, &read))
            })
        });
        let decided = answers.map_err(|e| e.into_py(py))?;
        self.deliver_events(py, decided.events)?;
        let answers = decided.answer;
        answers
            .into_iter()
            .map(|answer| {
                Ok(match answer {
                    Ok(decision) => Bound::new(py, Decision::from(decision))?.into_any(),
                    Err(failure) => failure.into_py(py).into_value(py).into_bound(py).into_any(),
                })
            })
            .collect()
    }

    /// Verifies a token against the bundle's `tokens.json` without deciding anything:
    /// `{"valid": True, "kind", "principal", "claims"}` or `{"valid": False, "error": {...}}`.
    fn verify_token<'py>(&self, py: Python<'py>, token: &str) -> PyResult<Bound<'py, PyDict>> {
        let verified = py
            .detach(|| {
                guarded(|| {
                    let verified = self.inner.verify_token(token);
                    if let Ok(info) = &verified {
                        info.claims(); // a JWT's payload is parsed here, detached
                    }
                    Ok(verified)
                })
            })
            .map_err(|e| e.into_py(py))?;
        pythonize(py, &TokenReport::from(&verified))
            .map_err(|e| Failure::internal(e.to_string()).into_py(py))?
            .cast_into::<PyDict>()
            .map_err(|e| Failure::internal(e.to_string()).into_py(py))
    }

    /// The engine's entities (static ones and the schema's actions) as Cedar entity JSON.
    fn entities_json(&self, py: Python<'_>) -> PyResult<String> {
        guarded(|| Ok(self.inner.entities_json())).map_err(|e| e.into_py(py))
    }

    /// Sets a candidate bundle (directory `path`) beside the live one: decisions are still taken
    /// from the live bundle, and the candidate decides each request too, for comparison
    /// (`shadow_report`). Replaces any earlier candidate; on failure nothing changes.
    fn set_candidate_from_dir(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| guarded(|| Ok(self.inner.set_candidate_from_dir(&path)?)))
            .map_err(|e| e.into_py(py))
    }

    /// Sets a candidate bundle held in memory: relative path -> contents.
    fn set_candidate_from_files(&self, py: Python<'_>, files: &Bound<'_, PyDict>) -> PyResult<()> {
        let files = bundle_files(files).map_err(|e| e.into_py(py))?;
        py.detach(|| guarded(|| Ok(self.inner.set_candidate_from_files(files)?)))
            .map_err(|e| e.into_py(py))
    }

    /// Drops the candidate bundle.
    fn clear_candidate(&self) {
        self.inner.clear_candidate();
    }

    /// How the candidate's decisions compared with the live bundle's, as a dict.
    fn shadow_report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let report = guarded(|| Ok(self.inner.shadow_report())).map_err(|e| e.into_py(py))?;
        pythonize(py, &report).map_err(|e| Failure::internal(e.to_string()).into_py(py))
    }

    /// Decides one request given as contract JSON and explains it, as a dict: the decision's
    /// fields plus `policies` (`id`, `effect`, `outcome`, `condition`, `error` each).
    fn explain<'py>(&self, py: Python<'py>, request: &str) -> PyResult<Bound<'py, PyAny>> {
        let explanation = self.explained(py, request)?;
        pythonize(py, &explanation).map_err(|e| Failure::internal(e.to_string()).into_py(py))
    }

    /// The same explanation as text for a person.
    fn explain_text(&self, py: Python<'_>, request: &str) -> PyResult<String> {
        Ok(self.explained(py, request)?.to_text())
    }

    /// Logs decisions from now on: every decision (of every call but `explain`) is passed to
    /// `sink` as one JSON `str`, a line to ship as is (request id, bundle, principal, action,
    /// resource, decision, policy ids, error kinds, token id, latency, context with the
    /// manifest's `sensitive_attributes` masked; never a token). `sink` runs on the calling
    /// thread once the deciding call is done, with the GIL; an exception it raises goes to
    /// `sys.unraisablehook` and loses only its event. `sample_rate` (0.0 to 1.0) logs that
    /// fraction, decisions with the same `request_id` alike; `max_events_per_second` caps the
    /// rate. Out-of-range options raise `ValueError` and change nothing. Replaces any earlier
    /// sink.
    #[pyo3(signature = (sink, *, sample_rate=1.0, max_events_per_second=None))]
    fn set_decision_log(
        &self,
        sink: &Bound<'_, PyAny>,
        sample_rate: f64,
        max_events_per_second: Option<u32>,
    ) -> PyResult<()> {
        if !sink.is_callable() {
            return Err(PyTypeError::new_err(
                "the decision log sink must be callable",
            ));
        }
        let options = DecisionLogOptions {
            sample_rate,
            max_events_per_second,
        };
        let previous = {
            let mut current = self.sink();
            ffi::log_to_caller(&self.inner, options)
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            current.replace(sink.clone().unbind())
        };
        drop(previous); // only now the lock is free: its finalizer may run Python code
        *self.otlp() = None;
        Ok(())
    }

    /// Stops logging decisions.
    fn clear_decision_log(&self) {
        self.inner.clear_decision_log();
        self.drop_sink();
        *self.otlp() = None;
    }

    /// Sends every decision as an OpenTelemetry log record to an OTLP/HTTP logs endpoint, from a
    /// bounded queue on an exporter thread of its own, replacing any other decision log.
    #[pyo3(signature = (*, endpoint, encoding="protobuf", max_queue=None, max_batch=None,
                        flush_interval=None, timeout=None, service_name=None, ca_file=None,
                        sample_rate=None, max_events_per_second=None))]
    #[allow(clippy::too_many_arguments)]
    fn export_decision_log_otlp(
        &self,
        py: Python<'_>,
        endpoint: String,
        encoding: &str,
        max_queue: Option<usize>,
        max_batch: Option<usize>,
        flush_interval: Option<f64>,
        timeout: Option<f64>,
        service_name: Option<String>,
        ca_file: Option<PathBuf>,
        sample_rate: Option<f64>,
        max_events_per_second: Option<u32>,
    ) -> PyResult<()> {
        let options = serde_json::json!({
            "endpoint": endpoint, "encoding": encoding, "max_queue": max_queue,
            "max_batch": max_batch, "flush_interval_seconds": flush_interval,
            "timeout_seconds": timeout, "service_name": service_name, "ca_file": ca_file,
            "sample_rate": sample_rate, "max_events_per_second": max_events_per_second,
        });
        let exported = guarded(|| {
            // Members left as None are null, which reads as absent.
            let (options, log) = arbiter_otlp::options_from_json(&options.to_string())
                .map_err(|e| Failure::new(arbiter_core::ErrorKind::InvalidArgument, e))?;
            arbiter_otlp::export_decision_log(&self.inner, options, log)
        })
        .map_err(|e| e.into_py(py))?;
        self.drop_sink();
        *self.otlp() = Some(exported);
        Ok(())
    }

    /// ``{"exported", "dropped", "failed_exports"}`` of the OpenTelemetry exporter, or None
    /// when the decision log is not one.
    fn otlp_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = arbiter_otlp::stats_json(self.otlp().as_ref().map(|e| e.stats()).as_ref());
        let value: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| Failure::internal(e.to_string()).into_py(py))?;
        Ok(pythonize(py, &value)?)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(sink) = self.decision_log.try_lock() {
            if let Some(sink) = sink.as_ref() {
                visit.call(sink)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        self.drop_sink();
    }

    /// What the engine has counted since it was created (reloads included), as a dict.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let metrics = guarded(|| Ok(self.inner.metrics())).map_err(|e| e.into_py(py))?;
        pythonize(py, &metrics).map_err(|e| Failure::internal(e.to_string()).into_py(py))
    }

    /// The same metrics in the Prometheus text exposition format.
    fn metrics_prometheus(&self, py: Python<'_>) -> PyResult<String> {
        guarded(|| Ok(self.inner.metrics().to_prometheus())).map_err(|e| e.into_py(py))
    }

    /// Test builds only (feature `fault-injection`): while `on`, every decision and reload of
    /// this engine panics inside Arbiter.
    #[cfg(feature = "fault-injection")]
    fn _inject_panics(&self, on: bool) {
        self.inner.inject_panics(on);
    }
}

/// Adds `Engine` to the module.
pub(crate) fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()
}
