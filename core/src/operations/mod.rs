//! What an operator sees of an engine: metrics, decision logs and shadow comparison with a
//! candidate bundle.

pub mod decision_log;
pub(crate) mod metrics;
pub(crate) mod shadow;
