//! `arbiter`: decide requests, validate bundles and run their tests from the command line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use arbiter::bundle_tests::TestSuite;
use arbiter::{DecisionLogOptions, Dialect, Engine, LoadError, RequestError};
use clap::{Parser, Subcommand};

/// `println!` that reports a write that fails (output piped into a command that has exited) as
/// the CLI's error, instead of panicking: `say!(...)?`.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| format!("cannot write output: {e}"))
    }};
}

/// `print!`, as `say!` is `println!`.
macro_rules! say_part {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| format!("cannot write output: {e}"))
    }};
}

mod bundle;
mod token;

/// Exit codes of the contract.
pub(crate) const ALLOW: u8 = 0;
pub(crate) const DENY: u8 = 1;
const INVALID: u8 = 2;

#[derive(Parser)]
#[command(
    name = "arbiter",
    version,
    about = "Embeddable Cedar policy decisions: check, validate, test"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decide one request (from --request, or standard input) or a JSONL batch (--requests).
    /// Exit 0 allow, 1 deny, 2 invalid input; for a batch, 2 if any line was bad, else 0.
    Check {
        /// Bundle directory; the embedded default GitLab bundle when left out.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// File holding one request as JSON, or `-` for standard input.
        #[arg(long, conflicts_with = "requests")]
        request: Option<PathBuf>,
        /// File holding one request JSON per line; prints one decision line per request.
        #[arg(long)]
        requests: Option<PathBuf>,
        /// Check tokens as of this time (Unix seconds) instead of now.
        #[arg(long)]
        now: Option<i64>,
        /// Append a decision log event (one JSON line) per decision to this file, or `-` for
        /// standard error.
        #[arg(long, value_name = "FILE")]
        decision_log: Option<PathBuf>,
        #[command(flatten)]
        otlp: arbiter_server::OtlpArgs,
    },
    /// Load and validate a bundle. Exit 0 when it loads, 2 otherwise, with the problems printed.
    Validate {
        /// Bundle directory; the embedded default GitLab bundle when left out.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Run a bundle's decision tests (tests/*.json). Ends with `N passed, M failed`.
    Test {
        /// Bundle directory; the embedded default GitLab bundle when left out.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Print the bundle's entities (static ones and the schema's actions) as Cedar entity JSON.
    Entities {
        /// Bundle directory; the embedded default GitLab bundle when left out.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Decide one request and explain it: every policy whose scope matched, and whether it was
    /// satisfied, not satisfied or errored, with the condition that decided it. Exit codes as
    /// for `check`.
    Explain {
        /// Bundle directory; the embedded default GitLab bundle when left out.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// File holding one request as JSON, or `-` for standard input (the default).
        #[arg(long)]
        request: Option<PathBuf>,
        /// Print the explanation as JSON (the decision's fields plus `policies`).
        #[arg(long)]
        json: bool,
        /// Check tokens as of this time (Unix seconds) instead of now.
        #[arg(long)]
        now: Option<i64>,
    },
    /// Which resources of a type the principal may act on, as a SQL condition: the request is a
    /// check request whose `resource` has a `type` and no `id`. Prints `{"kind": "all" | "none"
    /// | "where", "sql", "params"}` and exits 0; exits 2 with `{"error": {...}}` otherwise
    /// (kind `untranslatable` when the bundle's SQL mapping cannot express the answer).
    Query {
        /// Bundle directory; the embedded default GitLab bundle when left out.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// File holding the query request as JSON, or `-` for standard input (the default).
        #[arg(long)]
        request: Option<PathBuf>,
        /// `postgres` or `sqlite`.
        #[arg(long, value_parser = parse_dialect)]
        dialect: Dialect,
        /// Also print the residual policies the condition was written from, to standard error.
        #[arg(long)]
        explain: bool,
    },
    /// Decide every request of a JSONL file with two bundles and print, one JSON line each, the
    /// requests whose decision changes (`{"line", "request", "bundle", "against"}`). Exit 0 when
    /// none changes, 1 when some do, 2 on invalid input.
    Diff {
        /// The bundle in use; the embedded default GitLab bundle when left out.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// The bundle to compare it with.
        #[arg(long)]
        against: PathBuf,
        /// File holding one request JSON per line.
        #[arg(long)]
        requests: PathBuf,
        /// Check tokens as of this time (Unix seconds) instead of now.
        #[arg(long)]
        now: Option<i64>,
    },
    /// Decide a sample of requests, then print the engine's metrics (Prometheus text, or JSON):
    /// the requests of --requests (one JSON per line), else the bundle's decision tests.
    Metrics {
        /// Bundle directory; the embedded default GitLab bundle when left out.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// File holding one request JSON per line.
        #[arg(long)]
        requests: Option<PathBuf>,
        /// Print the snapshot as JSON instead of Prometheus text.
        #[arg(long)]
        json: bool,
    },
    /// Verify and mint tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Sign bundles and verify their signatures.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Serve decisions over the network: Envoy's external authorization (gRPC, through the
    /// bundle's http.json) and AuthZEN 1.0 (HTTP), with /metrics, /healthz and /readyz.
    /// SIGHUP reloads the bundle; SIGTERM drains and exits 0.
    Serve(arbiter_server::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(options) => return arbiter_server::run(options),
        Command::Check {
            bundle,
            request,
            requests,
            now,
            decision_log,
            otlp,
        } => otlp.start().and_then(|otlp| {
            let otlp = otlp.map(std::sync::Arc::new);
            let decided = load(bundle.as_deref(), now)
                .and_then(|engine| log_decisions(engine, decision_log.as_deref(), otlp.clone()))
                .and_then(|engine| match requests {
                    Some(path) => check_batch(&engine, &path),
                    None => check_one(&engine, request.as_deref()),
                });
            if let Some(otlp) = otlp {
                otlp.shutdown(std::time::Duration::from_secs(5));
                let stats = otlp.stats();
                if stats.dropped > 0 {
                    eprintln!(
                        "arbiter: {} decision log records not exported to the OTLP receiver",
                        stats.dropped
                    );
                }
            }
            decided
        }),
        Command::Validate { bundle } => validate(bundle.as_deref()),
        Command::Test { bundle } => test(bundle.as_deref()),
        Command::Entities { bundle } => load(bundle.as_deref(), None).and_then(|engine| {
            say!("{}", engine.entities_json())?;
            Ok(ALLOW)
        }),
        Command::Explain {
            bundle,
            request,
            json,
            now,
        } => load(bundle.as_deref(), now)
            .and_then(|engine| explain(&engine, request.as_deref(), json)),
        Command::Query {
            bundle,
            request,
            dialect,
            explain,
        } => load(bundle.as_deref(), None)
            .and_then(|engine| query(&engine, request.as_deref(), dialect, explain)),
        Command::Diff {
            bundle,
            against,
            requests,
            now,
        } => diff(bundle.as_deref(), &against, &requests, now),
        Command::Metrics {
            bundle,
            requests,
            json,
        } => metrics(bundle.as_deref(), requests.as_deref(), json),
        Command::Token(command) => token::run(command),
        Command::Bundle(command) => bundle::run(command),
    };
    ExitCode::from(code.unwrap_or_else(|message| {
        eprintln!("arbiter: {message}");
        INVALID
    }))
}

/// The engine of `bundle` (the default bundle when `None`), checking tokens as of `now`.
pub(crate) fn load(bundle: Option<&Path>, now: Option<i64>) -> Result<Engine, String> {
    let engine = match bundle {
        Some(dir) => Engine::from_bundle_dir(dir),
        None => Engine::gitlab_default(),
    }
    .map_err(|e| load_failure(bundle, &e))?;
    Ok(match now {
        Some(now) => engine.with_fixed_time(now),
        None => engine,
    })
}

/// `engine`, logging each decision as a JSON line to `path` (appended; `-` is standard error)
/// and as a log record to `otlp`'s receiver.
fn log_decisions(
    engine: Engine,
    path: Option<&Path>,
    otlp: Option<std::sync::Arc<arbiter_otlp::OtlpExporter>>,
) -> Result<Engine, String> {
    if path.is_none() && otlp.is_none() {
        return Ok(engine);
    }
    let out = path
        .map(arbiter_server::log_destination)
        .transpose()?
        .map(std::sync::Mutex::new);
    engine
        .set_decision_log(DecisionLogOptions::default(), move |event| {
            if let Some(out) = &out {
                let line = format!("{event}\n");
                // One write per line; a log that cannot be written loses it, never the decision.
                let _ = out
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write_all(line.as_bytes());
            }
            if let Some(otlp) = &otlp {
                otlp.offer(event);
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(engine)
}

fn load_failure(bundle: Option<&Path>, e: &LoadError) -> String {
    let name = bundle.map_or("the default bundle".to_owned(), |d| {
        format!("bundle `{}`", d.display())
    });
    format!("cannot load {name} ({}):\n{e}", e.kind())
}

fn check_one(engine: &Engine, request: Option<&Path>) -> Result<u8, String> {
    answer(
        engine
            .read_request(&read_request(request)?)
            .and_then(|r| engine.authorize(&r)),
        |decision| {
            say!("{}", decision.to_json())?;
            Ok(decision.allowed())
        },
    )
}

fn explain(engine: &Engine, request: Option<&Path>, json: bool) -> Result<u8, String> {
    answer(
        engine
            .read_request(&read_request(request)?)
            .and_then(|r| engine.explain(&r)),
        |explanation| {
            match json {
                true => say!("{}", explanation.to_json())?,
                false => say_part!("{}", explanation.to_text())?,
            }
            Ok(explanation.decision.allowed())
        },
    )
}

fn parse_dialect(name: &str) -> Result<Dialect, String> {
    Dialect::parse(name).ok_or_else(|| format!("`{name}` is not `postgres` or `sqlite`"))
}

fn query(
    engine: &Engine,
    request: Option<&Path>,
    dialect: Dialect,
    explain: bool,
) -> Result<u8, String> {
    let answer = engine.read_query(&read_request(request)?).and_then(|q| {
        let query = engine.query(&q)?;
        if let (true, arbiter::Query::Where(condition)) = (explain, &query) {
            for (effect, id, residual) in condition.residuals() {
                eprintln!("{effect} {id}: {residual}");
            }
        }
        query.to_sql(dialect)
    });
    match answer {
        Ok(sql) => {
            say!("{}", sql.to_json())?;
            Ok(0)
        }
        Err(e) => Ok(invalid(&e, e.to_json_value())),
    }
}

/// Prints an answer with `show` (which says whether it allows) and gives the exit code; a
/// request that could not be decided prints its error.
fn answer<T>(
    result: Result<T, RequestError>,
    show: impl FnOnce(&T) -> Result<bool, String>,
) -> Result<u8, String> {
    match result {
        Ok(answer) => Ok(if show(&answer)? { ALLOW } else { DENY }),
        Err(e) => Ok(invalid(&e, e.to_json_value())),
    }
}

/// Prints a failed call's error, `{"error": {...}}` on standard output and a line on standard
/// error, and gives the exit code for invalid input.
fn invalid(e: &dyn std::fmt::Display, json: serde_json::Value) -> u8 {
    // A failed write is reported on standard error below either way.
    let _ = say!("{}", serde_json::json!({ "error": json }));
    eprintln!("arbiter: {e}");
    INVALID
}

/// A request from `path`, or standard input when it is `None` or `-`.
fn read_request(path: Option<&Path>) -> Result<String, String> {
    match path {
        None => read_stdin(),
        Some(p) if p == Path::new("-") => read_stdin(),
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read `{}`: {e}", p.display()))
        }
    }
}

fn read_stdin() -> Result<String, String> {
    let mut text = String::new();
    io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    Ok(text)
}

/// One decision line per request line; a bad line gets an error line in its place.
fn check_batch(engine: &Engine, path: &Path) -> Result<u8, String> {
    let input: Box<dyn Read> = if path == Path::new("-") {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?)
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let mut any_bad = false;
    for (n, line) in BufReader::new(input).lines().enumerate() {
        let line_number = n + 1;
        let answer = match line {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => engine.authorize_json(&line).map_err(|e| {
                let mut error = e.to_json_value();
                error["line"] = line_number.into();
                error
            }),
            Err(e) => Err(serde_json::json!({
                "kind": "malformed_request",
                "code": 200,
                "message": format!("cannot read line: {e}"),
                "line": line_number,
            })),
        };
        let written = match answer {
            Ok(decision) => writeln!(out, "{decision}"),
            Err(error) => {
                any_bad = true;
                writeln!(out, "{}", serde_json::json!({ "error": error }))
            }
        };
        written.map_err(|e| format!("cannot write output: {e}"))?;
    }
    out.flush()
        .map_err(|e| format!("cannot write output: {e}"))?;
    Ok(if any_bad { INVALID } else { ALLOW })
}

fn validate(bundle: Option<&Path>) -> Result<u8, String> {
    let engine = load(bundle, None)?;
    let info = engine.info();
    let validated = match (info.has_schema, info.validate_policies) {
        (false, _) => "no schema",
        (true, true) => "policies validated against the schema",
        (true, false) => "schema present, policy validation off",
    };
    say!(
        "ok: bundle `{}` {}: {} policies, {} templates, {} entities; {validated}",
        info.name.as_deref().unwrap_or("unnamed"),
        info.version.as_deref().unwrap_or("(no version)"),
        info.policies,
        info.templates,
        info.entities,
    )?;
    Ok(ALLOW)
}

/// The non-blank lines of a JSONL file of requests, with their 1-based line numbers.
fn request_lines(path: &Path) -> Result<Vec<(usize, String)>, String> {
    let file = File::open(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let mut lines = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        if !line.trim().is_empty() {
            lines.push((n + 1, line));
        }
    }
    Ok(lines)
}

fn diff(
    bundle: Option<&Path>,
    against: &Path,
    requests: &Path,
    now: Option<i64>,
) -> Result<u8, String> {
    let (engine, other) = (load(bundle, now)?, load(Some(against), now)?);
    let lines = request_lines(requests)?;
    let mut changed = 0usize;
    let mut out = BufWriter::new(io::stdout().lock());
    for (number, line) in &lines {
        let (a, b) = (
            engine.read_request(line).and_then(|r| engine.authorize(&r)),
            other.read_request(line).and_then(|r| other.authorize(&r)),
        );
        let outcome = |r: &Result<arbiter::Decision, RequestError>| -> Result<bool, &str> {
            r.as_ref().map(|d| d.allowed()).map_err(|e| e.kind())
        };
        if outcome(&a) == outcome(&b) {
            continue;
        }
        changed += 1;
        let answer = |r: Result<arbiter::Decision, RequestError>| match r {
            Ok(d) => serde_json::to_value(d).unwrap_or_default(),
            Err(e) => serde_json::json!({ "error": e.to_json_value() }),
        };
        let request = serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| serde_json::Value::String(line.clone()));
        let record = serde_json::json!({"line": number, "request": request, "bundle": answer(a), "against": answer(b)});
        writeln!(out, "{record}").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    eprintln!("{} requests, {changed} changed", lines.len());
    Ok(if changed == 0 { ALLOW } else { DENY })
}

fn metrics(bundle: Option<&Path>, requests: Option<&Path>, json: bool) -> Result<u8, String> {
    let snapshot = match requests {
        Some(path) => {
            let engine = load(bundle, None)?;
            for (_, line) in request_lines(path)? {
                // A bad request is counted by kind, like any other.
                let _ = engine.authorize_json(&line);
            }
            engine.metrics()
        }
        None => {
            let suite = test_suite(bundle)?;
            suite.run();
            suite.engine().metrics()
        }
    };
    match json {
        true => say!("{}", snapshot.to_json())?,
        false => say_part!("{}", snapshot.to_prometheus())?,
    }
    Ok(ALLOW)
}

fn test_suite(bundle: Option<&Path>) -> Result<TestSuite, String> {
    match bundle {
        Some(dir) => TestSuite::from_bundle_dir(dir),
        None => TestSuite::gitlab_default(),
    }
    .map_err(|e| load_failure(bundle, &e))
}

fn test(bundle: Option<&Path>) -> Result<u8, String> {
    let report = test_suite(bundle)?.run();
    for problem in &report.broken_files {
        say!("BROKEN {problem}")?;
    }
    for outcome in &report.outcomes {
        if let Some(failure) = &outcome.failure {
            say!("FAIL {}: {}: {failure}", outcome.file, outcome.name)?;
        }
    }
    say!("{} passed, {} failed", report.passed(), report.failed())?;
    Ok(if report.failed() == 0 { ALLOW } else { DENY })
}
