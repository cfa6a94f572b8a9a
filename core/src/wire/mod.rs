//! What crosses the API: requests, decisions, errors (one table of kinds), the strict JSON
//! every reader reads alike, and AuthZEN's bodies.

pub(crate) mod authzen;
pub(crate) mod decision;
pub(crate) mod error;
pub(crate) mod json;
pub(crate) mod request;
