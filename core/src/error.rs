//! Errors of the two operations a host performs: loading a bundle and asking for a decision.
//!
//! Every error has a stable numeric `code()` and a short snake_case `kind()` that every language
//! binding exposes unchanged. Codes come in blocks: 1xx loading, 2xx requests, 9xx internal.

use std::fmt;

/// Where in a bundle a problem sits: a file, and a line and column when they are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the file relative to the bundle root, e.g. `policies/roles.cedar`.
    pub file: String,
    /// 1-based line, when the problem points into the file.
    pub line: Option<usize>,
    /// 1-based column, when the problem points into the file.
    pub column: Option<usize>,
    /// One-line description.
    pub message: String,
}

impl Problem {
    pub(crate) fn in_file(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// A problem at byte `offset` of `source`, the text of `file`.
    pub(crate) fn at_offset(
        file: &str,
        source: &str,
        offset: usize,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = line_and_column(source, offset);
        Self {
            file: file.to_owned(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }

    /// A problem described by a miette diagnostic (Cedar's parse, schema and validation errors),
    /// located at its first label when it has one.
    pub(crate) fn from_diagnostic(
        file: &str,
        source: &str,
        diagnostic: &dyn miette::Diagnostic,
    ) -> Self {
        let message = one_line(&diagnostic_message(diagnostic));
        match diagnostic.labels().and_then(|mut labels| labels.next()) {
            Some(label) => Self::at_offset(file, source, label.offset(), message),
            None => Self::in_file(file, message),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// A diagnostic's message, its causes and its help, the way Cedar's own CLI reports them.
fn diagnostic_message(diagnostic: &dyn miette::Diagnostic) -> String {
    let mut message = diagnostic.to_string();
    let mut cause = diagnostic.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = e.source();
    }
    if let Some(help) = diagnostic.help() {
        message.push_str(" (");
        message.push_str(&help.to_string());
        message.push(')');
    }
    message
}

/// Collapses whitespace runs (including newlines) so every message fits on one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Why a bundle did not load. The engine that tried keeps serving what it had.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("{}", join(.0))]
    Io(Vec<Problem>),
    /// `manifest.json` is not valid.
    #[error("{}", join(.0))]
    Manifest(Vec<Problem>),
    /// A policy file does not parse, or two policies share an id.
    #[error("{}", join(.0))]
    PolicyParse(Vec<Problem>),
    /// Policies do not validate against the schema.
    #[error("{}", join(.0))]
    PolicyValidation(Vec<Problem>),
    /// The schema does not parse or is inconsistent.
    #[error("{}", join(.0))]
    Schema(Vec<Problem>),
    /// `entities.json` does not parse or does not conform to the schema.
    #[error("{}", join(.0))]
    Entities(Vec<Problem>),
    /// `links.json` does not parse or links a template wrongly.
    #[error("{}", join(.0))]
    Links(Vec<Problem>),
    /// `tokens.json` does not parse, or a key it names is missing or unusable.
    #[error("{}", join(.0))]
    Tokens(Vec<Problem>),
    /// `signature.json` is missing, invalid, by an untrusted key, or the files changed since
    /// signing (only for an engine that trusts signing keys).
    #[error("{}", join(.0))]
    Signature(Vec<Problem>),
    /// Arbiter failed inside while loading (a caught panic).
    #[error("{0}")]
    Internal(String),
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl LoadError {
    /// Stable numeric code.
    pub fn code(&self) -> u32 {
        match self {
            Self::Io(_) => 100,
            Self::Manifest(_) => 101,
            Self::PolicyParse(_) => 102,
            Self::PolicyValidation(_) => 103,
            Self::Schema(_) => 104,
            Self::Entities(_) => 105,
            Self::Links(_) => 106,
            Self::Tokens(_) => 107,
            Self::Signature(_) => 108,
            Self::Internal(_) => 900,
        }
    }

    /// Stable snake_case kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io(_) => "io",
            Self::Manifest(_) => "manifest",
            Self::PolicyParse(_) => "policy_parse",
            Self::PolicyValidation(_) => "policy_validation",
            Self::Schema(_) => "schema",
            Self::Entities(_) => "entities",
            Self::Links(_) => "links",
            Self::Tokens(_) => "tokens",
            Self::Signature(_) => "signature",
            Self::Internal(_) => "internal",
        }
    }

    /// Every problem found, each naming its file (and line when known).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Io(p)
            | Self::Manifest(p)
            | Self::PolicyParse(p)
            | Self::PolicyValidation(p)
            | Self::Schema(p)
            | Self::Entities(p)
            | Self::Links(p)
            | Self::Tokens(p)
            | Self::Signature(p) => p,
            Self::Internal(_) => &[],
        }
    }
}

/// Why a request could not be decided at all. (A request that can be decided but carries a bad
/// token is not an error: it is a deny with the reason attached.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not valid JSON, a missing or unknown field, or a malformed entity reference.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The request does not conform to the bundle's schema (unknown entity type or action,
    /// principal or resource type the action does not apply to, context of the wrong shape).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The context is not a record of Cedar values or does not match the schema.
    #[error("invalid context: {0}")]
    Context(String),
    /// A per-request entity is malformed or does not conform to the schema.
    #[error("invalid entities: {0}")]
    Entities(String),
}

impl RequestError {
    /// Stable numeric code.
    pub fn code(&self) -> u32 {
        match self {
            Self::Malformed(_) => 200,
            Self::Invalid(_) => 201,
            Self::Context(_) => 202,
            Self::Entities(_) => 203,
        }
    }

    /// Stable snake_case kind.
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.index()]
    }

    /// Every kind, in code order (`code() - 200` indexes it).
    pub const KINDS: [&'static str; 4] = [
        "malformed_request",
        "invalid_request",
        "invalid_context",
        "invalid_entities",
    ];

    pub(crate) fn index(&self) -> usize {
        (self.code() - 200) as usize
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> &str {
        match self {
            Self::Malformed(m) | Self::Invalid(m) | Self::Context(m) | Self::Entities(m) => m,
        }
    }

    /// The error as the JSON object every binding reports: `{"kind", "code", "message"}`.
    pub fn to_json_value(&self) -> serde_json::Value {
        serde_json::json!({"kind": self.kind(), "code": self.code(), "message": self.message()})
    }

    pub(crate) fn invalid(err: &dyn miette::Diagnostic) -> Self {
        Self::Invalid(one_line(&diagnostic_message(err)))
    }

    pub(crate) fn context(err: &dyn miette::Diagnostic) -> Self {
        Self::Context(one_line(&diagnostic_message(err)))
    }

    pub(crate) fn entities(err: &dyn miette::Diagnostic) -> Self {
        Self::Entities(one_line(&diagnostic_message(err)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_columns() {
        let src = "ab\ncdé\nf";
        assert_eq!(line_and_column(src, 0), (1, 1));
        assert_eq!(line_and_column(src, 3), (2, 1));
        assert_eq!(line_and_column(src, 5), (2, 3));
        // inside the two-byte é: snapped back to its start
        assert_eq!(line_and_column(src, 6), (2, 3));
        assert_eq!(line_and_column(src, 999), (3, 2));
    }

    #[test]
    fn problems_print_file_line_and_column() {
        let p = Problem::at_offset("a.cedar", "x\ny", 2, "bad token");
        assert_eq!(p.to_string(), "a.cedar:2:1: bad token");
        assert_eq!(
            Problem::in_file("m.json", "oops").to_string(),
            "m.json: oops"
        );
    }
}

/// A failed call as every binding reports it: the contract's code and kind, and a one-line
/// message. The C ABI, the Python package and the Ruby gem each turn it into their own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The contract's result code (100-108 loading, 200-203 requests, 900 internal).
    pub code: u32,
    /// The contract's error kind, e.g. `policy_parse` or `invalid_context`.
    pub kind: &'static str,
    /// What went wrong, on one line.
    pub message: String,
}

impl CallError {
    /// An error with the given code and kind.
    pub fn new(code: u32, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            kind,
            message: message.into(),
        }
    }

    /// A request a binding could not read (`malformed_request`, 200).
    pub fn malformed(message: impl Into<String>) -> Self {
        RequestError::Malformed(message.into()).into()
    }

    /// A failure inside Arbiter, such as a caught panic (`internal`, 900): nothing was decided.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(900, "internal", message)
    }
}

impl From<LoadError> for CallError {
    fn from(e: LoadError) -> Self {
        Self::new(e.code(), e.kind(), e.to_string().replace('\n', "; "))
    }
}

impl From<RequestError> for CallError {
    fn from(e: RequestError) -> Self {
        Self::new(e.code(), e.kind(), e.message())
    }
}
