//! What the integration test modules share.

/// The typed decision of a request given as contract JSON: the JSON calls' reading, then
/// `authorize`.
pub(crate) trait DecideJson {
    fn decide_json(&self, request: &str) -> Result<arbiter::Decision, arbiter::RequestError>;
}

impl DecideJson for arbiter::Engine {
    fn decide_json(&self, request: &str) -> Result<arbiter::Decision, arbiter::RequestError> {
        self.authorize(&self.read_request(request)?)
    }
}
