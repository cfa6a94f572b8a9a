//! What crosses the API: requests, decisions, errors (one table of kinds), and the strict JSON
//! every reader reads alike.

pub(crate) mod decision;
pub(crate) mod error;
pub(crate) mod json;
pub(crate) mod request;
