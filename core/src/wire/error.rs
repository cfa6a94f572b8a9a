//! Errors of the two operations a host performs: loading a bundle and asking for a decision.
//!
//! Every error has one [`ErrorKind`]: a stable numeric code and a short snake_case kind that
//! every language binding exposes unchanged, and a name each binding derives its own error
//! from. Codes come in blocks: 1-3 a C argument, 1xx loading, 2xx requests, 9xx internal.

use std::fmt;

/// Every kind of failed call, in one table. Each binding names its error after the kind:
/// `ARBITER_RESULT_POLICY_PARSE` in C, `ErrPolicyParse` in Go, `Arbiter::PolicyParseError` in
/// Ruby, `arbiter.PolicyParseError` in Python; each binding's tests walk [`ErrorKind::ALL`], so a
/// kind added here and missing there fails them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A required pointer argument was NULL (C).
    NullArgument,
    /// A string argument is not valid UTF-8 (C).
    InvalidUtf8,
    /// An argument is out of its range (a decision log's sample rate, ...).
    InvalidArgument,
    /// A bundle file or directory could not be read.
    Io,
    /// `manifest.json` is invalid.
    Manifest,
    /// A policy does not parse, or two policies share an id.
    PolicyParse,
    /// Policies do not validate against the schema.
    PolicyValidation,
    /// The schema is invalid.
    Schema,
    /// `entities.json` is invalid.
    Entities,
    /// `links.json` is invalid.
    Links,
    /// `tokens.json` is invalid, or a key it names is missing or unusable.
    Tokens,
    /// The bundle's signature is missing, by an untrusted key, older than the bundle served, or
    /// does not match its files.
    Signature,
    /// `sql/mapping.json` is invalid.
    SqlMapping,
    /// `abilities.json` is invalid.
    Abilities,
    /// `http.json` is invalid.
    Http,
    /// The request is not valid JSON, lacks a field, or names an entity badly.
    MalformedRequest,
    /// The request does not conform to the bundle's schema.
    InvalidRequest,
    /// The context does not conform to the schema.
    InvalidContext,
    /// A per-request entity is invalid.
    InvalidEntities,
    /// A query the bundle's SQL mapping cannot express exactly.
    Untranslatable,
    /// Arbiter failed inside (a caught panic): nothing was decided or changed.
    Internal,
}

/// The table behind [`ErrorKind`]: kind, code, snake_case kind, name, one-line doc, in
/// declaration order.
const ERROR_KINDS: [(ErrorKind, u32, &str, &str, &str); 21] = [
    (ErrorKind::NullArgument, 1, "null_argument", "NullArgument", "a required pointer argument was NULL"),
    (ErrorKind::InvalidUtf8, 2, "invalid_utf8", "InvalidUtf8", "a string argument is not valid UTF-8"),
    (ErrorKind::InvalidArgument, 3, "invalid_argument", "InvalidArgument", "an argument is out of its range"),
    (ErrorKind::Io, 100, "io", "Io", "a bundle file or directory could not be read"),
    (ErrorKind::Manifest, 101, "manifest", "Manifest", "`manifest.json` is invalid"),
    (ErrorKind::PolicyParse, 102, "policy_parse", "PolicyParse", "a policy does not parse, or two share an id"),
    (ErrorKind::PolicyValidation, 103, "policy_validation", "PolicyValidation", "policies do not validate against the schema"),
    (ErrorKind::Schema, 104, "schema", "Schema", "the schema is invalid"),
    (ErrorKind::Entities, 105, "entities", "Entities", "`entities.json` is invalid"),
    (ErrorKind::Links, 106, "links", "Links", "`links.json` is invalid"),
    (ErrorKind::Tokens, 107, "tokens", "Tokens", "`tokens.json` is invalid or names a key that is missing or unusable"),
    (ErrorKind::Signature, 108, "signature", "Signature", "the bundle's signature is missing, untrusted, older than the bundle served, or does not match its files"),
    (ErrorKind::SqlMapping, 109, "sql_mapping", "SqlMapping", "`sql/mapping.json` is invalid"),
    (ErrorKind::Abilities, 110, "abilities", "Abilities", "`abilities.json` is invalid"),
    (ErrorKind::Http, 111, "http", "Http", "`http.json` is invalid"),
    (ErrorKind::MalformedRequest, 200, "malformed_request", "MalformedRequest", "the request is not valid JSON, lacks a field, or names an entity badly"),
    (ErrorKind::InvalidRequest, 201, "invalid_request", "InvalidRequest", "the request does not conform to the bundle's schema"),
    (ErrorKind::InvalidContext, 202, "invalid_context", "InvalidContext", "the context does not conform to the schema"),
    (ErrorKind::InvalidEntities, 203, "invalid_entities", "InvalidEntities", "a per-request entity is invalid"),
    (ErrorKind::Untranslatable, 204, "untranslatable", "Untranslatable", "a query the bundle's SQL mapping cannot express exactly"),
    (ErrorKind::Internal, 900, "internal", "Internal", "Arbiter failed inside (a caught panic): nothing was decided or changed"),
];

impl ErrorKind {
    /// Every kind, in code order.
    pub const ALL: [Self; 21] = [
        Self::NullArgument,
        Self::InvalidUtf8,
        Self::InvalidArgument,
        Self::Io,
        Self::Manifest,
        Self::PolicyParse,
        Self::PolicyValidation,
        Self::Schema,
        Self::Entities,
        Self::Links,
        Self::Tokens,
        Self::Signature,
        Self::SqlMapping,
        Self::Abilities,
        Self::Http,
        Self::MalformedRequest,
        Self::InvalidRequest,
        Self::InvalidContext,
        Self::InvalidEntities,
        Self::Untranslatable,
        Self::Internal,
    ];

    fn entry(self) -> &'static (ErrorKind, u32, &'static str, &'static str, &'static str) {
        &ERROR_KINDS[self as usize]
    }

    /// The stable numeric code (the C result code).
    pub fn code(self) -> u32 {
        self.entry().1
    }

    /// The stable snake_case kind, e.g. `"policy_parse"`.
    pub fn as_str(self) -> &'static str {
        self.entry().2
    }

    /// The name bindings derive theirs from, e.g. `"PolicyParse"` (`ErrPolicyParse`,
    /// `PolicyParseError`).
    pub fn name(self) -> &'static str {
        self.entry().3
    }

    /// What it means, on one line.
    pub fn doc(self) -> &'static str {
        self.entry().4
    }

    /// The kind with this code, if any.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// `sql/mapping.json` does not parse or maps something wrongly.
    #[error("{}", join(.0))]
    SqlMapping(Vec<Problem>),
    /// `abilities.json` does not parse or names an action the schema lacks.
    #[error("{}", join(.0))]
    Abilities(Vec<Problem>),
    /// `http.json` does not parse or maps a route wrongly.
    #[error("{}", join(.0))]
    Http(Vec<Problem>),
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
    /// Its kind in the error table.
    pub fn error_kind(&self) -> ErrorKind {
        match self {
            Self::Io(_) => ErrorKind::Io,
            Self::Manifest(_) => ErrorKind::Manifest,
            Self::PolicyParse(_) => ErrorKind::PolicyParse,
            Self::PolicyValidation(_) => ErrorKind::PolicyValidation,
            Self::Schema(_) => ErrorKind::Schema,
            Self::Entities(_) => ErrorKind::Entities,
            Self::Links(_) => ErrorKind::Links,
            Self::Tokens(_) => ErrorKind::Tokens,
            Self::Signature(_) => ErrorKind::Signature,
            Self::SqlMapping(_) => ErrorKind::SqlMapping,
            Self::Abilities(_) => ErrorKind::Abilities,
            Self::Http(_) => ErrorKind::Http,
            Self::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Stable numeric code.
    pub fn code(&self) -> u32 {
        self.error_kind().code()
    }

    /// Stable snake_case kind.
    pub fn kind(&self) -> &'static str {
        self.error_kind().as_str()
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
            | Self::Signature(p)
            | Self::SqlMapping(p)
            | Self::Abilities(p)
            | Self::Http(p) => p,
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
    /// Every kind a request error has, in code order (`index` gives a position in it).
    pub const KINDS: [ErrorKind; 4] = [
        ErrorKind::MalformedRequest,
        ErrorKind::InvalidRequest,
        ErrorKind::InvalidContext,
        ErrorKind::InvalidEntities,
    ];

    /// Its kind in the error table.
    pub fn error_kind(&self) -> ErrorKind {
        Self::KINDS[self.index()]
    }

    /// Stable numeric code.
    pub fn code(&self) -> u32 {
        self.error_kind().code()
    }

    /// Stable snake_case kind.
    pub fn kind(&self) -> &'static str {
        self.error_kind().as_str()
    }

    pub(crate) fn index(&self) -> usize {
        match self {
            Self::Malformed(_) => 0,
            Self::Invalid(_) => 1,
            Self::Context(_) => 2,
            Self::Entities(_) => 3,
        }
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

    /// Cedar's refusal of a request against the schema: `invalid_context` for the context,
    /// `invalid_request` otherwise.
    pub(crate) fn validation(e: cedar_policy::RequestValidationError) -> Self {
        use cedar_policy::RequestValidationError as E;
        match e {
            E::InvalidContext(_) | E::TypeOfContext(_) => Self::context(&e),
            e => Self::invalid(&e),
        }
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
    fn the_error_table_is_in_declaration_order_with_unique_codes_kinds_and_names() {
        for (n, kind) in ErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, n);
            assert_eq!(ERROR_KINDS[n].0, kind);
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
            // The name is the kind in CamelCase: what every binding's names are built from.
            let camel: String = kind
                .as_str()
                .split('_')
                .map(|w| w[..1].to_uppercase() + &w[1..])
                .collect();
            assert_eq!(kind.name(), camel);
            assert!(!kind.doc().is_empty());
        }
        let mut codes: Vec<u32> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
        codes.dedup();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
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

/// A failed call as every binding reports it: its kind (code and snake_case kind) and a one-line
/// message. The C ABI, the Python package and the Ruby gem each turn it into their own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// Its kind in the error table.
    pub kind: ErrorKind,
    /// What went wrong, on one line.
    pub message: String,
}

impl CallError {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A request a binding could not read (`malformed_request`, 200).
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::MalformedRequest, message)
    }

    /// A failure inside Arbiter, such as a caught panic (`internal`, 900): nothing was decided.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The contract's result code.
    pub fn code(&self) -> u32 {
        self.kind.code()
    }
}

impl From<LoadError> for CallError {
    fn from(e: LoadError) -> Self {
        Self::new(e.error_kind(), e.to_string().replace('\n', "; "))
    }
}

impl From<crate::query::QueryError> for CallError {
    fn from(e: crate::query::QueryError) -> Self {
        Self::new(e.error_kind(), e.message())
    }
}

impl From<RequestError> for CallError {
    fn from(e: RequestError) -> Self {
        Self::new(e.error_kind(), e.message())
    }
}
