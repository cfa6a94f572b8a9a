//! Limits on what a request and a bundle may hold, checked before any parser sees them.
//!
//! Token limits (size, caveats, discharges) are set per bundle in `tokens.json`; these are set
//! per engine ([`crate::Engine::with_limits`], [`crate::Engine::from_files_with_limits`]).

use crate::bundle::BundleFile;
use crate::wire::error::{LoadError, Problem, RequestError};
use crate::wire::request::RequestParts;

/// Limits an engine enforces. The defaults suit a web request's authorization checks; raise
/// them for batch jobs that bring large entity sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request, in bytes: a request's JSON, or its context and entities JSON together
    /// when given as parts (default 1 MiB). A batch's elements are checked one by one.
    pub max_request_bytes: usize,
    /// Most entities one request may bring (default 1,000).
    pub max_request_entities: usize,
    /// Deepest nesting of arrays and objects in a request's JSON (default 32).
    pub max_json_depth: usize,
    /// Largest bundle, all its files together, in bytes (default 64 MiB).
    pub max_bundle_bytes: usize,
    /// Largest JSON batch of requests, in bytes, checked before the array is parsed (default
    /// 64 MiB); each request in it is still held to `max_request_bytes`.
    pub max_batch_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 1 << 20,
            max_request_entities: 1_000,
            max_json_depth: 32,
            max_bundle_bytes: 64 << 20,
            max_batch_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// Checks the size and nesting of request JSON (`what` names it in the error).
    pub(crate) fn check_json(&self, what: &str, json: &[&str]) -> Result<(), RequestError> {
        let bytes: usize = json.iter().map(|j| j.len()).sum();
        if bytes > self.max_request_bytes {
            return Err(RequestError::Malformed(format!(
                "the {what} is {bytes} bytes; the limit is {} (max_request_bytes)",
                self.max_request_bytes
            )));
        }
        if json
            .iter()
            .any(|j| nests_deeper_than(j.as_bytes(), self.max_json_depth))
        {
            return Err(RequestError::Malformed(format!(
                "the {what} nests JSON deeper than {} levels (max_json_depth)",
                self.max_json_depth
            )));
        }
        Ok(())
    }

    /// Checks a JSON batch's total size, before it is parsed.
    pub(crate) fn check_batch(&self, json: &str) -> Result<(), RequestError> {
        if json.len() > self.max_batch_bytes {
            return Err(RequestError::Malformed(format!(
                "the batch is {} bytes; the limit is {} (max_batch_bytes)",
                json.len(),
                self.max_batch_bytes
            )));
        }
        Ok(())
    }

    /// Checks the JSON of a request given as parts.
    pub(crate) fn check_parts(&self, parts: &RequestParts<'_>) -> Result<(), RequestError> {
        self.check_json(
            "request's context and entities JSON",
            &[
                parts.context_json.unwrap_or_default(),
                parts.entities_json.unwrap_or_default(),
            ],
        )
    }

    /// Checks how many entities a request brings.
    pub(crate) fn check_entities(&self, count: usize) -> Result<(), RequestError> {
        if count > self.max_request_entities {
            return Err(RequestError::Entities(format!(
                "the request brings {count} entities; the limit is {} (max_request_entities)",
                self.max_request_entities
            )));
        }
        Ok(())
    }

    /// Checks a bundle's total size before anything in it is parsed.
    pub(crate) fn check_bundle(&self, files: &[BundleFile]) -> Result<(), LoadError> {
        let bytes: usize = files.iter().map(|f| f.contents.len()).sum();
        if bytes > self.max_bundle_bytes {
            return Err(LoadError::Io(vec![Problem::in_file(
                ".",
                format!(
                    "the bundle's files hold {bytes} bytes; the limit is {} (max_bundle_bytes)",
                    self.max_bundle_bytes
                ),
            )]));
        }
        Ok(())
    }
}

/// Whether JSON text nests arrays and objects deeper than `max` (strings are skipped; the text
/// need not be valid JSON).
pub(crate) fn nests_deeper_than(json: &[u8], max: usize) -> bool {
    // JSON nests no deeper than it has brackets: counting them (a loop that vectorizes) settles
    // most requests without following strings.
    if json.iter().filter(|&&b| b == b'[' || b == b'{').count() <= max {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'[' | b'{') => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_arrays_and_objects_outside_strings() {
        assert!(!nests_deeper_than(br#"{"a": [1, {"b": 2}]}"#, 3));
        assert!(nests_deeper_than(br#"{"a": [1, {"b": 2}]}"#, 2));
        assert!(!nests_deeper_than(br#"{"a": "[[[[\"{{{{"}"#, 1));
    }
}
