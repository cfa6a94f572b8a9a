//! The engine: a bundle behind an atomic pointer, and the decision procedure.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use cedar_policy::{Context, RequestValidationError, RestrictedExpression};
use cedar_policy_core::ast::{
    self, Effect as PolicyEffect, EntityUID, Literal, PartialValue, ValueKind,
};
use cedar_policy_core::evaluator::Evaluator;
use cedar_policy_core::extensions::Extensions;
use serde::Serialize;
use serde_json::value::RawValue;
use smol_str::SmolStr;

use crate::bundle::{read_bundle_dir, Bundle, BundleFile, BundleInfo};
use crate::decision::{Decision, DecisionError, DecisionErrorKind, Effect};
use crate::decision_log::{Decided, DecisionLog, DecisionLogOptions, InvalidOptions};
use crate::entities::{push_value_references, validate_entity};
use crate::error::{one_line, CallError, LoadError, RequestError};
use crate::eval;
use crate::explain::{explain_policies, Explanation, PolicyExplanation};
use crate::fault::{contain_decision, contain_load, contain_token, Faults};
use crate::index::IndexedPolicy;
use crate::limits::Limits;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::request::{ContextCache, Request, RequestParts, RequestReader};
use crate::shadow::{CandidateInfo, Shadow, ShadowReport};
use crate::signing::TrustedKeys;
use crate::token::{TokenError, TokenInfo, Verified};

/// Decides requests against one bundle at a time.
///
/// `Engine` is `Send + Sync`: share it (in an `Arc` or a static) between threads. Decisions
/// never block each other or a reload; each sees one whole bundle, the one current when it
/// started. A panic inside (a bug) never reaches the caller: a decision that panics is a deny
/// with an `internal` error, a token check that panics is a `TokenError` of kind `internal`, a
/// load or reload that panics is [`LoadError::Internal`].
pub struct Engine {
    bundle: ArcSwap<Bundle>,
    /// A fixed time (Unix seconds) for every token check, or the system clock when `None`.
    fixed_time: Option<i64>,
    limits: Limits,
    /// When set, only bundles signed by one of these keys load.
    trusted: Option<TrustedKeys>,
    faults: Faults,
    metrics: Metrics,
    /// A bundle evaluated beside the live one, for comparison only, with what it has seen.
    candidate: ArcSwapOption<Candidate>,
    /// Where decisions are logged, when anywhere.
    decision_log: ArcSwapOption<DecisionLog>,
}

/// A candidate bundle and its comparison counters, set and dropped together.
struct Candidate {
    bundle: Bundle,
    shadow: Shadow,
}

impl Engine {
    /// Loads the bundle in directory `path`.
    pub fn from_bundle_dir(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        Self::from_files(read_bundle_dir(path.as_ref())?)
    }

    /// Loads a bundle held in memory, one [`BundleFile`] per file.
    pub fn from_files(files: impl IntoIterator<Item = BundleFile>) -> Result<Self, LoadError> {
        Self::from_files_with_limits(files, Limits::default())
    }

    /// Loads a bundle held in memory under `limits` (which then also hold for its requests and
    /// reloads).
    pub fn from_files_with_limits(
        files: impl IntoIterator<Item = BundleFile>,
        limits: Limits,
    ) -> Result<Self, LoadError> {
        Self::build(files.into_iter().collect(), limits, None)
    }

    /// Loads the signed bundle in directory `path`: it must carry a valid `signature.json` by
    /// one of `keys` and be exactly the files signed. The engine then accepts only bundles so
    /// signed, on every reload (and for a candidate); a refused one leaves it as it was.
    pub fn from_signed_bundle_dir(
        path: impl AsRef<Path>,
        keys: TrustedKeys,
    ) -> Result<Self, LoadError> {
        Self::from_signed_files(read_bundle_dir(path.as_ref())?, keys)
    }

    /// Loads a signed bundle held in memory (see [`Engine::from_signed_bundle_dir`]).
    pub fn from_signed_files(
        files: impl IntoIterator<Item = BundleFile>,
        keys: TrustedKeys,
    ) -> Result<Self, LoadError> {
        Self::build(files.into_iter().collect(), Limits::default(), Some(keys))
    }

    fn build(
        files: Vec<BundleFile>,
        limits: Limits,
        trusted: Option<TrustedKeys>,
    ) -> Result<Self, LoadError> {
        limits.check_bundle(&files)?;
        let signed_at = trusted
            .as_ref()
            .map(|keys| keys.verify(&files))
            .transpose()?;
        let (metrics, faults) = (Metrics::default(), Faults::default());
        let bundle = load(&metrics, &faults, files, signed_at, false)?;
        Ok(Self {
            bundle: ArcSwap::from_pointee(bundle),
            fixed_time: None,
            limits,
            trusted,
            faults,
            metrics,
            candidate: ArcSwapOption::empty(),
            decision_log: ArcSwapOption::empty(),
        })
    }

    /// Checks what every bundle must pass before it loads: the size limit and, for an engine
    /// that trusts signing keys, the signature, signed no earlier than the serving bundle (no
    /// rollback to an older one). Answers when it was signed.
    fn admit(&self, files: &[BundleFile]) -> Result<Option<i64>, LoadError> {
        self.limits.check_bundle(files)?;
        let Some(keys) = &self.trusted else {
            return Ok(None);
        };
        let signed_at = keys.verify(files)?;
        let serving = self.bundle.load().signed_at.unwrap_or(i64::MIN);
        if signed_at < serving {
            return Err(LoadError::Signature(vec![crate::error::Problem::in_file(
                crate::signing::SIGNATURE_FILE,
                format!(
                    "signed at {signed_at}, before the serving bundle (signed at {serving}): \
                     an engine does not go back to an older bundle"
                ),
            )]));
        }
        Ok(Some(signed_at))
    }

    /// Enforces `limits` on later requests and reloads.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits this engine enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The default GitLab bundle embedded in this library (`policies/gitlab`).
    pub fn gitlab_default() -> Result<Self, LoadError> {
        Self::from_files(crate::default_bundle::engine_files())
    }

    /// Replaces the bundle with the one in directory `path`. On any error the current bundle
    /// keeps serving, untouched.
    pub fn reload_from_dir(&self, path: impl AsRef<Path>) -> Result<(), LoadError> {
        match read_bundle_dir(path.as_ref()) {
            Ok(files) => self.reload_from_files(files),
            Err(e) => {
                self.metrics.reload_failed();
                Err(e)
            }
        }
    }

    /// Replaces the bundle with one held in memory. On any error the current bundle keeps
    /// serving, untouched.
    pub fn reload_from_files(
        &self,
        files: impl IntoIterator<Item = BundleFile>,
    ) -> Result<(), LoadError> {
        let files: Vec<BundleFile> = files.into_iter().collect();
        let loaded = self
            .admit(&files)
            .and_then(|signed_at| load(&self.metrics, &self.faults, files, signed_at, true));
        match loaded {
            Ok(bundle) => {
                self.bundle.store(Arc::new(bundle));
                Ok(())
            }
            Err(e) => {
                self.metrics.reload_failed();
                Err(e)
            }
        }
    }

    /// Decides one request given as contract JSON, like [`Engine::authorize_json_decision`],
    /// and explains it: every policy whose scope matched, and whether its conditions were
    /// satisfied, not satisfied or errored, with the condition that decided it. Not counted in
    /// the metrics.
    pub fn explain_json(&self, request: &str) -> Result<Explanation, RequestError> {
        self.limits.check_json("request", &[request])?;
        let bundle = self.bundle.load();
        let request = Request::from_json(request, &bundle.reader(&self.limits))?;
        self.explained(&bundle, &request, None)
    }

    /// Decides one typed request and explains it (see [`Engine::explain_json`]).
    pub fn explain(&self, request: &Request) -> Result<Explanation, RequestError> {
        let bundle = self.bundle.load();
        self.explained(&bundle, request, Some(&bundle.reader(&self.limits)))
    }

    /// Explains `request`; a typed one (with the reader to check its entities) is checked first.
    fn explained(
        &self,
        bundle: &Bundle,
        request: &Request,
        typed: Option<&RequestReader<'_>>,
    ) -> Result<Explanation, RequestError> {
        let mut trace = Trace {
            explain: Some(Vec::new()),
            token: None,
        };
        let decision = contain_decision(|| {
            if let Some(reader) = typed {
                request.check_entities(reader)?;
            }
            decide_uncounted(bundle, request, self.now(), &mut trace)
        })?;
        Ok(Explanation {
            decision,
            policies: trace.explain.unwrap_or_default(),
        })
    }

    /// Sets a candidate bundle (from directory `path`) beside the live one: every decision is
    /// still taken from the live bundle, and the candidate decides the same request too (the
    /// request as read for the live bundle); [`Engine::shadow_report`] counts where they
    /// disagree. Replaces any earlier candidate and starts counting afresh. On error nothing
    /// changes.
    pub fn set_candidate_from_dir(&self, path: impl AsRef<Path>) -> Result<(), LoadError> {
        self.set_candidate_from_files(read_bundle_dir(path.as_ref())?)
    }

    /// Sets a candidate bundle held in memory (see [`Engine::set_candidate_from_dir`]).
    pub fn set_candidate_from_files(
        &self,
        files: impl IntoIterator<Item = BundleFile>,
    ) -> Result<(), LoadError> {
        let files: Vec<BundleFile> = files.into_iter().collect();
        self.admit(&files)?;
        let bundle = contain_load(|| Bundle::load(files))?;
        self.candidate.store(Some(Arc::new(Candidate {
            bundle,
            shadow: Shadow::default(),
        })));
        Ok(())
    }

    /// Drops the candidate bundle; decisions go on from the live one alone.
    pub fn clear_candidate(&self) {
        self.candidate.store(None);
    }

    /// What shadow evaluation has seen since the candidate was set: agreements,
    /// disagreements, and the most recent disagreements.
    pub fn shadow_report(&self) -> ShadowReport {
        match self.candidate.load().as_ref() {
            Some(c) => c.shadow.report(Some(CandidateInfo {
                name: c.bundle.manifest.name.clone(),
                version: c.bundle.manifest.version.clone(),
            })),
            None => Shadow::default().report(None),
        }
    }

    /// Logs decisions from now on: every decision (of every call but `explain`) is offered to
    /// `sink` as one JSON event, subject to `options`' sampling and rate limit (see
    /// [`crate::decision_log`]). `sink` runs on the deciding thread, inside the call, possibly
    /// on many threads at once; a panic in it drops the event, never the decision. Replaces
    /// any earlier sink; decisions already under way may still reach that one.
    pub fn set_decision_log(
        &self,
        options: DecisionLogOptions,
        sink: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<(), InvalidOptions> {
        let log = DecisionLog::new(options, Box::new(sink))?;
        self.decision_log.store(Some(Arc::new(log)));
        Ok(())
    }

    /// Stops logging decisions (the sink is dropped once no decision under way holds it).
    pub fn clear_decision_log(&self) {
        self.decision_log.store(None);
    }

    /// What this engine has counted since it was created (reloads included): decisions by
    /// action and outcome, failed requests, token failures, evaluation errors by policy, a
    /// latency histogram and the serving bundle. See [`MetricsSnapshot::to_prometheus`].
    pub fn metrics(&self) -> MetricsSnapshot {
        let bundle = self.bundle.load();
        let shadow = self.candidate.load();
        let (agreements, disagreements) = shadow.as_ref().map_or((0, 0), |c| c.shadow.counts());
        self.metrics.snapshot(&bundle, agreements, disagreements)
    }

    /// Test builds only (feature `fault-injection`): while `on`, every decision and every reload
    /// of this engine panics inside the engine, to check how a host sees it (a deny with an
    /// `internal` error; a reload error with the old bundle kept).
    #[cfg(feature = "fault-injection")]
    pub fn inject_panics(&self, on: bool) {
        self.faults.arm(on);
    }

    /// Decides `request` with `bundle` and counts the outcome under its action; with a
    /// candidate bundle set, the candidate decides it too and the two are compared (the
    /// decision's latency then includes the candidate's). With a decision log set, the
    /// decision is offered to it, with its latency since `start`.
    fn decide(
        &self,
        bundle: &Bundle,
        request: &Request,
        now: i64,
        start: Instant,
    ) -> Result<Decision, RequestError> {
        self.decide_with(bundle, request, now, start, |trace| {
            decide_uncounted(bundle, request, now, trace)
        })
    }

    /// [`Engine::decide`] with the live decision made by `live` (a batch's may be one it has
    /// already made for an identical request).
    fn decide_with(
        &self,
        bundle: &Bundle,
        request: &Request,
        now: i64,
        start: Instant,
        live: impl FnOnce(&mut Trace) -> Result<Decision, RequestError>,
    ) -> Result<Decision, RequestError> {
        let mut trace = Trace::default();
        let result = live(&mut trace);
        if let Ok(decision) = &result {
            bundle.outcomes.count(&request.action, decision);
        }
        let shadow = self.candidate.load().as_ref().and_then(|candidate| {
            // The candidate's failure, a panic included, never touches the live answer.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let shadow = contain_decision(|| {
                    decide_uncounted(&candidate.bundle, request, now, &mut Trace::default())
                });
                candidate.shadow.compare(request, &result, &shadow);
                shadow
            }))
            .ok()
        });
        if let (Some(log), Ok(decision)) = (self.decision_log.load().as_ref(), &result) {
            let token = trace.token.as_deref();
            log.record(
                &self.metrics,
                Decided {
                    bundle,
                    request_id: request.request_id.as_deref(),
                    principal: request
                        .principal
                        .as_ref()
                        .or(token.map(|t| &t.principal.uid)),
                    action: &request.action,
                    resource: &request.resource,
                    context: &request.context,
                    decision,
                    token_id: token.and_then(|t| t.token_id.as_deref()),
                    latency: start.elapsed(),
                    shadow: shadow.as_ref(),
                },
            );
        }
        result
    }

    /// Runs one decision inside the panic boundary, and counts it. `decide` gets the time the
    /// call started.
    fn guarded(
        &self,
        decide: impl FnOnce(Instant) -> Result<Decision, RequestError>,
    ) -> Result<Decision, RequestError> {
        let start = Instant::now();
        let result = contain_decision(|| {
            self.faults.trip("deciding");
            decide(start)
        });
        self.metrics.record(&result, start.elapsed());
        result
    }

    /// Checks tokens as of `unix_seconds` instead of the system clock (for replaying requests
    /// and for tests; `arbiter check --now`).
    pub fn with_fixed_time(mut self, unix_seconds: i64) -> Self {
        self.fixed_time = Some(unix_seconds);
        self
    }

    fn now(&self) -> i64 {
        self.fixed_time.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        })
    }

    /// Verifies a token on its own (no request): what `arbiter token verify` prints.
    pub fn verify_token(&self, token: &str) -> Result<TokenInfo, TokenError> {
        contain_token(|| verify_token(&self.bundle.load(), token, self.now())).map(TokenInfo::new)
    }

    /// The current bundle's entities (its static entities and the schema's action entities),
    /// as Cedar entity JSON with explicit `__entity`/`__extn` escapes.
    pub fn entities_json(&self) -> String {
        self.bundle.load().entities.to_json()
    }

    /// What the current bundle holds.
    pub fn info(&self) -> BundleInfo {
        self.bundle.load().info()
    }

    /// Decides one request. Its own entities are checked as the JSON path checks them (number,
    /// schema conformance, no uid given twice differently).
    pub fn authorize(&self, request: &Request) -> Result<Decision, RequestError> {
        self.guarded(|start| {
            let bundle = self.bundle.load();
            request.check_entities(&bundle.reader(&self.limits))?;
            self.decide(&bundle, request, self.now(), start)
        })
    }

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
                    self.decide(&bundle, r, now, start)
                })
            })
            .collect()
    }

    /// Decides one request given as contract JSON, answering with decision JSON.
    pub fn authorize_json(&self, request: &str) -> Result<String, RequestError> {
        self.authorize_json_decision(request).map(|d| d.to_json())
    }

    /// Decides one request given as contract JSON, answering with a typed [`Decision`].
    pub fn authorize_json_decision(&self, request: &str) -> Result<Decision, RequestError> {
        self.guarded(|start| {
            self.limits.check_json("request", &[request])?;
            let bundle = self.bundle.load();
            let request = Request::from_json(request, &bundle.reader(&self.limits))?;
            self.decide(&bundle, &request, self.now(), start)
        })
    }

    /// Decides a request given as borrowed parts, without request JSON (the C ABI's fast path).
    pub fn authorize_parts(&self, parts: &RequestParts<'_>) -> Result<Decision, RequestError> {
        self.guarded(|start| {
            self.limits.check_parts(parts)?;
            let bundle = self.bundle.load();
            let request = Request::from_parts(parts, &bundle.reader(&self.limits), None)?;
            self.decide(&bundle, &request, self.now(), start)
        })
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
        self.decide_batch(requests.iter().map(Ok))
    }

    /// Decides a batch a binding read element by element: each element read is decided (as by
    /// [`Engine::authorize_parts_batch`], against one bundle version), each that could not be
    /// read keeps its error, in place.
    pub fn authorize_read_batch(
        &self,
        items: &[Result<RequestParts<'_>, CallError>],
    ) -> Vec<Result<Decision, CallError>> {
        self.decide_batch(items.iter().map(|item| item.as_ref().map_err(Clone::clone)))
    }

    /// The batch calls' loop: decides each request given, keeps each error given in place.
    fn decide_batch<'a, 'p: 'a, E: From<RequestError>>(
        &self,
        items: impl ExactSizeIterator<Item = Result<&'a RequestParts<'p>, E>>,
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
                self.decide_with(&bundle, &request, now, start, |trace| {
                    let earlier = same.as_ref().and_then(|same| decided.get(same));
                    if let Some(Ok(decision)) = earlier.map(|&n| &answers[n]) {
                        return Ok(decision.clone());
                    }
                    let result = decide_uncounted(&bundle, &request, now, trace);
                    if let (Some(same), Ok(_)) = (same, &result) {
                        decided.insert(same, answers.len());
                    }
                    result
                })
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

/// Loads a bundle inside the panic boundary (a reload trips an injected fault first), wires it
/// to the engine's per-action counters and records when and how fast it loaded.
fn load(
    metrics: &Metrics,
    faults: &Faults,
    files: Vec<BundleFile>,
    signed_at: Option<i64>,
    reload: bool,
) -> Result<Bundle, LoadError> {
    let start = Instant::now();
    let mut bundle = contain_load(|| {
        if reload {
            faults.trip("reloading");
        }
        Bundle::load(files)
    })?;
    bundle.outcomes = metrics.outcomes_for(bundle.schema.as_ref(), &bundle.policies);
    bundle.signed_at = signed_at;
    bundle.load_seconds = start.elapsed().as_secs_f64();
    if reload {
        metrics.reloaded();
    }
    Ok(bundle)
}

/// What a decision leaves behind besides its answer, for whoever asks.
#[derive(Default)]
struct Trace {
    /// When `Some`, filled with how each policy whose scope matched was evaluated.
    explain: Option<Vec<PolicyExplanation>>,
    /// The request's token, once verified.
    token: Option<Arc<Verified>>,
}

// Cedar's `RequestValidationError` is large; it is handled at once, never passed along.
#[allow(clippy::result_large_err)]
fn decide_uncounted(
    bundle: &Bundle,
    request: &Request,
    now: i64,
    trace: &mut Trace,
) -> Result<Decision, RequestError> {
    let token = match &request.token {
        None => None,
        Some(token) => match verify_for_request(bundle, token, request, now) {
            Ok(verified) => Some(verified),
            Err(e) => return Ok(Decision::denied_by(e.into_decision_error())),
        },
    };
    trace.token.clone_from(&token);
    let principal = match (&request.principal, &token) {
        (Some(given), Some(verified)) if *given != verified.principal.uid => {
            return Ok(Decision::denied_by(
                TokenError::invalid_claim("the request's principal is not the one the token names")
                    .into_decision_error(),
            ))
        }
        (Some(given), _) => given.clone(),
        (None, Some(verified)) => verified.principal.uid.clone(),
        (None, None) => {
            return Err(RequestError::Malformed(
                "missing `principal` (it may only be left out when a `token` is given)".into(),
            ))
        }
    };
    // A principal entity built from the token's claims adds to what the host knows of the
    // principal (the request's entity with its uid, else the bundle's), never overrides it;
    // like the request's entities (checked as they were read), it must conform to the schema.
    let token_entity = match token.as_ref().and_then(|v| v.principal.entity.as_ref()) {
        None => None,
        Some(claimed) => {
            let claimed: &ast::Entity = claimed.as_ref();
            let host = match request
                .entities
                .iter()
                .find(|e| e.as_ref().uid() == claimed.uid())
            {
                Some(given) => Some(given.as_ref()),
                None => bundle.entities.get(claimed.uid()),
            };
            match over_host(claimed, host) {
                Ok(entity) => Some(entity),
                Err(e) => return Ok(Decision::denied_by(e.into_decision_error())),
            }
        }
    };
    // Cedar's conformance error would quote the claims, so the deny names the problem alone.
    if let (Some(entity), Some(schema)) = (&token_entity, bundle.request_schema()) {
        if validate_entity(entity, schema, bundle.shapes.as_ref()).is_err() {
            return Ok(Decision::denied_by(
                TokenError::invalid_claim(
                    "the principal the token's claims build does not conform to the schema",
                )
                .into_decision_error(),
            ));
        }
    }
    let token_uid = token_entity.as_ref().map(|t| t.uid().clone());
    let own: Vec<Arc<ast::Entity>> = request
        .entities
        .iter()
        .filter(|e| token_uid.as_ref() != Some(e.as_ref().uid()))
        .map(|e| Arc::new(e.as_ref().clone()))
        .chain(token_entity.map(Arc::new))
        .collect();

    let schema = bundle.request_schema();
    let new_request = |context: Context| {
        // Cedar validates what the compiled shapes cannot vouch for, and reports its errors.
        let vouched = bundle.shapes.as_ref().is_some_and(|shapes| {
            matches!(context.as_ref(), ast::Context::Value(record)
                if shapes.vouch(principal.as_ref(), request.action.as_ref(), request.resource.as_ref(), record))
        });
        cedar_policy::Request::new(
            principal.clone(),
            request.action.clone(),
            request.resource.clone(),
            context,
            schema.filter(|_| !vouched),
        )
    };
    // The request, its context carrying the token's claims (if any) as `token`.
    let build = |claims: Option<&HashMap<String, RestrictedExpression>>| {
        let with_claims = |context: Context| match claims {
            None => Ok(context),
            Some(claims) => token_context(context, claims.clone()),
        };
        match new_request(with_claims(request.context.clone())?) {
            Ok(r) => Ok(r),
            // The fast reader's context failed the schema: Cedar's reader decides, as always.
            Err(
                e @ (RequestValidationError::InvalidContext(_)
                | RequestValidationError::TypeOfContext(_)),
            ) => match schema.and_then(|s| request.reread_context(s)) {
                None => Err(request_validation_error(e)),
                Some(reread) => {
                    new_request(with_claims(reread?)?).map_err(request_validation_error)
                }
            },
            Err(e) => Err(request_validation_error(e)),
        }
    };
    let claims = token.as_ref().and_then(|v| v.context.as_ref());
    let cedar_request = match build(claims) {
        Ok(r) => r,
        // Cedar's message would quote the claims. When the host's own context conforms, the
        // claims are what does not: a deny naming the problem alone.
        Err(RequestError::Context(_)) if claims.is_some() => {
            build(None)?;
            // A request that sets `token` itself is refused as before.
            token_context(request.context.clone(), HashMap::new())?;
            return Ok(Decision::denied_by(
                TokenError::invalid_claim(
                    "the token's claims do not conform to the schema's `token` context",
                )
                .into_decision_error(),
            ));
        }
        Err(e) => return Err(e),
    };
    let ast_request: &ast::Request = cedar_request.as_ref();
    let (p, a, r): (&EntityUID, &EntityUID, &EntityUID) = (
        principal.as_ref(),
        request.action.as_ref(),
        request.resource.as_ref(),
    );

    let hierarchy_may_change = bundle.entities.may_regroup(a, &own);
    let layered;
    let store = if own.is_empty() {
        bundle.entities.store()
    } else {
        let mut seeds = vec![p.clone(), a.clone(), r.clone()];
        if let Some(ast::Context::Value(context)) = ast_request.context() {
            context
                .values()
                .for_each(|v| push_value_references(v, &mut seeds));
        }
        seeds.extend_from_slice(bundle.index.literals(a, hierarchy_may_change));
        layered = bundle.entities.layered(seeds, own)?;
        &layered
    };
    let policies = bundle.index.select(p, a, r, store, hierarchy_may_change);
    let decision = evaluate(ast_request, store, &policies);
    if let Some(explain) = &mut trace.explain {
        *explain = explain_policies(ast_request, store, &policies);
    }
    Ok(decision)
}

/// The principal entity a token's claims build, laid over what the host knows of it: the host's
/// attributes, parents and tags stay, the token adds attributes the host does not have, and an
/// attribute both give must agree (a token never overrides what the host knows, such as a
/// blocked account's state).
fn over_host(claimed: &ast::Entity, host: Option<&ast::Entity>) -> Result<ast::Entity, TokenError> {
    let Some(host) = host else {
        return Ok(claimed.clone());
    };
    let mut attrs: HashMap<SmolStr, PartialValue> = host
        .attrs()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    for (name, value) in claimed.attrs() {
        match attrs.get(name) {
            None => {
                attrs.insert(name.clone(), value.clone());
            }
            Some(known) if known == value => {}
            Some(_) => {
                return Err(TokenError::invalid_claim(format!(
                    "the token's principal attribute `{name}` disagrees with what the host knows \
                     of the principal"
                )))
            }
        }
    }
    Ok(ast::Entity::new_with_attr_partial_value(
        host.uid().clone(),
        attrs,
        HashSet::new(),
        host.parents().cloned().collect(),
        host.tags()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect::<Vec<_>>(),
    ))
}

fn request_validation_error(e: RequestValidationError) -> RequestError {
    match e {
        RequestValidationError::InvalidContext(_) | RequestValidationError::TypeOfContext(_) => {
            RequestError::context(&e)
        }
        e => RequestError::invalid(&e),
    }
}

/// Verifies the request's token and the caveats that depend on the request.
fn verify_for_request(
    bundle: &Bundle,
    token: &str,
    request: &Request,
    now: i64,
) -> Result<Arc<Verified>, TokenError> {
    let verified = verify_token(bundle, token, now)?;
    verified.check_request(&request.action, &request.resource)?;
    Ok(verified)
}

fn verify_token(bundle: &Bundle, token: &str, now: i64) -> Result<Arc<Verified>, TokenError> {
    // Fail closed: a bundle without token configuration trusts no token.
    bundle
        .tokens
        .as_ref()
        .ok_or_else(|| {
            TokenError::new(
                DecisionErrorKind::UnknownIssuer,
                "this bundle has no token configuration, so no token is trusted",
            )
        })?
        .verify(token, now)
}

/// The request's context with `token` set to the token's typed claims.
fn token_context(
    context: Context,
    claims: std::collections::HashMap<String, RestrictedExpression>,
) -> Result<Context, RequestError> {
    let reserved = || {
        RequestError::Context(
            "`token` in the context is set from the verified token; the request may not set it"
                .into(),
        )
    };
    let record = RestrictedExpression::new_record(claims).map_err(|_| reserved())?;
    let addition = Context::from_pairs([("token".to_owned(), record)]).map_err(|_| reserved())?;
    context.merge(addition).map_err(|_| reserved())
}

/// Cedar's authorization over `policies`: deny if any forbid holds (its forbids are the
/// reasons), else allow if any permit holds (its permits are the reasons), else deny. A policy
/// whose evaluation errors is skipped and its error reported.
fn evaluate(
    request: &ast::Request,
    store: &cedar_policy_core::entities::Entities,
    policies: &[(&IndexedPolicy, &ast::Expr)],
) -> Decision {
    let vars = eval::Vars::new(request);
    let fast = vars
        .as_ref()
        .and_then(|vars| eval::Env::new(vars, request.context(), store));
    // Cedar's evaluator, built only for a condition the fast path leaves to it.
    let mut cedar: Option<Evaluator<'_>> = None;
    let mut permits = Vec::new();
    let mut forbids = Vec::new();
    let mut errors = Vec::new();
    for (indexed, condition) in policies {
        let policy = indexed.policy.as_ref();
        let holds = match fast
            .as_ref()
            .and_then(|env| env.holds(condition, &indexed.slots))
        {
            Some(b) => Ok(b),
            None => {
                let evaluator = cedar.get_or_insert_with(|| {
                    Evaluator::new(request.clone(), store, Extensions::all_available())
                });
                // What `Evaluator::evaluate` does, with the condition built once at load. A
                // condition is a conjunction, so it is a boolean or an error; anything else
                // takes Cedar's own path, to report exactly its error.
                match evaluator.interpret(condition, policy.env()) {
                    Ok(value) => match value.value_kind() {
                        ValueKind::Lit(Literal::Bool(b)) => Ok(*b),
                        _ => evaluator.evaluate(policy),
                    },
                    Err(e) => Err(e),
                }
            }
        };
        match holds {
            Ok(true) => match policy.effect() {
                PolicyEffect::Permit => permits.push(indexed.id.clone()),
                PolicyEffect::Forbid => forbids.push(indexed.id.clone()),
            },
            Ok(false) => {}
            Err(e) => errors.push(DecisionError {
                kind: DecisionErrorKind::PolicyEvaluation,
                policy: Some(indexed.id.clone()),
                message: one_line(&e.to_string()),
            }),
        }
    }
    let (decision, mut reasons) = if !forbids.is_empty() {
        (Effect::Deny, forbids)
    } else if !permits.is_empty() {
        (Effect::Allow, permits)
    } else {
        (Effect::Deny, Vec::new())
    };
    reasons.sort();
    errors.sort_by(|x, y| x.policy.cmp(&y.policy));
    Decision {
        decision,
        reasons,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn engine_is_send_and_sync() {
        assert_send_sync::<Engine>();
    }
}
