//! Batches: many requests decided against one bundle version, repeated work shared, every
//! element answered in place.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::operations::decision_log::Held;
use crate::wire::decision::Decision;
use crate::wire::error::{CallError, RequestError};
use crate::wire::request::{ContextCache, Request, RequestParts};

use super::decide::decide_uncounted;
use super::Engine;

impl Engine {
    /// Decides many requests against the same bundle version, one result per request.
    pub fn authorize_batch(&self, requests: &[Request]) -> Vec<Result<Decision, RequestError>> {
        let bundle = self.bundle.load_full();
        let now = self.now();
        let reader = bundle.reader(&self.limits);
        requests
            .iter()
            .map(|r| {
                self.guarded(|start| {
                    r.check_entities(&reader)?;
                    self.decide(&bundle, r, now, start, None)
                })
            })
            .collect()
    }

    /// Decides many requests given as borrowed parts against the same bundle version, one
    /// result per request (the batch call of the language bindings). A context given twice is
    /// read once, and a request given twice (without entities or a token of its own, so the
    /// same text always gets the same decision) is decided once; each still counts, is logged
    /// with its own request id, and is compared with a candidate bundle on its own.
    pub fn authorize_parts_batch(
        &self,
        requests: &[RequestParts<'_>],
    ) -> Vec<Result<Decision, RequestError>> {
        self.decide_batch(requests.iter().map(Ok), None)
    }

    /// Decides a batch a binding read element by element (see [`crate::ffi::authorize_read_batch`]).
    pub(crate) fn decide_read_batch(
        &self,
        items: &[Result<RequestParts<'_>, CallError>],
        held: Held<'_>,
    ) -> Vec<Result<Decision, CallError>> {
        self.decide_batch(
            items.iter().map(|item| item.as_ref().map_err(Clone::clone)),
            held,
        )
    }

    /// The batch calls' loop: decides each request given, keeps each error given in place.
    fn decide_batch<'a, 'p: 'a, E: From<RequestError>>(
        &self,
        items: impl ExactSizeIterator<Item = Result<&'a RequestParts<'p>, E>>,
        mut held: Held<'_>,
    ) -> Vec<Result<Decision, E>> {
        let bundle = self.bundle.load_full();
        let now = self.now();
        let reader = bundle.reader(&self.limits);
        let mut contexts = ContextCache::default();
        // Requests decided so far, by what decides them, with where their answer is.
        let mut decided: HashMap<SameDecision<'_, '_>, usize, foldhash::quality::RandomState> =
            HashMap::default();
        decided.reserve(items.len());
        let mut answers: Vec<Result<Decision, E>> = Vec::with_capacity(items.len());
        for item in items {
            let parts = match item {
                Ok(parts) => parts,
                Err(failure) => {
                    answers.push(Err(failure));
                    continue;
                }
            };
            let answer = self.guarded(|start| {
                self.limits.check_parts(parts)?;
                let request = Request::from_parts(parts, &reader, Some(&mut contexts))?;
                let same = SameDecision::of(parts);
                self.decide_with(
                    &bundle,
                    &request,
                    now,
                    start,
                    held.as_deref_mut(),
                    |trace| {
                        let earlier = same.as_ref().and_then(|same| decided.get(same));
                        if let Some(Ok(decision)) = earlier.map(|&n| &answers[n]) {
                            return Ok(decision.clone());
                        }
                        let result = decide_uncounted(&bundle, &request, now, trace);
                        if let (Some(same), Ok(_)) = (same, &result) {
                            decided.insert(same, answers.len());
                        }
                        result
                    },
                )
            });
            answers.push(answer.map_err(E::from));
        }
        answers
    }

    /// Decides a JSON array of requests against the same bundle version. The answer is an array
    /// of the same length holding, in order, each decision or `{"error": {"kind", "code",
    /// "message"}}` for a request that could not be decided; a bad element does not affect the
    /// others. Only input that is not a JSON array, or is larger than `max_batch_bytes`, fails
    /// as a whole.
    pub fn authorize_json_batch(&self, requests: &str) -> Result<String, RequestError> {
        self.decide_json_batch(requests, None)
    }

    /// [`Engine::authorize_json_batch`], its events in `held` as for [`Engine::decide_json`].
    pub(crate) fn decide_json_batch(
        &self,
        requests: &str,
        mut held: Held<'_>,
    ) -> Result<String, RequestError> {
        self.limits.check_batch(requests)?;
        let items: Vec<&RawValue> = serde_json::from_str(requests).map_err(|e| {
            RequestError::Malformed(format!("expected a JSON array of requests: {e}"))
        })?;
        let bundle = self.bundle.load_full();
        let now = self.now();
        let reader = bundle.reader(&self.limits);
        let answers: Vec<Answer> = items
            .into_iter()
            .map(|item| {
                self.guarded(|start| {
                    self.limits.check_json("request", &[item.get()])?;
                    self.decide(
                        &bundle,
                        &Request::from_json(item.get(), &reader)?,
                        now,
                        start,
                        held.as_deref_mut(),
                    )
                })
                .into()
            })
            .collect();
        Ok(serde_json::to_string(&answers).unwrap_or_default())
    }
}

/// A request that brings neither entities nor a token, compared by what decides it: equal
/// parts, equal decisions (against one bundle version).
#[derive(Clone, Copy)]
struct SameDecision<'a, 'p>(&'a RequestParts<'p>);

impl<'a, 'p> SameDecision<'a, 'p> {
    fn of(parts: &'a RequestParts<'p>) -> Option<Self> {
        (parts.entities_json.is_none() && parts.token.is_none()).then_some(Self(parts))
    }

    #[allow(clippy::type_complexity)]
    fn key(
        &self,
    ) -> (
        Option<(&str, &str)>,
        (&str, &str),
        (&str, &str),
        Option<&str>,
    ) {
        let p = self.0;
        (p.principal, p.action, p.resource, p.context_json)
    }
}

impl PartialEq for SameDecision<'_, '_> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for SameDecision<'_, '_> {}

impl std::hash::Hash for SameDecision<'_, '_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// One element of a batch answer.
#[derive(Serialize)]
#[serde(untagged)]
enum Answer {
    Decision(Decision),
    Error { error: serde_json::Value },
}

impl From<Result<Decision, RequestError>> for Answer {
    fn from(result: Result<Decision, RequestError>) -> Self {
        match result {
            Ok(decision) => Answer::Decision(decision),
            Err(e) => Answer::Error {
                error: e.to_json_value(),
            },
        }
    }
}
