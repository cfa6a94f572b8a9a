//! Core's integration tests, in one binary so that it links once: each module tests one part
//! of the public behaviour.

mod conformance;
mod decision_log;
mod docs_bundle;
mod engine;
mod equivalence;
mod fail_closed;
mod fast_eval;
mod gitlab_tokens;
mod query;
mod query_properties;
mod spec;
mod support;
mod token_properties;
mod tokens;
