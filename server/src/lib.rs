//! `arbiter serve`: the embedded engine behind a network API, for callers that cannot link it.
//!
//! - gRPC: Envoy's external authorization (`envoy.service.auth.v3.Authorization/Check`), the
//!   request mapped through the bundle's `http.json`, and the gRPC health service.
//! - HTTP: OpenID AuthZEN 1.0 (`/access/v1/evaluation`, `/access/v1/evaluations`,
//!   `/access/v1/search/resource`, `/.well-known/authzen-configuration`), `/metrics`,
//!   `/healthz` and `/readyz`.
//!
//! One engine decides for both, as it would embedded: the same bundle, the same answers. Every
//! failure is a deny with its reason, never an error status a proxy could fail open on. The
//! bundle reloads on `SIGHUP` and when its directory changes (a failed reload keeps the bundle
//! serving); `SIGTERM` stops accepting, lets requests under way finish, and exits 0.

mod authzen;
mod ext_authz;
mod listen;
mod ops;
mod state;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

pub use state::{log_destination, State};

/// `arbiter serve`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Bundle directory; the embedded default GitLab bundle when left out (and no --source).
    #[arg(long, conflicts_with = "source")]
    pub bundle: Option<PathBuf>,
    /// Where the bundle is fetched from and refreshed: `oci://HOST/REPO[:TAG|@DIGEST]`, an
    /// `https://` URL serving a bundle archive, or a directory. A remote source needs
    /// --public-key. See docs/fleet.md.
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    /// Keep the last good bundle archive of --source here, so that a restart while the source
    /// is down still serves policy.
    #[arg(long, value_name = "DIR", requires = "source")]
    pub cache_dir: Option<PathBuf>,
    /// Refresh --source about this often (seconds, jittered; failures back off up to 15
    /// minutes). SIGHUP refreshes at once.
    #[arg(long, default_value_t = 60, requires = "source")]
    pub refresh_interval: u64,
    /// Speak plain HTTP to the OCI registry of --source (one on loopback).
    #[arg(long, requires = "source")]
    pub plain_http: bool,
    /// Address for AuthZEN, /metrics, /healthz and /readyz over HTTP, or `off`.
    #[arg(long, default_value = "127.0.0.1:8181")]
    pub http: String,
    /// Address for Envoy's external authorization and gRPC health, or `off`.
    #[arg(long, default_value = "127.0.0.1:9191")]
    pub grpc: String,
    /// A trusted bundle signing key (public key PEM file); repeat for several. With any, only
    /// bundles signed by one of them load, at start and on every reload.
    #[arg(long = "public-key", value_name = "PUB.pem")]
    pub public_keys: Vec<PathBuf>,
    /// Append a decision log event (one JSON line) per decision to this file, or `-` for
    /// standard error. Events are written off the deciding thread; when the writer falls
    /// behind, events are dropped and counted, never waited for.
    #[arg(long, value_name = "FILE")]
    pub decision_log: Option<PathBuf>,
    #[command(flatten)]
    pub otlp: OtlpArgs,
    /// Check the bundle directory for changes this often (seconds); 0 reloads on SIGHUP only.
    #[arg(long, default_value_t = 1)]
    pub reload_interval: u64,
    /// The largest request accepted (bytes); a larger one is denied (ext_authz) or refused
    /// with 413 (AuthZEN).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_request_bytes: usize,
    /// At most this many decisions at once; more wait their turn.
    #[arg(long, default_value_t = 1024)]
    pub max_concurrency: usize,
    /// Serve TLS on both listeners with this certificate chain (PEM); read again on every
    /// reload, so a rotated certificate is used for new connections without a restart.
    #[arg(long, value_name = "CERT.pem", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "KEY.pem", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates that chain to these CA certificates (PEM): mutual TLS.
    #[arg(long, value_name = "CA.pem", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// After SIGTERM, wait at most this long (seconds) for requests under way to finish.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
}

/// Decision logs to an OpenTelemetry receiver (`arbiter serve` and `arbiter check`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OtlpArgs {
    /// Send each decision as an OpenTelemetry log record to this OTLP/HTTP logs endpoint
    /// (e.g. http://127.0.0.1:4318/v1/logs), from a bounded queue: a receiver that is down or
    /// slow never slows a decision; what is lost is counted.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// How records are encoded: protobuf or json.
    #[arg(long, default_value = "protobuf", requires = "otlp_endpoint")]
    pub otlp_encoding: String,
    /// Records waiting for the receiver; past this many, new ones are dropped (and counted).
    #[arg(long, default_value_t = 8192, requires = "otlp_endpoint")]
    pub otlp_max_queue: usize,
}

impl OtlpArgs {
    /// The exporter these options ask for, started; `None` without `--otlp-endpoint`.
    pub fn start(&self) -> Result<Option<arbiter_otlp::OtlpExporter>, String> {
        let Some(endpoint) = &self.otlp_endpoint else {
            return Ok(None);
        };
        let options = arbiter_otlp::ExporterOptions {
            encoding: self.otlp_encoding.parse()?,
            max_queue: self.otlp_max_queue,
            ..arbiter_otlp::ExporterOptions::new(endpoint.clone())
        };
        arbiter_otlp::OtlpExporter::start(options).map(Some)
    }
}

/// What the server prints on standard output once it listens (one JSON line), so that whoever
/// started it with port 0 learns the ports.
#[derive(serde::Serialize)]
struct Listening {
    event: &'static str,
    http: Option<SocketAddr>,
    grpc: Option<SocketAddr>,
}

/// Runs the server until SIGTERM or SIGINT. Exit 0 after a clean stop, 2 when the bundle or an
/// option is unusable at start.
pub fn run(options: Options) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(message),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("arbiter serve: {message}");
    ExitCode::from(2)
}

async fn serve(options: Options) -> Result<(), String> {
    // Caught from the start, so that none of them ends the process while the bundle loads.
    let caught = |kind| signal(kind).map_err(|e| format!("cannot catch signals: {e}"));
    let (mut term, mut int) = (
        caught(SignalKind::terminate())?,
        caught(SignalKind::interrupt())?,
    );
    let hup = caught(SignalKind::hangup())?;
    let state = Arc::new(State::new(&options)?);
    let http = bind(&options.http).await?;
    let grpc = bind(&options.grpc).await?;
    let address = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let listening = Listening {
        event: "listening",
        http: address(&http),
        grpc: address(&grpc),
    };
    println!("{}", serde_json::to_string(&listening).unwrap_or_default());

    let (stop_tx, stop_rx) = watch::channel(false);
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // tonic-health starts the server's own status ("") at SERVING: not until the bundle loads.
    set_health(&health_reporter, ServingStatus::NotServing).await;
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(listener) = http {
        let router = authzen::router(Arc::clone(&state)).merge(ops::router(Arc::clone(&state)));
        let incoming = listen::incoming(listener, state.tls().cloned(), stop_rx.clone());
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            axum::serve(incoming, router)
                .with_graceful_shutdown(stop)
                .await
                .map_err(|e| format!("HTTP server: {e}"))
        });
    }
    if let Some(listener) = grpc {
        let router = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(ext_authz::service(Arc::clone(&state)));
        let incoming =
            listen::incoming(listener, state.tls().cloned(), stop_rx.clone()).into_stream();
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, stop)
                .await
                .map_err(|e| format!("gRPC server: {e}"))
        });
    }

    // The bundle loads once the ports are open, so /readyz and gRPC health say when it has.
    let loading = Arc::clone(&state);
    let loaded = tokio::task::spawn_blocking(move || loading.load())
        .await
        .map_err(|e| format!("loading the bundle: {e}"))?;
    if let Err(message) = loaded {
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        return Err(message);
    }
    set_health(&health_reporter, ServingStatus::Serving).await;
    state.log_event("ready", serde_json::json!({"bundle": state.describe()}));

    let reloads = tokio::spawn(reload_loop(
        Arc::clone(&state),
        Duration::from_secs(options.reload_interval),
        hup,
    ));
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    state.log_event("stopping", serde_json::json!({}));
    reloads.abort();
    set_health(&health_reporter, ServingStatus::NotServing).await;
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(options.drain_timeout), async {
        let mut result = Ok(());
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) | Err(e) = done.map_err(|e| e.to_string()) {
                result = Err(e);
            }
        }
        result
    })
    .await;
    if drained.is_err() {
        state.log_event(
            "drain_timeout",
            serde_json::json!({"seconds": options.drain_timeout}),
        );
    }
    state.flush_decision_log();
    drained.unwrap_or(Ok(()))
}

/// Sets the gRPC health of the server (`""`) and of its Authorization service alike.
async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    use tonic::server::NamedService;
    type Authorization = ext_authz::AuthorizationServer<ext_authz::Check>;
    reporter.set_service_status("", status).await;
    reporter
        .set_service_status(<Authorization as NamedService>::NAME, status)
        .await;
}

/// A listener on `address`, or none for `off`.
async fn bind(address: &str) -> Result<Option<TcpListener>, String> {
    if address == "off" {
        return Ok(None);
    }
    TcpListener::bind(address)
        .await
        .map(Some)
        .map_err(|e| format!("cannot listen on {address}: {e}"))
}

/// Resolves once `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Reloads on SIGHUP, and when the bundle directory changed, checked every `interval` (never
/// when it is zero).
async fn reload_loop(state: Arc<State>, interval: Duration, mut hup: Signal) {
    let mut tick = tokio::time::interval(if interval.is_zero() {
        Duration::from_secs(3600)
    } else {
        interval
    });
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = hup.recv() => true,
            _ = tick.tick() => false,
        };
        if !forced && interval.is_zero() {
            continue;
        }
        let state = Arc::clone(&state);
        let _ = tokio::task::spawn_blocking(move || state.reload(forced)).await;
    }
}
