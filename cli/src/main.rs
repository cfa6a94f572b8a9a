//! `arbiter`: decide requests, validate bundles and run their tests from the command line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use arbiter::bundle_tests::TestSuite;
use arbiter::{Engine, LoadError};
use clap::{Parser, Subcommand};

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
    /// Verify and mint tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check {
            bundle,
            request,
            requests,
            now,
        } => load(bundle.as_deref(), now).and_then(|engine| match requests {
            Some(path) => check_batch(&engine, &path),
            None => check_one(&engine, request.as_deref()),
        }),
        Command::Validate { bundle } => validate(bundle.as_deref()),
        Command::Test { bundle } => test(bundle.as_deref()),
        Command::Entities { bundle } => load(bundle.as_deref(), None).map(|engine| {
            println!("{}", engine.entities_json());
            ALLOW
        }),
        Command::Token(command) => token::run(command),
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

fn load_failure(bundle: Option<&Path>, e: &LoadError) -> String {
    let name = bundle.map_or("the default bundle".to_owned(), |d| {
        format!("bundle `{}`", d.display())
    });
    format!("cannot load {name} ({}):\n{e}", e.kind())
}

fn check_one(engine: &Engine, request: Option<&Path>) -> Result<u8, String> {
    let text = match request {
        None => read_stdin()?,
        Some(p) if p == Path::new("-") => read_stdin()?,
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read `{}`: {e}", p.display()))?
        }
    };
    match engine.authorize_json_decision(&text) {
        Ok(decision) => {
            println!("{}", decision.to_json());
            Ok(if decision.allowed() { ALLOW } else { DENY })
        }
        Err(e) => {
            println!("{}", serde_json::json!({ "error": e.to_json_value() }));
            eprintln!("arbiter: {e}");
            Ok(INVALID)
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
    println!(
        "ok: bundle `{}` {}: {} policies, {} templates, {} entities; {validated}",
        info.name.as_deref().unwrap_or("unnamed"),
        info.version.as_deref().unwrap_or("(no version)"),
        info.policies,
        info.templates,
        info.entities,
    );
    Ok(ALLOW)
}

fn test(bundle: Option<&Path>) -> Result<u8, String> {
    let suite = match bundle {
        Some(dir) => TestSuite::from_bundle_dir(dir),
        None => TestSuite::gitlab_default(),
    }
    .map_err(|e| load_failure(bundle, &e))?;
    let report = suite.run();
    for problem in &report.broken_files {
        println!("BROKEN {problem}");
    }
    for outcome in &report.outcomes {
        if let Some(failure) = &outcome.failure {
            println!("FAIL {}: {}: {failure}", outcome.file, outcome.name);
        }
    }
    println!("{} passed, {} failed", report.passed(), report.failed());
    Ok(if report.failed() == 0 { ALLOW } else { DENY })
}
