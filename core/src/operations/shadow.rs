//! Shadow evaluation: an engine may carry a candidate bundle beside the live one. Every decision
//! is taken from the live bundle; the candidate decides the same request too, and the two are
//! compared. Agreements and disagreements are counted, and the most recent disagreements kept
//! (principal, action, resource, live decision, candidate decision) for an operator to read
//! before promoting the candidate. A candidate's counters are set and dropped with it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

use crate::wire::decision::Decision;
use crate::wire::error::RequestError;
use crate::wire::request::Request;

/// How many disagreements a shadow report keeps (the most recent).
const KEPT_DISAGREEMENTS: usize = 100;

/// What one candidate has seen.
#[derive(Debug, Default)]
pub(crate) struct Shadow {
    agreements: AtomicU64,
    disagreements: AtomicU64,
    recent: Mutex<VecDeque<Disagreement>>,
}

impl Shadow {
    /// Compares the live answer to a request with the candidate's.
    pub(crate) fn compare(
        &self,
        request: &Request,
        live: &Result<Decision, RequestError>,
        candidate: &Result<Decision, RequestError>,
    ) {
        if effect(live) == effect(candidate) {
            self.agreements.fetch_add(1, Relaxed);
            return;
        }
        self.disagreements.fetch_add(1, Relaxed);
        let disagreement = Disagreement {
            principal: request.principal.as_ref().map(ToString::to_string),
            action: request.action.to_string(),
            resource: request.resource.to_string(),
            live: answer(live),
            candidate: answer(candidate),
        };
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == KEPT_DISAGREEMENTS {
            recent.pop_front();
        }
        recent.push_back(disagreement);
    }

    /// Agreements and disagreements.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.agreements.load(Relaxed),
            self.disagreements.load(Relaxed),
        )
    }

    pub(crate) fn report(&self, candidate: Option<CandidateInfo>) -> ShadowReport {
        let (agreements, disagreements) = self.counts();
        ShadowReport {
            candidate,
            agreements,
            disagreements,
            recent: self
                .recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }
}

/// `allow`, `deny` or the error kind: what a disagreement is about.
fn effect(answer: &Result<Decision, RequestError>) -> Result<bool, &'static str> {
    answer
        .as_ref()
        .map(Decision::allowed)
        .map_err(RequestError::kind)
}

fn answer(answer: &Result<Decision, RequestError>) -> Value {
    match answer {
        Ok(decision) => serde_json::to_value(decision).unwrap_or(Value::Null),
        Err(e) => serde_json::json!({"error": e.to_json_value()}),
    }
}

/// What shadow evaluation has seen since the candidate was set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowReport {
    /// The candidate bundle's manifest name and version; `None` when there is no candidate.
    pub candidate: Option<CandidateInfo>,
    /// Requests the candidate decided as the live bundle did.
    pub agreements: u64,
    /// Requests it decided otherwise (allow against deny, or an error against a decision).
    pub disagreements: u64,
    /// The most recent disagreements, oldest first (at most 100).
    pub recent: Vec<Disagreement>,
}

/// The candidate bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CandidateInfo {
    /// `name` from its manifest.
    pub name: Option<String>,
    /// `version` from its manifest.
    pub version: Option<String>,
}

/// One request the candidate decided otherwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disagreement {
    /// The principal (Cedar syntax), when the request named one.
    pub principal: Option<String>,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// The live bundle's decision JSON, or `{"error": ...}`.
    pub live: Value,
    /// The candidate's.
    pub candidate: Value,
}

impl ShadowReport {
    /// The report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}
