//! Metrics, cheap enough to leave on: decisions by action and outcome, requests that could not
//! be decided by kind, token failures by kind, evaluation errors by policy, contained panics, a
//! latency histogram, and the serving bundle's name, version and load time.
//!
//! Long: the counters and their Prometheus text are one table each way, kept side by side.
//!
//! The hot path only bumps atomics: per-action counters are looked up in a map the bundle built
//! at load (no lock), the rest are fixed arrays. Counters belong to the engine and survive
//! reloads. [`Engine::metrics`](crate::Engine::metrics) takes a [`MetricsSnapshot`], which
//! serializes to JSON and to the Prometheus text exposition format.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cedar_policy::{ActionConstraint, EntityUid, PolicySet, Schema};
use serde::Serialize;

use crate::bundle::Bundle;
use crate::wire::decision::{Decision, DecisionErrorKind, Effect};
use crate::wire::error::RequestError;

/// The label of decisions whose action the bundle does not know (its schema's actions, or
/// without a schema the actions its policies name): what a request may name is unbounded, the
/// labels a scrape carries must not be.
const OTHER_ACTION: &str = "other";

/// Upper bounds of the latency histogram's buckets, in nanoseconds (then `+Inf`).
const BUCKETS_NS: [u64; 12] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// Allow and deny counts of one action.
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    allow: AtomicU64,
    deny: AtomicU64,
}

/// A bundle's view of the engine's per-action counters, built when it loads.
#[derive(Debug, Default)]
pub(crate) struct ActionOutcomes {
    known: HashMap<EntityUid, Arc<Outcomes>>,
    other: Arc<Outcomes>,
}

impl ActionOutcomes {
    /// Counts a decision of `action`.
    pub(crate) fn count(&self, action: &EntityUid, decision: &Decision) {
        let outcomes = self.known.get(action).unwrap_or(&self.other);
        match decision.decision {
            Effect::Allow => outcomes.allow.fetch_add(1, Relaxed),
            Effect::Deny => outcomes.deny.fetch_add(1, Relaxed),
        };
    }
}

/// What became of a decision offered to the decision log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogOutcome {
    /// Handed to the sink.
    Logged,
    /// Left out by sampling.
    SampledOut,
    /// Left out by the rate limit.
    RateLimited,
    /// The sink panicked on it (the decision stood).
    SinkPanicked,
    /// The log hands events to the caller, but the call was not one that takes them.
    Unclaimed,
}

impl LogOutcome {
    const ALL: [LogOutcome; 5] = [
        Self::Logged,
        Self::SampledOut,
        Self::RateLimited,
        Self::SinkPanicked,
        Self::Unclaimed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Logged => "logged",
            Self::SampledOut => "sampled_out",
            Self::RateLimited => "rate_limited",
            Self::SinkPanicked => "sink_panicked",
            Self::Unclaimed => "unclaimed",
        }
    }
}

/// How a check a host's bridge ran beside Arbiter ended (see
/// [`Engine::count_bridge_check`](crate::Engine::count_bridge_check)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeResult {
    /// Shadow mode: Arbiter answered as the host's own code did.
    Agree,
    /// Shadow mode: Arbiter answered otherwise (the host's answer was used).
    Mismatch,
    /// Arbiter failed and the host's own code answered instead.
    Fallback,
    /// Arbiter failed with no fallback: the check was denied.
    Error,
}

impl BridgeResult {
    const ALL: [Self; 4] = [Self::Agree, Self::Mismatch, Self::Fallback, Self::Error];

    /// `agree`, `mismatch`, `fallback` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agree => "agree",
            Self::Mismatch => "mismatch",
            Self::Fallback => "fallback",
            Self::Error => "error",
        }
    }

    /// The result named `name` (as [`Self::as_str`] gives it).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// The engine's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Per-action counters by label, kept across reloads.
    actions: Mutex<BTreeMap<String, Arc<Outcomes>>>,
    request_errors: [AtomicU64; RequestError::KINDS.len()],
    token_failures: [AtomicU64; DecisionErrorKind::ALL.len()],
    policy_errors: Mutex<BTreeMap<String, u64>>,
    internal_errors: AtomicU64,
    latency: LatencyRecorder,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    log_outcomes: [AtomicU64; LogOutcome::ALL.len()],
    /// Bridge checks by ability (one the serving bundle's `abilities.json` names, or `other`).
    bridge: Mutex<BTreeMap<String, [u64; BridgeResult::ALL.len()]>>,
}

impl Metrics {
    /// The per-action counters a bundle with this schema and these policies uses.
    pub(crate) fn outcomes_for(
        &self,
        schema: Option<&Schema>,
        policies: &PolicySet,
    ) -> ActionOutcomes {
        let actions: Vec<EntityUid> = match schema {
            Some(schema) => schema.actions().cloned().collect(),
            None => policies
                .policies()
                .flat_map(|p| match p.action_constraint() {
                    ActionConstraint::Any => Vec::new(),
                    ActionConstraint::In(actions) => actions,
                    ActionConstraint::Eq(action) => vec![action],
                })
                .collect(),
        };
        let mut registry = self.actions.lock().unwrap_or_else(|e| e.into_inner());
        let mut slot = |label: String| Arc::clone(registry.entry(label).or_default());
        ActionOutcomes {
            other: slot(OTHER_ACTION.to_owned()),
            known: actions
                .into_iter()
                .map(|uid| {
                    let label = action_label(&uid);
                    (uid, slot(label))
                })
                .collect(),
        }
    }

    /// Counts one call that asked for a decision, and how long it took.
    pub(crate) fn record(&self, result: &Result<Decision, RequestError>, took: Duration) {
        self.latency.record(took);
        let decision = match result {
            Ok(decision) => decision,
            Err(e) => {
                self.request_errors[e.index()].fetch_add(1, Relaxed);
                return;
            }
        };
        for error in &decision.errors {
            match (error.kind, &error.policy) {
                (DecisionErrorKind::PolicyEvaluation, Some(policy)) => {
                    let mut errors = self.policy_errors.lock().unwrap_or_else(|e| e.into_inner());
                    *errors.entry(policy.clone()).or_default() += 1;
                }
                (DecisionErrorKind::PolicyEvaluation, None) => {}
                (DecisionErrorKind::Internal, _) => {
                    self.internal_errors.fetch_add(1, Relaxed);
                }
                (kind, _) => {
                    self.token_failures[kind as usize].fetch_add(1, Relaxed);
                }
            }
        }
    }

    /// Counts what became of a decision offered to the decision log.
    pub(crate) fn logged(&self, outcome: LogOutcome) {
        self.log_outcomes[outcome as usize].fetch_add(1, Relaxed);
    }

    /// Counts a host bridge's check of `ability` (labelled `other` unless `serving` maps it).
    pub(crate) fn bridge_check(&self, serving: &Bundle, ability: &str, result: BridgeResult) {
        let known = serving
            .abilities
            .as_ref()
            .is_some_and(|a| a.abilities.contains_key(ability));
        let label = if known { ability } else { OTHER_ACTION };
        let mut bridge = self.bridge.lock().unwrap_or_else(|e| e.into_inner());
        match bridge.get_mut(label) {
            Some(counts) => counts[result as usize] += 1,
            None => {
                let mut counts = [0; BridgeResult::ALL.len()];
                counts[result as usize] = 1;
                bridge.insert(label.to_owned(), counts);
            }
        }
    }

    /// Counts a reload that succeeded.
    pub(crate) fn reloaded(&self) {
        self.reloads.fetch_add(1, Relaxed);
    }

    /// Counts a reload that failed (the old bundle kept serving).
    pub(crate) fn reload_failed(&self) {
        self.reload_failures.fetch_add(1, Relaxed);
    }

    /// The counters, with `serving` (the bundle deciding now) and a candidate's comparisons.
    pub(crate) fn snapshot(
        &self,
        serving: &Bundle,
        shadow_agreements: u64,
        shadow_disagreements: u64,
        source: Option<SourceStatus>,
    ) -> MetricsSnapshot {
        let decisions = self
            .actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(action, outcomes)| ActionDecisions {
                action: action.clone(),
                allow: outcomes.allow.load(Relaxed),
                deny: outcomes.deny.load(Relaxed),
            })
            .collect();
        MetricsSnapshot {
            decisions,
            request_errors: RequestError::KINDS
                .iter()
                .zip(&self.request_errors)
                .map(|(kind, n)| (kind.as_str(), n.load(Relaxed)))
                .collect(),
            token_failures: DecisionErrorKind::ALL
                .iter()
                .filter(|k| k.is_token_failure())
                .map(|k| (k.as_str(), self.token_failures[*k as usize].load(Relaxed)))
                .collect(),
            policy_errors: self
                .policy_errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            internal_errors: self.internal_errors.load(Relaxed),
            latency: self.latency.snapshot(),
            bundle: BundleMetrics {
                name: serving.manifest.name.clone(),
                version: serving.manifest.version.clone(),
                loaded_at_unix_seconds: serving.loaded_at,
                load_seconds: serving.load_seconds,
                reloads: self.reloads.load(Relaxed),
                reload_failures: self.reload_failures.load(Relaxed),
            },
            shadow_agreements,
            shadow_disagreements,
            decision_log: LogOutcome::ALL
                .iter()
                .map(|o| (o.as_str(), self.log_outcomes[*o as usize].load(Relaxed)))
                .collect(),
            bridge_checks: self
                .bridge
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(ability, counts)| {
                    let by_result = BridgeResult::ALL
                        .iter()
                        .map(|r| (r.as_str(), counts[*r as usize]))
                        .collect();
                    (ability.clone(), by_result)
                })
                .collect(),
            source,
        }
    }
}

/// An action as a metric label: `Gitlab::Action::push_code`.
fn action_label(uid: &EntityUid) -> String {
    format!("{}::{}", uid.type_name(), uid.id().unescaped())
}

/// What an engine has counted since it was created, reloads included.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    /// Decisions by action (`other` for actions the bundle does not know), allow and deny.
    pub decisions: Vec<ActionDecisions>,
    /// Requests that could not be decided, by error kind (`malformed_request`, ...).
    pub request_errors: BTreeMap<&'static str, u64>,
    /// Tokens refused, by kind (`expired`, `bad_signature`, ...).
    pub token_failures: BTreeMap<&'static str, u64>,
    /// Evaluation errors, by policy id.
    pub policy_errors: BTreeMap<String, u64>,
    /// Panics contained inside Arbiter (each a deny).
    pub internal_errors: u64,
    /// Time to decide one request, reading it included.
    pub latency: Latency,
    /// The bundle serving decisions.
    pub bundle: BundleMetrics,
    /// Requests a candidate bundle decided as the live one did (shadow evaluation).
    pub shadow_agreements: u64,
    /// Requests a candidate bundle decided otherwise.
    pub shadow_disagreements: u64,
    /// Decisions offered to the decision log, by what became of them: `logged`,
    /// `sampled_out`, `rate_limited`, `sink_panicked`, `unclaimed` (see [`crate::ffi::Logged`]).
    pub decision_log: BTreeMap<&'static str, u64>,
    /// Checks a host's bridge ran beside Arbiter (e.g. the Ruby gem's declarative_policy
    /// bridge), by ability and result (`agree`, `mismatch`, `fallback`, `error`).
    pub bridge_checks: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// Where the serving bundle comes from and how refreshing it goes, when a refresher
    /// reports it ([`crate::Engine::set_source_status`]).
    pub source: Option<SourceStatus>,
}

/// A bundle source's state, as the host's refresher (crate `arbiter-fleet`) reports it to the
/// engine, for [`crate::Engine::metrics`] and [`crate::Engine::info`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceStatus {
    /// The source: a directory, an HTTP(S) URL or an `oci://` reference.
    pub source: String,
    /// The serving bundle's revision: its manifest's `version`, when it has one.
    pub revision: Option<String>,
    /// The serving bundle's digest (`sha256:...`): the OCI manifest's, the archive's (HTTP), or
    /// its files' (a directory).
    pub digest: Option<String>,
    /// When the serving bundle was signed (Unix seconds), when it is signed.
    pub signed_at: Option<i64>,
    /// Where the serving bundle was read from: `source`, or `cache` after a start with the
    /// source down.
    pub served_from: String,
    /// The last attempt that reached the source and found it usable (Unix seconds).
    pub last_success: Option<i64>,
    /// The last attempt, successful or not (Unix seconds).
    pub last_attempt: Option<i64>,
    /// Why the last attempt failed, if it did (the serving bundle stayed).
    pub last_error: Option<String>,
    /// Attempts that failed since the last success.
    pub consecutive_failures: u64,
}

/// Decisions of one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionDecisions {
    /// The action, `Type::id`, or `other`.
    pub action: String,
    /// Allowed.
    pub allow: u64,
    /// Denied.
    pub deny: u64,
}

/// A latency histogram recorded without locks, from 1 µs to 100 ms (then `+Inf`): the engine's
/// decisions, and a host's own calls (`arbiter serve`'s requests).
#[derive(Debug, Default)]
pub struct LatencyRecorder {
    buckets: [AtomicU64; BUCKETS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl LatencyRecorder {
    /// Counts one call that took `took`.
    pub fn record(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_NS
            .iter()
            .position(|&le| ns <= le)
            .unwrap_or(BUCKETS_NS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// What it has counted, with cumulative buckets.
    pub fn snapshot(&self) -> Latency {
        let mut cumulative = 0;
        let bounds = BUCKETS_NS.iter().map(|&le| le as f64 / 1e9);
        let buckets = bounds
            .chain([f64::INFINITY])
            .zip(&self.buckets)
            .map(|(le_seconds, count)| {
                cumulative += count.load(Relaxed);
                LatencyBucket {
                    le_seconds,
                    count: cumulative,
                }
            })
            .collect();
        Latency {
            count: cumulative,
            sum_seconds: self.sum_ns.load(Relaxed) as f64 / 1e9,
            buckets,
        }
    }
}

/// A latency histogram with cumulative buckets, as Prometheus keeps them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// Calls measured.
    pub count: u64,
    /// Their total time, in seconds.
    pub sum_seconds: f64,
    /// Calls that took at most `le_seconds` (the last bucket is `+Inf`).
    pub buckets: Vec<LatencyBucket>,
}

/// One cumulative bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyBucket {
    /// Upper bound, in seconds (`+Inf` for the last, `null` in JSON).
    #[serde(serialize_with = "finite_or_null")]
    pub le_seconds: f64,
    /// Calls that took at most that long.
    pub count: u64,
}

impl Latency {
    /// The histogram as Prometheus samples of one family, each `(suffix and labels, value)`:
    /// the cumulative `_bucket` samples (labels `own`, then `le`), then `_sum` and `_count`.
    pub fn prometheus_samples(&self, own: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut samples: Vec<(String, String)> = self
            .buckets
            .iter()
            .map(|b| {
                let le = match b.le_seconds.is_finite() {
                    true => b.le_seconds.to_string(),
                    false => "+Inf".to_owned(),
                };
                let mut pairs = own.to_vec();
                pairs.push(("le", &le));
                (format!("_bucket{}", labels(&pairs)), b.count.to_string())
            })
            .collect();
        let own = labels(own);
        samples.push((format!("_sum{own}"), self.sum_seconds.to_string()));
        samples.push((format!("_count{own}"), self.count.to_string()));
        samples
    }
}

fn finite_or_null<S: serde::Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    match value.is_finite() {
        true => s.serialize_f64(*value),
        false => s.serialize_none(),
    }
}

/// The serving bundle and its loads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundleMetrics {
    /// `name` from the manifest.
    pub name: Option<String>,
    /// `version` from the manifest.
    pub version: Option<String>,
    /// When it loaded, in Unix seconds.
    pub loaded_at_unix_seconds: f64,
    /// How long it took to load, in seconds.
    pub load_seconds: f64,
    /// Reloads that succeeded.
    pub reloads: u64,
    /// Reloads that failed (the old bundle kept serving).
    pub reload_failures: u64,
}

impl MetricsSnapshot {
    /// The snapshot as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The snapshot in the Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        family(
            "arbiter_decisions_total",
            "counter",
            "Decisions by action and outcome.",
            self.decisions
                .iter()
                .flat_map(|d| {
                    [("allow", d.allow), ("deny", d.deny)].map(|(outcome, n)| {
                        (
                            labels(&[("action", &d.action), ("decision", outcome)]),
                            n.to_string(),
                        )
                    })
                })
                .collect(),
        );
        let by_kind = |counts: &BTreeMap<&'static str, u64>| {
            counts
                .iter()
                .map(|(kind, n)| (labels(&[("kind", kind)]), n.to_string()))
                .collect()
        };
        family(
            "arbiter_request_errors_total",
            "counter",
            "Requests that could not be decided, by error kind.",
            by_kind(&self.request_errors),
        );
        family(
            "arbiter_token_failures_total",
            "counter",
            "Tokens refused, by kind.",
            by_kind(&self.token_failures),
        );
        family(
            "arbiter_policy_errors_total",
            "counter",
            "Policy evaluation errors, by policy.",
            self.policy_errors
                .iter()
                .map(|(policy, n)| (labels(&[("policy", policy)]), n.to_string()))
                .collect(),
        );
        family(
            "arbiter_internal_errors_total",
            "counter",
            "Panics contained inside Arbiter (each answered with a deny).",
            vec![(String::new(), self.internal_errors.to_string())],
        );
        family(
            "arbiter_decision_duration_seconds",
            "histogram",
            "Time to decide one request, reading it included.",
            self.latency.prometheus_samples(&[]),
        );
        let bundle = &self.bundle;
        family(
            "arbiter_bundle_info",
            "gauge",
            "The bundle serving decisions (always 1; name and version are labels).",
            vec![(
                labels(&[
                    ("name", bundle.name.as_deref().unwrap_or("")),
                    ("version", bundle.version.as_deref().unwrap_or("")),
                ]),
                "1".to_owned(),
            )],
        );
        family(
            "arbiter_bundle_loaded_timestamp_seconds",
            "gauge",
            "When the serving bundle loaded, in Unix seconds.",
            vec![(String::new(), bundle.loaded_at_unix_seconds.to_string())],
        );
        family(
            "arbiter_bundle_load_duration_seconds",
            "gauge",
            "How long the serving bundle took to load.",
            vec![(String::new(), bundle.load_seconds.to_string())],
        );
        family(
            "arbiter_bundle_reloads_total",
            "counter",
            "Reloads, by result (a failed one keeps the old bundle serving).",
            vec![
                (labels(&[("result", "ok")]), bundle.reloads.to_string()),
                (
                    labels(&[("result", "error")]),
                    bundle.reload_failures.to_string(),
                ),
            ],
        );
        family(
            "arbiter_shadow_decisions_total",
            "counter",
            "Requests a candidate bundle also decided, by whether it agreed with the live one.",
            vec![
                (
                    labels(&[("result", "agree")]),
                    self.shadow_agreements.to_string(),
                ),
                (
                    labels(&[("result", "disagree")]),
                    self.shadow_disagreements.to_string(),
                ),
            ],
        );
        family(
            "arbiter_decision_log_events_total",
            "counter",
            "Decisions offered to the decision log, by result (logged or why not).",
            self.decision_log
                .iter()
                .map(|(result, n)| (labels(&[("result", result)]), n.to_string()))
                .collect(),
        );
        family(
            "arbiter_bridge_checks_total",
            "counter",
            "Checks a host's bridge ran beside Arbiter, by ability and result (agree, mismatch, \
             fallback to the host's answer, error).",
            self.bridge_checks
                .iter()
                .flat_map(|(ability, results)| {
                    results.iter().map(move |(result, n)| {
                        (
                            labels(&[("ability", ability), ("result", result)]),
                            n.to_string(),
                        )
                    })
                })
                .collect(),
        );
        if let Some(source) = &self.source {
            family(
                "arbiter_bundle_source_info",
                "gauge",
                "The serving bundle's source (always 1; source, digest, revision and where it \
                 was read from are labels).",
                vec![(
                    labels(&[
                        ("source", &source.source),
                        ("digest", source.digest.as_deref().unwrap_or("")),
                        ("revision", source.revision.as_deref().unwrap_or("")),
                        ("served_from", &source.served_from),
                    ]),
                    "1".to_owned(),
                )],
            );
            family(
                "arbiter_bundle_source_last_success_timestamp_seconds",
                "gauge",
                "When a refresh last reached the source and found it usable, in Unix seconds.",
                vec![(String::new(), source.last_success.unwrap_or(0).to_string())],
            );
            family(
                "arbiter_bundle_source_consecutive_failures",
                "gauge",
                "Refreshes that failed since the last success (the serving bundle stayed).",
                vec![(String::new(), source.consecutive_failures.to_string())],
            );
        }
        out
    }
}

/// `{a="x",b="y"}` with label values escaped as the exposition format requires (nothing for
/// no labels).
fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let body: Vec<String> = pairs
        .iter()
        .map(|(name, value)| {
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{name}=\"{escaped}\"")
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("a", "x\"y\\z\nw"), ("b", "")]),
            r#"{a="x\"y\\z\nw",b=""}"#
        );
    }

    #[test]
    fn latency_lands_in_cumulative_buckets() {
        let m = Metrics::default();
        let deny = Ok(Decision {
            decision: Effect::Deny,
            reasons: vec![],
            errors: vec![],
        });
        m.record(&deny, Duration::from_nanos(700));
        m.record(&deny, Duration::from_micros(3));
        m.record(&deny, Duration::from_secs(2));
        let bundle = Bundle::load(vec![crate::BundleFile::new("p.cedar", "")]).unwrap();
        let latency = m.snapshot(&bundle, 0, 0, None).latency;
        assert_eq!(latency.count, 3);
        let counts: Vec<u64> = latency.buckets.iter().map(|b| b.count).collect();
        assert_eq!(&counts[..3], &[1, 1, 2]);
        assert_eq!(counts[counts.len() - 2], 2);
        assert_eq!(counts[counts.len() - 1], 3);
        assert!((latency.sum_seconds - 2.0000037).abs() < 1e-9);
    }
}
