//! A host-driven refresher: fetches the bundle from its source when it changed, has the engine
//! verify and load it, keeps the last good archive in a cache directory, and reports status to
//! the engine (its `info()` and metrics).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arbiter::{unpack_archive, BundleFile, Engine, Limits, SourceStatus, TrustedKeys};
use serde::{Deserialize, Serialize};

use crate::oci::sha256;
use crate::source::{Bundle, Fetched, Fetcher, Source};
use crate::FleetError;

/// The cache's copy of the last good bundle archive.
pub const CACHE_ARCHIVE: &str = "bundle.tar.gz";
/// What the cache knows of that archive (its source, digests, signing time, ETag).
pub const CACHE_STATE: &str = "state.json";

/// How a [`Refresher`] fetches and schedules.
#[derive(Debug, Clone)]
pub struct RefreshOptions {
    /// Where the last good archive is kept, so that a restart while the source is down still
    /// serves policy. None: no cache.
    pub cache_dir: Option<PathBuf>,
    /// Time between refreshes while they succeed (each one jittered by ±20%).
    pub interval: Duration,
    /// The longest wait after failures (the wait doubles with each consecutive failure, from
    /// `interval`, jittered down by up to half).
    pub max_backoff: Duration,
    /// Connect and read timeout of one fetch (HTTP: the whole request).
    pub timeout: Duration,
    /// The largest archive and bundle accepted, in bytes.
    pub max_bytes: usize,
    /// Speak plain HTTP to an OCI registry (one on loopback).
    pub plain_http: bool,
    /// Trust only the CA certificates in this PEM file for HTTPS (else the platform's roots).
    pub ca_file: Option<PathBuf>,
    /// Accept a signed bundle older than the serving one: an operator's deliberate rollback.
    pub allow_rollback: bool,
}

impl Default for RefreshOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            interval: Duration::from_secs(60),
            max_backoff: Duration::from_secs(15 * 60),
            timeout: Duration::from_secs(10),
            max_bytes: Limits::default().max_bundle_bytes,
            plain_http: false,
            ca_file: None,
            allow_rollback: false,
        }
    }
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// The source holds the serving bundle.
    Unchanged,
    /// A new bundle is serving; its digest.
    Updated(String),
}

impl Refreshed {
    /// As the bindings hand it out: `{"refreshed": "unchanged"}` or
    /// `{"refreshed": "updated", "digest": "sha256:..."}`; `None` (a refresh not due) is
    /// `{"refreshed": "not_due"}`.
    pub fn to_json(outcome: Option<&Self>) -> String {
        let value = match outcome {
            None => serde_json::json!({"refreshed": "not_due"}),
            Some(Refreshed::Unchanged) => serde_json::json!({"refreshed": "unchanged"}),
            Some(Refreshed::Updated(digest)) => {
                serde_json::json!({"refreshed": "updated", "digest": digest})
            }
        };
        value.to_string()
    }
}

/// [`RefreshOptions`] as the bindings pass them: JSON, every member optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsJson {
    cache_dir: Option<PathBuf>,
    interval_seconds: Option<f64>,
    max_backoff_seconds: Option<f64>,
    timeout_seconds: Option<f64>,
    max_bytes: Option<usize>,
    plain_http: Option<bool>,
    ca_file: Option<PathBuf>,
    allow_rollback: Option<bool>,
}

impl RefreshOptions {
    /// Options from JSON (`{"cache_dir", "interval_seconds", "max_backoff_seconds",
    /// "timeout_seconds", "max_bytes", "plain_http", "ca_file", "allow_rollback"}`, each
    /// optional; the rest default). An unknown member or a duration that is not a positive
    /// number is an error naming it.
    pub fn from_json(json: &str) -> Result<Self, FleetError> {
        let bad = |message: String| FleetError::Reference(format!("refresh options: {message}"));
        let given: OptionsJson = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        let seconds = |name: &str, value: Option<f64>, default: Duration| match value {
            None => Ok(default),
            Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
            Some(s) => Err(bad(format!(
                "`{name}` must be a positive number of seconds, not {s}"
            ))),
        };
        let default = Self::default();
        Ok(Self {
            interval: seconds("interval_seconds", given.interval_seconds, default.interval)?,
            max_backoff: seconds(
                "max_backoff_seconds",
                given.max_backoff_seconds,
                default.max_backoff,
            )?,
            timeout: seconds("timeout_seconds", given.timeout_seconds, default.timeout)?,
            cache_dir: given.cache_dir,
            max_bytes: given.max_bytes.unwrap_or(default.max_bytes),
            plain_http: given.plain_http.unwrap_or(default.plain_http),
            ca_file: given.ca_file,
            allow_rollback: given.allow_rollback.unwrap_or(default.allow_rollback),
        })
    }
}

/// `state.json` in the cache directory.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheState {
    source: String,
    /// The bundle's digest as the source names it (an OCI manifest's, else the archive's).
    digest: String,
    /// The archive's own digest, checked before the cached archive is used.
    archive_digest: String,
    signed_at: Option<i64>,
    etag: Option<String>,
}

/// Refreshes one engine's bundle from one source, when the host calls it: there is no
/// background thread. A host builds its engine with [`Refresher::start`], then calls
/// [`Refresher::refresh_if_due`] where it can afford a fetch (a server's timer task, a Rails
/// request boundary), or [`Refresher::refresh`] to fetch now.
///
/// A bundle from a remote source must be signed by a trusted key. Every new bundle is
/// verified and loaded by the engine before it serves (a refused one leaves the engine as it
/// was); one signed before the serving bundle is refused unless
/// [`RefreshOptions::allow_rollback`] says otherwise, across restarts too (the cache records
/// the serving bundle's signing time).
pub struct Refresher {
    source: Source,
    options: RefreshOptions,
    fetcher: Fetcher,
    /// The process that built `fetcher`: a forked child builds its own, never sharing pooled
    /// connections with its parent.
    pid: u32,
    etag: Option<String>,
    status: SourceStatus,
    next_at: Instant,
}

impl Refresher {
    /// A refresher for `source` (a directory, `https://...` or `oci://...`).
    pub fn new(source: Source, options: RefreshOptions) -> Result<Self, FleetError> {
        let fetcher = fetcher(&options)?;
        let status = SourceStatus {
            source: source.to_string(),
            ..SourceStatus::default()
        };
        Ok(Self {
            source,
            options,
            fetcher,
            pid: std::process::id(),
            etag: None,
            status,
            next_at: Instant::now(),
        })
    }

    /// The source's state after the last attempt.
    pub fn status(&self) -> &SourceStatus {
        &self.status
    }

    /// Builds an engine from the source, or, when the source cannot be reached or its bundle is
    /// refused, from the cache (which must hold this source's last good archive, intact and
    /// verified like any other). `keys` are required for a remote source; the engine then
    /// loads only bundles signed by them.
    pub fn start(&mut self, keys: Option<TrustedKeys>) -> Result<Engine, FleetError> {
        if self.source.is_remote() && keys.is_none() {
            return Err(FleetError::Reference(format!(
                "{}: a bundle from a remote source must be signed: give trusted keys",
                self.source
            )));
        }
        let cached = self.options.cache_dir.as_ref().map(|_| self.read_cache());
        // Rollback protection across restarts: nothing older than what was last served.
        let floor = match &cached {
            Some(Ok((state, _))) if !self.options.allow_rollback => state.signed_at,
            _ => None,
        };
        let keys = keys.map(|k| match floor {
            Some(t) => k.signed_no_earlier_than(t),
            None => k,
        });
        let build = |files: Vec<BundleFile>| match &keys {
            Some(keys) => Engine::from_signed_files(files, keys.clone()),
            None => Engine::from_files(files),
        };
        let fetched = self.fetcher.fetch(&self.source, None, None);
        let from_source = fetched.and_then(|f| match f {
            Fetched::New(bundle) => {
                let engine = build(bundle.files.clone())?;
                Ok((engine, bundle))
            }
            Fetched::Unchanged { .. } => Err(FleetError::Io("nothing fetched".into())),
        });
        let started = match from_source {
            Ok((engine, bundle)) => {
                self.loaded(&engine, bundle);
                Ok(engine)
            }
            Err(source_error) => {
                let (state, files) = match cached {
                    Some(Ok(cached)) => cached,
                    Some(Err(cache_error)) => {
                        return Err(FleetError::Io(format!(
                            "{source_error}; and the cache is refused: {cache_error}"
                        )))
                    }
                    None => return Err(source_error),
                };
                let engine = build(files).map_err(|cache_error| {
                    FleetError::Io(format!(
                        "{source_error}; and the cached bundle is refused: {cache_error}"
                    ))
                })?;
                self.etag = state.etag;
                self.status.digest = Some(state.digest);
                self.status.served_from = "cache".into();
                self.describe(&engine);
                self.failed(&engine, &source_error);
                Ok(engine)
            }
        };
        if started.is_ok() && self.status.consecutive_failures == 0 {
            self.next_at = Instant::now() + delay_after_start(&self.options, fastrand::f64());
        }
        started
    }

    /// Fetches now, if the source changed, and swaps the new bundle in. On any error the
    /// serving bundle stays, and the status (here and in the engine's metrics) says why.
    pub fn refresh(&mut self, engine: &Engine) -> Result<Refreshed, FleetError> {
        if self.pid != std::process::id() {
            // A forked child: the parent's pooled connections are not ours to use or close.
            std::mem::forget(std::mem::replace(
                &mut self.fetcher,
                fetcher(&self.options)?,
            ));
            self.pid = std::process::id();
        }
        if self.source.is_remote() && !engine.trusts_signing_keys() {
            let e = FleetError::Reference(format!(
                "{}: a bundle from a remote source must be signed: build the engine with \
                 trusted keys",
                self.source
            ));
            self.failed(engine, &e);
            return Err(e);
        }
        let fetched = self.fetcher.fetch(
            &self.source,
            self.status.digest.as_deref(),
            self.etag.as_deref(),
        );
        let result = fetched.and_then(|fetched| match fetched {
            Fetched::Unchanged { etag } => {
                self.etag = etag;
                Ok(Refreshed::Unchanged)
            }
            Fetched::New(bundle) => {
                let files = bundle.files.clone();
                match self.options.allow_rollback {
                    true => engine.rollback_to_files(files)?,
                    false => engine.reload_from_files(files)?,
                }
                let digest = bundle.digest.clone();
                self.loaded(engine, bundle);
                Ok(Refreshed::Updated(digest))
            }
        });
        match &result {
            Ok(_) => self.succeeded(engine),
            Err(e) => self.failed(engine, e),
        }
        result
    }

    /// [`Self::refresh`] when the schedule says one is due (the interval after a success, a
    /// growing backoff after failures, both jittered so that a fleet does not poll in step);
    /// `None` otherwise, at the cost of reading the clock.
    pub fn refresh_if_due(&mut self, engine: &Engine) -> Option<Result<Refreshed, FleetError>> {
        (Instant::now() >= self.next_at).then(|| self.refresh(engine))
    }

    /// How long until the next refresh is due.
    pub fn next_refresh_in(&self) -> Duration {
        self.next_at.saturating_duration_since(Instant::now())
    }

    /// A new bundle serves: record it, persist it.
    fn loaded(&mut self, engine: &Engine, bundle: Bundle) {
        self.etag = bundle.etag.clone();
        self.status.digest = Some(bundle.digest.clone());
        self.status.served_from = "source".into();
        self.describe(engine);
        let persisted = self.write_cache(&bundle, engine.info().signed_at);
        self.succeeded(engine);
        if let Err(e) = persisted {
            // Serving, but a restart with the source down would not find it.
            self.status.last_error = Some(format!("cannot write the cache: {e}"));
            engine.set_source_status(self.status.clone());
        }
    }

    fn describe(&mut self, engine: &Engine) {
        let info = engine.info();
        self.status.revision = info.version;
        self.status.signed_at = info.signed_at;
    }

    fn succeeded(&mut self, engine: &Engine) {
        let now = unix_now();
        self.status.last_attempt = Some(now);
        self.status.last_success = Some(now);
        self.status.last_error = None;
        self.status.consecutive_failures = 0;
        self.next_at = Instant::now() + delay_after(&self.options, 0, fastrand::f64());
        engine.set_source_status(self.status.clone());
    }

    fn failed(&mut self, engine: &Engine, error: &FleetError) {
        self.status.last_attempt = Some(unix_now());
        self.status.last_error = Some(error.to_string());
        self.status.consecutive_failures += 1;
        self.next_at = Instant::now()
            + delay_after(
                &self.options,
                self.status.consecutive_failures,
                fastrand::f64(),
            );
        engine.set_source_status(self.status.clone());
    }

    /// This source's last good archive and its files, when the cache holds one.
    fn read_cache(&self) -> Result<(CacheState, Vec<BundleFile>), FleetError> {
        let dir = self.options.cache_dir.as_deref().unwrap_or(".".as_ref());
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| FleetError::Io(format!("{}: {e}", path.display())))
        };
        let state: CacheState = serde_json::from_slice(&read(CACHE_STATE)?)
            .map_err(|e| FleetError::Io(format!("{}: {e}", dir.join(CACHE_STATE).display())))?;
        if state.source != self.source.to_string() {
            return Err(FleetError::Io(format!(
                "{}: the cache holds a bundle from {}, not {}",
                dir.display(),
                state.source,
                self.source
            )));
        }
        let archive = read(CACHE_ARCHIVE)?;
        if sha256(&archive) != state.archive_digest {
            return Err(FleetError::Io(format!(
                "{}: the cached archive does not match its digest (corrupted)",
                dir.join(CACHE_ARCHIVE).display()
            )));
        }
        let files = unpack_archive(&archive, self.options.max_bytes)?;
        Ok((state, files))
    }

    /// Keeps `bundle` as the cache's last good archive: each file written beside its place and
    /// renamed over it, the archive before the state that names it.
    fn write_cache(&self, bundle: &Bundle, signed_at: Option<i64>) -> Result<(), FleetError> {
        let Some(dir) = &self.options.cache_dir else {
            return Ok(());
        };
        let state = CacheState {
            source: self.source.to_string(),
            digest: bundle.digest.clone(),
            archive_digest: sha256(&bundle.archive),
            signed_at,
            etag: bundle.etag.clone(),
        };
        let state = serde_json::to_vec_pretty(&state).map_err(|e| FleetError::Io(e.to_string()))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| FleetError::Io(format!("{}: {e}", dir.display())))?;
        for (name, contents) in [(CACHE_ARCHIVE, &bundle.archive), (CACHE_STATE, &state)] {
            let path = dir.join(name);
            let partial = dir.join(format!(".{name}.partial-{}", std::process::id()));
            std::fs::write(&partial, contents)
                .and_then(|()| std::fs::rename(&partial, &path))
                .map_err(|e| FleetError::Io(format!("{}: {e}", path.display())))?;
        }
        Ok(())
    }
}

fn fetcher(options: &RefreshOptions) -> Result<Fetcher, FleetError> {
    Fetcher::new(
        options.timeout,
        options.max_bytes,
        options.plain_http,
        options.ca_file.as_deref(),
    )
}

/// The wait before the first refresh after [`Refresher::start`], given a uniform random `u` in
/// [0, 1): anywhere in one interval, so that a fleet started at once (a deploy, a restart) is
/// spread over the interval from its first refresh on.
pub fn delay_after_start(options: &RefreshOptions, u: f64) -> Duration {
    options.interval.mul_f64(u)
}

/// The wait before the next refresh after `failures` consecutive failures, given a uniform
/// random `u` in [0, 1): the interval ±20% after a success; after failures the interval doubled
/// per failure beyond the first, capped at `max_backoff`, then jittered down by up to half.
pub fn delay_after(options: &RefreshOptions, failures: u64, u: f64) -> Duration {
    let interval = options.interval.as_secs_f64();
    let seconds = match failures {
        0 => interval * (0.8 + 0.4 * u),
        n => {
            let doubled = interval * 2f64.powi(i32::try_from(n - 1).unwrap_or(i32::MAX).min(30));
            doubled.min(options.max_backoff.as_secs_f64()) * (1.0 - 0.5 * u)
        }
    };
    Duration::from_secs_f64(seconds)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_read_from_json_name_what_is_wrong() {
        let options = RefreshOptions::from_json(
            r#"{"cache_dir": "/var/cache/arbiter", "interval_seconds": 30, "plain_http": true}"#,
        )
        .unwrap();
        assert_eq!(options.interval, Duration::from_secs(30));
        assert_eq!(options.timeout, RefreshOptions::default().timeout);
        assert!(options.plain_http);
        for (json, named) in [
            (r#"{"interval": 30}"#, "interval"),
            (r#"{"timeout_seconds": 0}"#, "timeout_seconds"),
            (r#"{"max_backoff_seconds": -1}"#, "max_backoff_seconds"),
        ] {
            let e = RefreshOptions::from_json(json).unwrap_err().to_string();
            assert!(e.contains(named), "{json}: {e}");
        }
    }

    #[test]
    fn the_schedule_jitters_and_backs_off_to_its_cap() {
        let options = RefreshOptions {
            interval: Duration::from_secs(60),
            max_backoff: Duration::from_secs(600),
            ..RefreshOptions::default()
        };
        let secs = |failures, u| delay_after(&options, failures, u).as_secs_f64();
        assert_eq!((secs(0, 0.0), secs(0, 0.999_999).round()), (48.0, 72.0));
        assert_eq!((secs(1, 0.0), secs(1, 0.5)), (60.0, 45.0));
        assert_eq!(secs(2, 0.0), 120.0);
        assert_eq!(secs(4, 0.0), 480.0);
        assert_eq!(secs(5, 0.0), 600.0);
        assert_eq!(secs(1_000, 0.0), 600.0);
        assert_eq!(secs(1_000, 0.999_999).round(), 300.0);
    }
}
