//! Decision tests that travel with a bundle (`tests/*.json`), run by `arbiter test`.
//!
//! A test file:
//! ```json
//! {"description": "what this file covers",
//!  "cases": [
//!    {"name": "developer pushes to an unprotected branch",
//!     "request": {"principal": ..., "action": ..., "resource": ..., "context": ...},
//!     "decision": "allow", "reasons": ["role-developer"]},
//!    {"name": "unknown action is rejected", "request": {...}, "error": "invalid_request"}]}
//! ```
//! `decision` (with optional `reasons` and `errors`, each compared as a set; `errors` entries
//! are `{"kind", "policy"}`) or `error` (the kind of a request that cannot be decided) is
//! required.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::bundle::{is_test_file, parse_json, read_dir_files, BundleFile};
use crate::engine::Engine;
use crate::wire::decision::{DecisionErrorKind, Effect};
use crate::wire::error::{LoadError, Problem};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    #[allow(dead_code)] // documentation for readers of the file
    description: Option<String>,
    cases: Vec<TestCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    request: serde_json::Value,
    #[serde(default)]
    decision: Option<Effect>,
    #[serde(default)]
    reasons: Option<BTreeSet<String>>,
    #[serde(default)]
    errors: Option<BTreeSet<ExpectedError>>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[serde(deny_unknown_fields)]
struct ExpectedError {
    kind: DecisionErrorKind,
    #[serde(default)]
    policy: Option<String>,
}

/// A bundle's engine together with its decision tests.
pub struct TestSuite {
    engine: Engine,
    files: Vec<BundleFile>,
}

/// The outcome of one test case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// The test file, relative to the bundle.
    pub file: String,
    /// The case's name.
    pub name: String,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
}

/// The outcomes of a suite, plus test files that could not be read at all.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    /// One per case, in file and case order.
    pub outcomes: Vec<TestOutcome>,
    /// Test files that are not valid test JSON; each counts as one failure.
    pub broken_files: Vec<Problem>,
}

impl TestReport {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.failure.is_none()).count()
    }

    /// Cases that failed, plus broken test files.
    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.passed() + self.broken_files.len()
    }
}

impl TestSuite {
    /// The bundle in `dir` and its `tests/*.json`.
    pub fn from_bundle_dir(dir: impl AsRef<Path>) -> Result<Self, LoadError> {
        let dir = dir.as_ref();
        let mut files = read_dir_files(dir, &is_test_file)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Self {
            engine: Engine::from_bundle_dir(dir)?,
            files,
        })
    }

    /// The embedded default GitLab bundle and its tests.
    pub fn gitlab_default() -> Result<Self, LoadError> {
        Ok(Self {
            engine: Engine::gitlab_default()?,
            files: crate::bundle::default_bundle::test_files(),
        })
    }

    /// The engine the cases run against (its metrics count them).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs every case.
    pub fn run(&self) -> TestReport {
        let mut report = TestReport::default();
        for file in &self.files {
            match parse_json::<TestFile>(file) {
                Ok(tests) => report
                    .outcomes
                    .extend(tests.cases.iter().map(|case| TestOutcome {
                        file: file.path.clone(),
                        name: case.name.clone(),
                        failure: self.check(case).err(),
                    })),
                Err(problems) => report.broken_files.extend(problems),
            }
        }
        report
    }

    fn check(&self, case: &TestCase) -> Result<(), String> {
        let result = self.engine.decide_json(&case.request.to_string(), None);
        match (&case.decision, &case.error, result) {
            (Some(_), Some(_), _) | (None, None, _) => {
                Err("a case needs exactly one of `decision` and `error`".into())
            }
            (None, Some(kind), Err(e)) if e.kind() == kind => Ok(()),
            (None, Some(kind), Err(e)) => {
                Err(format!("expected a `{kind}` error, got {e} ({})", e.kind()))
            }
            (None, Some(kind), Ok(d)) => {
                Err(format!("expected a `{kind}` error, got {}", d.to_json()))
            }
            (Some(_), None, Err(e)) => Err(format!("request failed: {e}")),
            (Some(expected), None, Ok(d)) => {
                let reasons: BTreeSet<String> = d.reasons.iter().cloned().collect();
                let errors: BTreeSet<ExpectedError> = d
                    .errors
                    .iter()
                    .map(|e| ExpectedError {
                        kind: e.kind,
                        policy: e.policy.clone(),
                    })
                    .collect();
                let ok = d.decision == *expected
                    && case.reasons.as_ref().is_none_or(|r| *r == reasons)
                    && case.errors.as_ref().is_none_or(|e| *e == errors);
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "expected {}{}{}, got {}",
                        serde_json::to_string(expected).unwrap_or_default(),
                        case.reasons
                            .as_ref()
                            .map(|r| format!(" with reasons {r:?}"))
                            .unwrap_or_default(),
                        case.errors
                            .as_ref()
                            .map(|e| format!(" with errors {e:?}"))
                            .unwrap_or_default(),
                        d.to_json()
                    ))
                }
            }
        }
    }
}
