//! How a request is evaluated: the policy index that picks the policies a request can reach,
//! the fast condition evaluator beside Cedar's, the schema shapes that vouch for requests and
//! entities, the fast context reader, and explanations.

pub(crate) mod context;
pub(crate) mod eval;
pub(crate) mod explain;
pub(crate) mod index;
pub(crate) mod shapes;
