//! Cedar's own integration corpus (`../shared/conformance/cedar-integration-tests`: the
//! hand-written tests and the generated corpus, 62,546 requests) through
//! `Engine::decide_json`: decision, reason set and error-policy set must all agree.
//!
//! `ARBITER_CONFORMANCE_DIR` overrides where the corpus is read from. A missing corpus fails
//! the test; it never passes by skipping.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use arbiter::{BundleFile, Effect, Engine};
use serde::Deserialize;

use crate::support::DecideJson;

const EXPECTED_REQUESTS: usize = 62_546;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestFile {
    policies: String,
    entities: String,
    schema: String,
    should_validate: bool,
    requests: Vec<TestRequest>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct TestRequest {
    description: String,
    principal: serde_json::Value,
    action: serde_json::Value,
    resource: serde_json::Value,
    context: serde_json::Value,
    #[serde(default = "yes")]
    validate_request: bool,
    decision: String,
    reason: Vec<String>,
    errors: Vec<String>,
}

fn yes() -> bool {
    true
}

fn corpus_root() -> PathBuf {
    std::env::var_os("ARBITER_CONFORMANCE_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/conformance/cedar-integration-tests")
        },
        PathBuf::from,
    )
}

/// Every test JSON with the folder its paths are relative to.
fn test_files(root: &Path, unpacked: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut files = Vec::new();
    collect_json(&root.join("tests"), &mut |p| {
        files.push((p, root.to_path_buf()))
    });
    collect_json(&unpacked.join("corpus-tests"), &mut |p| {
        // The corpus folder holds `<hash>.json` tests beside `<hash>.entities.json` data.
        if !p.to_string_lossy().ends_with(".entities.json") {
            files.push((p, unpacked.to_path_buf()))
        }
    });
    files.sort();
    files
}

fn collect_json(dir: &Path, found: &mut dyn FnMut(PathBuf)) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_json(&path, found);
        } else if path.extension().is_some_and(|e| e == "json") {
            found(path);
        }
    }
}

fn read(base: &Path, relative: &str) -> String {
    std::fs::read_to_string(base.join(relative))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", base.join(relative).display()))
}

fn engine(
    test: &TestFile,
    base: &Path,
    validate_policies: bool,
    validate_requests: bool,
) -> Result<Engine, arbiter::LoadError> {
    Engine::from_files([
        BundleFile::new("policies.cedar", read(base, &test.policies)),
        BundleFile::new("schema.cedarschema", read(base, &test.schema)),
        BundleFile::new("entities.json", read(base, &test.entities)),
        BundleFile::new(
            "manifest.json",
            serde_json::json!({"validate_policies": validate_policies, "validate_requests": validate_requests}).to_string(),
        ),
    ])
}

/// Runs one test file; returns the number of requests checked, and pushes every disagreement.
fn run_file(path: &Path, base: &Path, failures: &Mutex<Vec<String>>) -> usize {
    let fail = |message: String| {
        failures
            .lock()
            .unwrap()
            .push(format!("{}: {message}", path.display()))
    };
    let test: TestFile = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));

    // Policies the corpus marks valid must pass strict validation at load. (The other way does
    // not hold: today's validator accepts a few policies that the one generating the corpus
    // rejected, and Cedar's own harness does not compare them either.)
    if test.should_validate {
        if let Err(e) = engine(&test, base, true, true) {
            fail(format!("expected the policies to validate: {e}"));
        }
    }
    let mut checked = 0;
    for validate_requests in [true, false] {
        let requests: Vec<&TestRequest> = test
            .requests
            .iter()
            .filter(|r| r.validate_request == validate_requests)
            .collect();
        if requests.is_empty() {
            continue;
        }
        let engine = match engine(&test, base, false, validate_requests) {
            Ok(engine) => engine,
            Err(e) => {
                fail(format!("bundle does not load: {e}"));
                continue;
            }
        };
        let mut singles = Vec::new();
        for request in &requests {
            checked += 1;
            let json = serde_json::json!({
                "principal": request.principal,
                "action": request.action,
                "resource": request.resource,
                "context": request.context,
            });
            let single = engine.decide_json(&json.to_string());
            singles.push(single.clone());
            let decision = match single {
                Ok(d) => d,
                Err(e) => {
                    fail(format!("{}: request failed: {e}", request.description));
                    continue;
                }
            };
            let expected_decision = match request.decision.as_str() {
                "allow" => Effect::Allow,
                _ => Effect::Deny,
            };
            let reasons: BTreeSet<&str> = decision.reasons.iter().map(String::as_str).collect();
            let errors: BTreeSet<&str> = decision
                .errors
                .iter()
                .filter_map(|e| e.policy.as_deref())
                .collect();
            let expected_reasons: BTreeSet<&str> =
                request.reason.iter().map(String::as_str).collect();
            let expected_errors: BTreeSet<&str> =
                request.errors.iter().map(String::as_str).collect();
            if decision.decision != expected_decision
                || reasons != expected_reasons
                || errors != expected_errors
            {
                fail(format!(
                    "{}: expected {} {expected_reasons:?} errors {expected_errors:?}, got {}",
                    request.description,
                    request.decision,
                    decision.to_json()
                ));
            }
        }
        agrees_as_a_batch(&engine, &requests, &singles, &fail);
    }
    checked
}

/// The requests of one engine as parts in one batch, twice over (so the batch meets contexts it
/// has read and requests it has decided, under the file's schema): each answer must be the one
/// its single call gave.
fn agrees_as_a_batch(
    engine: &Engine,
    requests: &[&TestRequest],
    singles: &[Result<arbiter::Decision, arbiter::RequestError>],
    fail: &dyn Fn(String),
) {
    fn pair(uid: &serde_json::Value) -> (&str, &str) {
        let uid = uid.get("__entity").unwrap_or(uid);
        (uid["type"].as_str().unwrap(), uid["id"].as_str().unwrap())
    }
    let contexts: Vec<String> = requests.iter().map(|r| r.context.to_string()).collect();
    let parts: Vec<arbiter::RequestParts<'_>> = requests
        .iter()
        .zip(&contexts)
        .map(|(r, context)| arbiter::RequestParts {
            principal: Some(pair(&r.principal)),
            action: pair(&r.action),
            resource: pair(&r.resource),
            context_json: Some(context),
            entities_json: None,
            token: None,
            request_id: None,
        })
        .collect();
    let batch: Vec<_> = parts.iter().chain(&parts).copied().collect();
    let answers = engine.authorize_parts_batch(&batch);
    for (n, answer) in answers.iter().enumerate() {
        let (request, single) = (requests[n % parts.len()], &singles[n % parts.len()]);
        let agree = match (single, answer) {
            (Ok(single), Ok(answer)) => single == answer,
            (Err(single), Err(answer)) => single.kind() == answer.kind(),
            _ => false,
        };
        if !agree {
            fail(format!(
                "{}: alone {single:?}, in a batch {answer:?}",
                request.description
            ));
        }
    }
}

#[test]
fn cedar_integration_corpus_agrees_on_every_request() {
    let root = corpus_root();
    let unpacked = tempfile::tempdir().expect("temporary directory");
    let archive = std::fs::File::open(root.join("corpus-tests.tar.gz")).unwrap_or_else(|e| {
        panic!(
            "the Cedar corpus must be present at {}: {e}",
            root.display()
        )
    });
    tar::Archive::new(flate2::read::GzDecoder::new(archive))
        .unpack(unpacked.path())
        .expect("corpus unpacks");

    let files = test_files(&root, unpacked.path());
    let next = AtomicUsize::new(0);
    let checked = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some((path, base)) = files.get(n) else {
                    break;
                };
                checked.fetch_add(run_file(path, base, &failures), Ordering::Relaxed);
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    let checked = checked.into_inner();
    println!(
        "{} test files, {checked} requests, {} disagreements",
        files.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} disagreements with Cedar, the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        checked, EXPECTED_REQUESTS,
        "every request of the corpus is checked"
    );
}
