#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bundle;
pub mod bundle_tests;
mod context;
mod decision;
pub mod decision_log;
mod default_bundle;
mod engine;
mod entities;
mod error;
mod eval;
mod explain;
mod fault;
mod index;
mod json;
mod limits;
mod metrics;
mod policies;
mod request;
mod shadow;
mod shapes;
mod signing;
mod token;

pub use bundle::{read_bundle_dir, BundleFile, BundleInfo, Manifest};
pub use decision::{Decision, DecisionError, DecisionErrorKind, Effect};
pub use decision_log::{DecisionLogOptions, InvalidOptions};
pub use engine::Engine;
pub use error::{CallError, ErrorKind, LoadError, Problem, RequestError};
pub use explain::{Explanation, Outcome, PolicyExplanation};
pub use limits::Limits;
pub use metrics::{ActionDecisions, BundleMetrics, Latency, LatencyBucket, MetricsSnapshot};
pub use request::{Request, RequestParts};
pub use shadow::{CandidateInfo, Disagreement, ShadowReport};
pub use signing::{BundleSigner, SigningError, TrustedKeys, SIGNATURE_FILE};
pub use token::macaroon::{Format as MacaroonFormat, Macaroon, MacaroonCaveat};
pub use token::mint::{MintError, Minter, SigningKey};
pub use token::{TokenError, TokenInfo, TokenReport};

/// Cedar types a typed [`Request`] is built from.
pub use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid};
