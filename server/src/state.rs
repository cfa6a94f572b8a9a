//! What every request handler shares: the engine (once its bundle has loaded), how it was
//! loaded (to reload it the same way), the decision log's writer and the server's counters.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use arbiter::{DecisionLogOptions, Engine, TrustedKeys};
use arbiter_fleet::{RefreshOptions, Refresher, Source};

use crate::ops::Counters;
use crate::tls::{Tls, TlsFiles};
use crate::Options;

/// Decision log events waiting for the writer; past this many, new ones are dropped.
const LOG_QUEUE: usize = 65_536;

/// The server's shared state.
pub struct State {
    engine: OnceLock<Engine>,
    bundle: Option<PathBuf>,
    /// Refreshes the bundle from `--source`, when there is one.
    refresher: Option<Mutex<Refresher>>,
    /// `--source` as given.
    source: Option<String>,
    keys: Option<TrustedKeys>,
    decision_log: Option<LogWriter>,
    /// Decision log records for an OpenTelemetry receiver.
    otlp: Option<Arc<arbiter_otlp::OtlpExporter>>,
    tls: Option<Arc<Tls>>,
    /// The bundle directory's files as last loaded (paths, sizes, modification times).
    fingerprint: Mutex<Option<u64>>,
    pub(crate) counters: Counters,
    pub(crate) max_request_bytes: usize,
    pub(crate) permits: tokio::sync::Semaphore,
}

/// A decision log written by its own thread from a bounded queue.
struct LogWriter {
    queue: SyncSender<Option<String>>,
    dropped: Arc<AtomicU64>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl State {
    /// The state for `options`, its bundle not loaded yet; fails on an unusable key or log file.
    pub fn new(options: &Options) -> Result<Self, String> {
        let keys = if options.public_keys.is_empty() {
            None
        } else if options.bundle.is_none() && options.source.is_none() {
            return Err(
                "--public-key needs --bundle or --source (the embedded bundle is not signed)"
                    .into(),
            );
        } else {
            let pems = options
                .public_keys
                .iter()
                .map(|p| {
                    std::fs::read(p).map_err(|e| format!("cannot read `{}`: {e}", p.display()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(TrustedKeys::from_pems(&pems).map_err(|e| e.to_string())?)
        };
        let tls = match (&options.tls_cert, &options.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(Tls::load(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: options.client_ca.clone(),
            })?)),
            _ => None,
        };
        let refresher = options
            .source
            .as_deref()
            .map(|source| {
                let source: Source = source.parse().map_err(|e| format!("--source {e}"))?;
                let refresh = RefreshOptions {
                    cache_dir: options.cache_dir.clone(),
                    interval: std::time::Duration::from_secs(options.refresh_interval.max(1)),
                    plain_http: options.plain_http,
                    ..RefreshOptions::default()
                };
                Refresher::new(source, refresh).map_err(|e| e.to_string())
            })
            .transpose()?
            .map(Mutex::new);
        let decision_log = options
            .decision_log
            .as_deref()
            .map(LogWriter::open)
            .transpose()?;
        let otlp = options.otlp.start()?.map(Arc::new);
        Ok(Self {
            engine: OnceLock::new(),
            bundle: options.bundle.clone(),
            refresher,
            source: options.source.clone(),
            keys,
            decision_log,
            otlp,
            tls,
            fingerprint: Mutex::new(None),
            counters: Counters::default(),
            max_request_bytes: options.max_request_bytes,
            permits: tokio::sync::Semaphore::new(options.max_concurrency.max(1)),
        })
    }

    /// The engine, once its bundle has loaded.
    pub fn engine(&self) -> Option<&Engine> {
        self.engine.get()
    }

    /// Loads the bundle (the first time only).
    pub(crate) fn load(&self) -> Result<(), String> {
        let fingerprint = self.bundle.as_deref().map(fingerprint);
        let engine = match (&self.refresher, &self.bundle, &self.keys) {
            (Some(refresher), ..) => lock(refresher)
                .start(self.keys.clone())
                .map_err(|e| format!("cannot load {}:\n{e}", self.describe()))?,
            (None, Some(dir), Some(keys)) => Engine::from_signed_bundle_dir(dir, keys.clone())
                .map_err(|e| format!("cannot load {} ({}):\n{e}", self.describe(), e.kind()))?,
            (None, Some(dir), None) => Engine::from_bundle_dir(dir)
                .map_err(|e| format!("cannot load {} ({}):\n{e}", self.describe(), e.kind()))?,
            (None, None, _) => Engine::gitlab_default()
                .map_err(|e| format!("cannot load {} ({}):\n{e}", self.describe(), e.kind()))?,
        };
        if self.decision_log.is_some() || self.otlp.is_some() {
            let file = self
                .decision_log
                .as_ref()
                .map(|log| (log.queue.clone(), Arc::clone(&log.dropped)));
            let otlp = self.otlp.clone();
            engine
                .set_decision_log(DecisionLogOptions::default(), move |line| {
                    if let Some((queue, dropped)) = &file {
                        if let Err(TrySendError::Full(_)) = queue.try_send(Some(line.to_owned())) {
                            dropped.fetch_add(1, Relaxed);
                        }
                    }
                    if let Some(otlp) = &otlp {
                        otlp.offer(line);
                    }
                })
                .map_err(|e| e.to_string())?;
        }
        *self.fingerprint.lock().unwrap_or_else(|e| e.into_inner()) = fingerprint;
        let _ = self.engine.set(engine);
        Ok(())
    }

    /// TLS, when the server serves it.
    pub(crate) fn tls(&self) -> Option<&Arc<Tls>> {
        self.tls.as_ref()
    }

    /// Reloads the bundle directory and the TLS files when `forced` (SIGHUP) or when they
    /// changed since the last attempt. What fails to load is logged and what serves is kept.
    pub(crate) fn reload(&self, forced: bool) {
        match self.tls.as_ref().and_then(|tls| tls.reload(forced)) {
            Some(Ok(())) => self.log_event("tls_reloaded", serde_json::json!({})),
            Some(Err(e)) => self.log_event("tls_reload_failed", serde_json::json!({"error": e})),
            None => {}
        }
        if let (Some(refresher), Some(engine)) = (&self.refresher, self.engine()) {
            let refreshed = {
                let mut refresher = lock(refresher);
                match forced {
                    true => Some(refresher.refresh(engine)),
                    false => refresher.refresh_if_due(engine),
                }
            };
            match refreshed {
                Some(Ok(arbiter_fleet::Refreshed::Updated(digest))) => self.log_event(
                    "reloaded",
                    serde_json::json!({"bundle": self.describe(), "digest": digest}),
                ),
                Some(Err(e)) => {
                    let info = engine.info();
                    self.log_event(
                        "reload_failed",
                        serde_json::json!({"error": e.to_string(), "serving": info.version,
                                           "source": info.source}),
                    )
                }
                Some(Ok(arbiter_fleet::Refreshed::Unchanged)) | None => {}
            }
            return;
        }
        let (Some(dir), Some(engine)) = (&self.bundle, self.engine()) else {
            return;
        };
        let now = fingerprint(dir);
        {
            let mut last = self.fingerprint.lock().unwrap_or_else(|e| e.into_inner());
            if !forced && *last == Some(now) {
                return;
            }
            *last = Some(now);
        }
        match engine.reload_from_dir(dir) {
            Ok(()) => self.log_event("reloaded", serde_json::json!({"bundle": self.describe()})),
            Err(e) => self.log_event(
                "reload_failed",
                serde_json::json!({"kind": e.kind(), "error": e.to_string(),
                                   "serving": engine.info().version}),
            ),
        }
    }

    /// The bundle, for messages: its directory, or the default bundle.
    pub(crate) fn describe(&self) -> String {
        let source = match (&self.refresher, &self.bundle) {
            (Some(_), _) => format!(
                "bundle from `{}`",
                self.source.as_deref().unwrap_or_default()
            ),
            (None, Some(dir)) => format!("bundle `{}`", dir.display()),
            (None, None) => "the default bundle".to_owned(),
        };
        match self.engine().map(Engine::info) {
            Some(info) => format!(
                "{source} ({} {})",
                info.name.unwrap_or_default(),
                info.version.unwrap_or_default()
            ),
            None => source,
        }
    }

    /// Prints one server event as a JSON line on standard error.
    pub(crate) fn log_event(&self, event: &str, fields: serde_json::Value) {
        let mut line = serde_json::json!({"event": event});
        if let (Some(line), serde_json::Value::Object(fields)) = (line.as_object_mut(), fields) {
            line.extend(fields);
        }
        eprintln!("{line}");
    }

    /// Decision log events dropped because the writer fell behind.
    pub(crate) fn decision_log_dropped(&self) -> Option<u64> {
        self.decision_log
            .as_ref()
            .map(|log| log.dropped.load(Relaxed))
    }

    /// What the OpenTelemetry exporter has exported, dropped and failed, when there is one.
    pub(crate) fn otlp_stats(&self) -> Option<arbiter_otlp::ExporterStats> {
        self.otlp.as_ref().map(|otlp| otlp.stats())
    }

    /// Writes out every queued decision log event (at shutdown), to the file and to the
    /// OpenTelemetry receiver (waiting at most 5 s for it).
    pub(crate) fn flush_decision_log(&self) {
        if let Some(otlp) = &self.otlp {
            otlp.shutdown(std::time::Duration::from_secs(5));
        }
        if let Some(log) = &self.decision_log {
            let _ = log.queue.send(None);
            if let Some(thread) = log.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = thread.join();
            }
        }
    }
}

impl LogWriter {
    fn open(path: &Path) -> Result<Self, String> {
        let out = log_destination(path)?;
        let (queue, lines) = sync_channel(LOG_QUEUE);
        let thread = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || write_lines(lines, out))
            .map_err(|e| format!("cannot start the decision log writer: {e}"))?;
        Ok(Self {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            thread: Mutex::new(Some(thread)),
        })
    }
}

/// Where a decision log given as `--decision-log PATH` goes: appended to the file, or standard
/// error for `-` (what `arbiter check` and `arbiter serve` both take).
pub fn log_destination(path: &Path) -> Result<Box<dyn Write + Send>, String> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::stderr()));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(|file| Box::new(file) as Box<dyn Write + Send>)
        .map_err(|e| format!("cannot open the decision log `{}`: {e}", path.display()))
}

/// Writes each line as it comes, flushing whenever the queue runs dry; `None` ends it.
fn write_lines(lines: Receiver<Option<String>>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(Some(line)) = lines.recv() {
        let _ = writeln!(out, "{line}");
        while let Ok(next) = lines.try_recv() {
            match next {
                Some(line) => {
                    let _ = writeln!(out, "{line}");
                }
                None => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

/// A hash of the paths, sizes and modification times of the files under `dir`.
fn fingerprint(dir: &Path) -> u64 {
    fn walk(dir: &Path, hasher: &mut DefaultHasher) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            path.hash(hasher);
            if meta.is_dir() {
                walk(&path, hasher);
            } else {
                meta.len().hash(hasher);
                meta.modified().ok().hash(hasher);
            }
        }
    }
    let mut hasher = DefaultHasher::new();
    walk(dir, &mut hasher);
    hasher.finish()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
