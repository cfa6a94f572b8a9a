#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// Where a decision is made: the engine, and the evaluation it runs.
mod engine;
mod evaluation;
// What it decides against: bundles (policies, entities, signatures) and tokens.
mod bundle;
mod token;
// What crosses the API: requests, decisions, errors, strict JSON.
mod wire;
// What an operator sees: metrics, decision logs, shadow comparison.
mod operations;
// Which resources a principal may act on, as SQL.
mod query;
// What every language binding needs beside the engine.
pub mod ffi;

pub use bundle::bundle_tests;
pub use operations::decision_log;

pub use bundle::abilities::{Abilities, Ability};
pub use bundle::archive::{pack_archive, unpack_archive, write_bundle_dir, ARCHIVE_MEDIA_TYPE};
pub use bundle::http::{HttpError, HttpRequest};
pub use bundle::signing::{BundleSigner, SigningError, TrustedKeys, SIGNATURE_FILE};
pub use bundle::{read_bundle_dir, BundleFile, BundleInfo, Manifest};
pub use engine::limits::Limits;
pub use engine::{Engine, HttpAnswer};
pub use evaluation::explain::{Explanation, Outcome, PolicyExplanation};
pub use operations::decision_log::{DecisionLogOptions, InvalidOptions};
pub use operations::metrics::{
    ActionDecisions, BridgeResult, BundleMetrics, Latency, LatencyBucket, LatencyRecorder,
    MetricsSnapshot, SourceStatus,
};
pub use operations::shadow::{CandidateInfo, Disagreement, ShadowReport};
pub use query::{Condition, Dialect, Query, QueryError, QueryRequest, SqlQuery, SqlValue};
pub use token::macaroon::{Format as MacaroonFormat, Macaroon, MacaroonCaveat};
pub use token::mint::{MintError, Minter, SigningKey};
pub use token::{TokenError, TokenInfo, TokenReport};
pub use wire::authzen::{AuthzenAnswer, AuthzenError};
pub use wire::decision::{Decision, DecisionError, DecisionErrorKind, Effect};
pub use wire::error::{CallError, ErrorKind, LoadError, Problem, RequestError};
pub use wire::request::{Request, RequestParts};

/// Cedar types a typed [`Request`] is built from.
pub use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid};
