//! Decision logs: one JSON event per decision, handed to a sink the host provides.
//!
//! An event names the request (its `request_id`, principal, action and resource), the bundle
//! that decided (manifest name and version), the decision with its policy ids and error kinds,
//! the verified token's id (a JWT's `jti`, a macaroon's identifier) and the latency. It never
//! holds a token or key material, nor an error's message (which may quote a value); the
//! request's context is included with every attribute the bundle's manifest lists in
//! `sensitive_attributes` masked, at any depth. While a candidate bundle is set (shadow
//! evaluation), the event also says what the candidate decided and whether it agrees. Sampling
//! and a rate limit keep the stream to what the host wants; what they leave out is counted in
//! the engine's metrics.
//!
//! The sink runs on the deciding thread, inside the decision call. Hosts that may only run
//! their own code once the call has returned (Ruby without the GVL, Python without the GIL)
//! have each call's events handed back with its answer instead: see [`crate::ffi::Logged`].

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use cedar_policy::EntityUid;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::bundle::Bundle;
use crate::operations::metrics::{LogOutcome, Metrics};
use crate::wire::decision::{Decision, Effect};
use crate::wire::error::RequestError;

/// What a masked attribute's value becomes.
pub const MASKED: &str = "[masked]";

/// The longest request id an event carries, in bytes; a longer one is cut (at a character
/// boundary). Request ids often come from clients (`X-Request-Id`).
pub const MAX_REQUEST_ID_BYTES: usize = 256;

/// How much of the decision stream a log keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecisionLogOptions {
    /// The fraction of decisions logged, from 0.0 to 1.0 (default 1.0: every one). Decisions
    /// with the same request id are sampled alike, so all the checks of one web request are
    /// logged or none: a request id is in when the first 8 bytes of its SHA-256, as a
    /// big-endian integer over 2^64, fall below the rate. Decisions without one are sampled at
    /// random.
    pub sample_rate: f64,
    /// At most this many events a second, in bursts of up to as many (default: no limit).
    /// Must not be 0 (a sample rate of 0 logs nothing).
    pub max_events_per_second: Option<u32>,
}

impl Default for DecisionLogOptions {
    fn default() -> Self {
        Self {
            sample_rate: 1.0,
            max_events_per_second: None,
        }
    }
}

/// Decision log options that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid decision log option: {0}")]
pub struct InvalidOptions(String);

impl DecisionLogOptions {
    /// The rate limiter's quota, once the options are checked.
    fn quota(&self) -> Result<Option<Quota>, InvalidOptions> {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(InvalidOptions(format!(
                "sample_rate must be from 0.0 to 1.0, not {}",
                self.sample_rate
            )));
        }
        self.max_events_per_second
            .map(|n| {
                NonZeroU32::new(n).map(Quota::per_second).ok_or_else(|| {
                    InvalidOptions(
                        "max_events_per_second must be at least 1 (leave it unset for no limit)"
                            .into(),
                    )
                })
            })
            .transpose()
    }
}

/// A host's sink for events, each one JSON object.
pub(crate) type Sink = Box<dyn Fn(&str) + Send + Sync>;

/// Where a log's events go.
pub(crate) enum Delivery {
    /// To the host's sink, inside the decision call.
    Sink(Sink),
    /// Back to the caller, with the call's answer (a language binding's calls, through
    /// [`crate::ffi`]).
    Caller,
}

/// Where one call collects the events of a log that hands them to the caller: `None` for a
/// call made outside [`crate::ffi`], whose events no one can take (they are counted as
/// `unclaimed`).
pub(crate) type Held<'c> = Option<&'c mut Vec<String>>;

/// An engine's decision log: options, rate limiter and delivery, replaced together.
pub(crate) struct DecisionLog {
    sample_rate: f64,
    limiter: Option<DefaultDirectRateLimiter>,
    delivery: Delivery,
}

impl DecisionLog {
    pub(crate) fn new(
        options: DecisionLogOptions,
        delivery: Delivery,
    ) -> Result<Self, InvalidOptions> {
        Ok(Self {
            limiter: options.quota()?.map(RateLimiter::direct),
            sample_rate: options.sample_rate,
            delivery,
        })
    }

    /// Logs one decision, if sampling and the rate limit let it through; counts the outcome.
    pub(crate) fn record(&self, metrics: &Metrics, decided: Decided<'_>, held: Held<'_>) {
        let outcome = if !self.sampled_in(decided.request_id) {
            LogOutcome::SampledOut
        } else if self.limiter.as_ref().is_some_and(|l| l.check().is_err()) {
            LogOutcome::RateLimited
        } else {
            match (&self.delivery, held) {
                // The sink is the host's code: a panic drops the event, never the decision.
                (Delivery::Sink(sink), _) => {
                    match catch_unwind(AssertUnwindSafe(|| sink(&decided.event()))) {
                        Ok(()) => LogOutcome::Logged,
                        Err(_) => LogOutcome::SinkPanicked,
                    }
                }
                (Delivery::Caller, Some(held)) => {
                    held.push(decided.event());
                    LogOutcome::Logged
                }
                (Delivery::Caller, None) => LogOutcome::Unclaimed,
            }
        };
        metrics.logged(outcome);
    }

    fn sampled_in(&self, request_id: Option<&str>) -> bool {
        if self.sample_rate >= 1.0 {
            return true;
        }
        let draw = match request_id {
            Some(id) => {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
                let mut first = [0u8; 8];
                first.copy_from_slice(&digest.as_ref()[..8]);
                u64::from_be_bytes(first) as f64 / 2f64.powi(64)
            }
            None => fastrand::f64(),
        };
        draw < self.sample_rate
    }
}

/// One decision, as the engine saw it.
pub(crate) struct Decided<'a> {
    pub(crate) bundle: &'a Bundle,
    pub(crate) request_id: Option<&'a str>,
    pub(crate) principal: Option<&'a EntityUid>,
    pub(crate) action: &'a EntityUid,
    pub(crate) resource: &'a EntityUid,
    pub(crate) context: &'a cedar_policy::Context,
    pub(crate) decision: &'a Decision,
    pub(crate) token_id: Option<&'a str>,
    pub(crate) latency: Duration,
    /// The candidate bundle's answer, while one is set.
    pub(crate) shadow: Option<&'a Result<Decision, RequestError>>,
}

impl Decided<'_> {
    /// The event's JSON.
    fn event(&self) -> String {
        let mut context = self.context.clone().to_json_value().unwrap_or(Value::Null);
        mask(&mut context, &self.bundle.manifest.sensitive_attributes);
        let event = Event {
            time: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            request_id: self.request_id.map(cut_request_id),
            bundle: BundleName {
                name: self.bundle.manifest.name.as_deref(),
                version: self.bundle.manifest.version.as_deref(),
            },
            principal: self.principal.map(Uid::from),
            action: Uid::from(self.action),
            resource: Uid::from(self.resource),
            decision: self.decision.decision,
            reasons: &self.decision.reasons,
            errors: self
                .decision
                .errors
                .iter()
                .map(|e| ErrorKind {
                    kind: e.kind.as_str(),
                    policy: e.policy.as_deref(),
                })
                .collect(),
            token_id: self.token_id,
            latency_us: self.latency.as_nanos() as f64 / 1e3,
            context,
            shadow: self.shadow.map(|candidate| ShadowEvent {
                agrees: candidate
                    .as_ref()
                    .is_ok_and(|d| d.allowed() == self.decision.allowed()),
                decision: candidate.as_ref().ok().map(|d| d.decision),
                reasons: candidate.as_ref().ok().map(|d| d.reasons.as_slice()),
                error: candidate.as_ref().err().map(RequestError::kind),
            }),
        };
        serde_json::to_string(&event).unwrap_or_default()
    }
}

/// A decision log event, in the order its fields are written.
#[derive(Serialize)]
struct Event<'a> {
    time: String,
    request_id: Option<&'a str>,
    bundle: BundleName<'a>,
    principal: Option<Uid>,
    action: Uid,
    resource: Uid,
    decision: Effect,
    reasons: &'a [String],
    errors: Vec<ErrorKind<'a>>,
    token_id: Option<&'a str>,
    latency_us: f64,
    context: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow: Option<ShadowEvent<'a>>,
}

/// What a candidate bundle made of the same request: its decision and reasons, or the kind of
/// error it failed with.
#[derive(Serialize)]
struct ShadowEvent<'a> {
    agrees: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<Effect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasons: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

#[derive(Serialize)]
struct BundleName<'a> {
    name: Option<&'a str>,
    version: Option<&'a str>,
}

#[derive(Serialize)]
struct Uid {
    #[serde(rename = "type")]
    type_name: String,
    id: String,
}

impl From<&EntityUid> for Uid {
    fn from(uid: &EntityUid) -> Self {
        Self {
            type_name: uid.type_name().to_string(),
            id: uid.id().unescaped().to_owned(),
        }
    }
}

#[derive(Serialize)]
struct ErrorKind<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'a str>,
}

fn cut_request_id(id: &str) -> &str {
    let mut end = id.len().min(MAX_REQUEST_ID_BYTES);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    &id[..end]
}

/// Replaces the value of every object member named in `sensitive`, at any depth.
fn mask(value: &mut Value, sensitive: &HashSet<String>) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                match sensitive.contains(name) {
                    true => *member = Value::String(MASKED.to_owned()),
                    false => mask(member, sensitive),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| mask(item, sensitive)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_named_members_at_any_depth() {
        let mut value = serde_json::json!({
            "email": "a@example.com",
            "level": 30,
            "nested": {"email": {"deep": 1}, "ok": [{"email": "b"}, 2]},
        });
        let sensitive = HashSet::from(["email".to_owned()]);
        mask(&mut value, &sensitive);
        assert_eq!(
            value,
            serde_json::json!({
                "email": MASKED,
                "level": 30,
                "nested": {"email": MASKED, "ok": [{"email": MASKED}, 2]},
            })
        );
    }

    #[test]
    fn long_request_ids_are_cut_at_a_character_boundary() {
        let id = "é".repeat(MAX_REQUEST_ID_BYTES);
        let cut = cut_request_id(&id);
        assert!(cut.len() <= MAX_REQUEST_ID_BYTES && cut.len() >= MAX_REQUEST_ID_BYTES - 1);
        assert!(id.starts_with(cut));
        assert_eq!(cut_request_id("req-1"), "req-1");
    }

    #[test]
    fn sampling_by_request_id_is_stable_and_near_the_rate() {
        let log = DecisionLog::new(
            DecisionLogOptions {
                sample_rate: 0.25,
                max_events_per_second: None,
            },
            Delivery::Caller,
        )
        .unwrap();
        let ids: Vec<String> = (0..20_000).map(|n| format!("req-{n}")).collect();
        let first: Vec<bool> = ids.iter().map(|id| log.sampled_in(Some(id))).collect();
        let again: Vec<bool> = ids.iter().map(|id| log.sampled_in(Some(id))).collect();
        assert_eq!(first, again);
        let share = first.iter().filter(|&&b| b).count() as f64 / ids.len() as f64;
        assert!((0.23..0.27).contains(&share), "sampled {share}");
        let random = (0..20_000).filter(|_| log.sampled_in(None)).count() as f64 / 20_000.0;
        assert!((0.23..0.27).contains(&random), "sampled {random}");
    }

    #[test]
    fn options_out_of_range_are_refused() {
        let refused = |sample_rate, max_events_per_second| {
            let options = DecisionLogOptions {
                sample_rate,
                max_events_per_second,
            };
            DecisionLog::new(options, Delivery::Caller)
                .err()
                .map(|e| e.to_string())
        };
        for rate in [-0.1, 1.5, f64::NAN] {
            assert!(refused(rate, None).unwrap().contains("sample_rate"));
        }
        assert!(refused(1.0, Some(0))
            .unwrap()
            .contains("max_events_per_second"));
        assert_eq!(refused(0.0, Some(1)), None);
    }
}
