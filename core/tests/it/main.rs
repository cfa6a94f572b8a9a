//! Core's integration tests, in one binary so that it links once: each module tests one part
//! of the public behaviour.

mod conformance;
mod decision_log;
mod engine;
mod equivalence;
mod fail_closed;
mod fast_eval;
mod gitlab_tokens;
mod spec;
mod token_properties;
mod tokens;

/// The typed decision of a request given as contract JSON: the JSON calls' reading, then
/// `authorize`.
trait DecideJson {
    fn decide_json(&self, request: &str) -> Result<arbiter::Decision, arbiter::RequestError>;
}

impl DecideJson for arbiter::Engine {
    fn decide_json(&self, request: &str) -> Result<arbiter::Decision, arbiter::RequestError> {
        self.authorize(&self.read_request(request)?)
    }
}
