//! The engine: a bundle behind an atomic pointer, loads and reloads, single decisions and what
//! an operator sets on it; the decision procedure is in `decide`, batches in `batch`.
//!
//! Long: the `Engine`'s public methods, each a few lines over the shared load and decision
//! paths, read best side by side.

mod batch;
mod decide;
pub(crate) mod fault;
pub(crate) mod limits;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::bundle::abilities::Abilities;
use crate::bundle::http::{HttpError, HttpRequest};
use crate::bundle::signing::TrustedKeys;
use crate::bundle::{read_bundle_dir, Bundle, BundleFile, BundleInfo, ValidationDigest};
use crate::engine::fault::{contain_decision, contain_load, contain_query, contain_token, Faults};
use crate::engine::limits::Limits;
use crate::evaluation::explain::Explanation;
use crate::operations::decision_log::{
    Decided, DecisionLog, DecisionLogOptions, Delivery, Held, InvalidOptions,
};
use crate::operations::metrics::SourceStatus;
use crate::operations::metrics::{BridgeResult, Metrics, MetricsSnapshot};
use crate::operations::shadow::{CandidateInfo, Shadow, ShadowReport};
use crate::query::{Dialect, Query, QueryError, QueryRequest, SqlQuery};
use crate::token::{TokenError, TokenInfo};
use crate::wire::decision::Decision;
use crate::wire::error::{LoadError, RequestError};
use crate::wire::request::{check_entities, Request, RequestParts, RequestReader};
use decide::{decide_uncounted, verify_token, Trace};

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
    /// Where the bundle comes from, as a refresher last reported it.
    source: ArcSwapOption<SourceStatus>,
}

/// Whether a reload may go back to a bundle signed before the serving one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rollback {
    Refuse,
    Allow,
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
        let bundle = load(&metrics, &faults, files, signed_at, false, None)?;
        Ok(Self {
            bundle: ArcSwap::from_pointee(bundle),
            fixed_time: None,
            limits,
            trusted,
            faults,
            metrics,
            candidate: ArcSwapOption::empty(),
            decision_log: ArcSwapOption::empty(),
            source: ArcSwapOption::empty(),
        })
    }

    /// Checks what every bundle must pass before it loads: the size limit and, for an engine
    /// that trusts signing keys, the signature, signed no earlier than the serving bundle (no
    /// rollback to an older one) unless `rollback` allows it. Answers when it was signed.
    fn admit(&self, files: &[BundleFile], rollback: Rollback) -> Result<Option<i64>, LoadError> {
        self.limits.check_bundle(files)?;
        let Some(keys) = &self.trusted else {
            return Ok(None);
        };
        let signed_at = keys.verify(files)?;
        let serving = self.bundle.load().signed_at.unwrap_or(i64::MIN);
        if signed_at < serving && rollback == Rollback::Refuse {
            return Err(LoadError::Signature(vec![
                crate::wire::error::Problem::in_file(
                    crate::bundle::signing::SIGNATURE_FILE,
                    format!(
                        "signed at {signed_at}, before the serving bundle (signed at {serving}): \
                     an engine does not go back to an older bundle"
                    ),
                ),
            ]));
        }
        Ok(Some(signed_at))
    }

    /// Enforces `limits` on later requests and reloads.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether this engine loads only bundles signed by keys it trusts.
    pub fn trusts_signing_keys(&self) -> bool {
        self.trusted.is_some()
    }

    /// The limits this engine enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The default GitLab bundle embedded in this library (`policies/gitlab`).
    pub fn gitlab_default() -> Result<Self, LoadError> {
        Self::from_files(crate::bundle::default_bundle::engine_files())
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
        self.reload(files.into_iter().collect(), Rollback::Refuse)
    }

    /// [`Self::reload_from_files`], accepting a signed bundle older than the serving one: an
    /// operator's deliberate rollback (every other check still holds: the signature, the
    /// trusted keys, the files unchanged since signing).
    pub fn rollback_to_files(
        &self,
        files: impl IntoIterator<Item = BundleFile>,
    ) -> Result<(), LoadError> {
        self.reload(files.into_iter().collect(), Rollback::Allow)
    }

    fn reload(&self, files: Vec<BundleFile>, rollback: Rollback) -> Result<(), LoadError> {
        let serving = self.bundle.load().validated;
        let loaded = self.admit(&files, rollback).and_then(|signed_at| {
            load(
                &self.metrics,
                &self.faults,
                files,
                signed_at,
                true,
                serving.as_ref(),
            )
        });
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

    /// Reads a request given as contract JSON, as the JSON calls read it (the serving bundle's
    /// schema types its context and entities; the engine's limits apply), for the typed calls:
    /// `engine.authorize(&engine.read_request(json)?)`.
    pub fn read_request(&self, json: &str) -> Result<Request, RequestError> {
        self.read_json(&self.bundle.load(), json)
    }

    /// Reads request JSON against `bundle`, within the engine's limits.
    fn read_json(&self, bundle: &Bundle, json: &str) -> Result<Request, RequestError> {
        self.limits.check_json("request", &[json])?;
        Request::from_json(json, &bundle.reader(&self.limits))
    }

    /// Decides one request given as contract JSON and explains it, as explanation JSON (see
    /// [`Engine::explain`]).
    pub fn explain_json(&self, request: &str) -> Result<String, RequestError> {
        let bundle = self.bundle.load();
        let request = self.read_json(&bundle, request)?;
        self.explained(&bundle, &request, None).map(|e| e.to_json())
    }

    /// Decides one request and explains it: every policy whose scope matched, and whether its
    /// conditions were satisfied, not satisfied or errored, with the condition that decided
    /// it. Not counted in the metrics.
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
        self.admit(&files, Rollback::Refuse)?;
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
    /// [`crate::operations::decision_log`]). `sink` runs on the deciding thread, inside the call, possibly
    /// on many threads at once; a panic in it drops the event, never the decision. Replaces
    /// any earlier sink; decisions already under way may still reach that one.
    pub fn set_decision_log(
        &self,
        options: DecisionLogOptions,
        sink: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<(), InvalidOptions> {
        self.log_to(options, Delivery::Sink(Box::new(sink)))
    }

    /// Sets the decision log, delivering its events as `delivery` says.
    pub(crate) fn log_to(
        &self,
        options: DecisionLogOptions,
        delivery: Delivery,
    ) -> Result<(), InvalidOptions> {
        let log = DecisionLog::new(options, delivery)?;
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
        let source = self.source.load().as_deref().cloned();
        self.metrics
            .snapshot(&bundle, agreements, disagreements, source)
    }

    /// Records where the bundle comes from and how refreshing it goes (a refresher calls this
    /// after each attempt), for [`Self::metrics`] and [`Self::info`].
    pub fn set_source_status(&self, status: SourceStatus) {
        self.source.store(Some(Arc::new(status)));
    }

    /// Counts a check a host's bridge ran beside Arbiter (shadow comparisons, fallbacks to the
    /// host's own answer, errors), by ability, in [`Self::metrics`]: the label is the ability
    /// when the serving bundle's `abilities.json` names it, `other` otherwise, so what a host
    /// passes cannot grow the metrics without bound.
    pub fn count_bridge_check(&self, ability: &str, result: BridgeResult) {
        self.metrics
            .bridge_check(&self.bundle.load(), ability, result);
    }

    /// The serving bundle's `abilities.json`: the host's abilities and the actions they are.
    pub fn abilities(&self) -> Option<Abilities> {
        self.bundle.load().abilities.clone()
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
    /// decision is offered to it, with its latency since `start` (a log that hands events to
    /// the caller puts them in `held`).
    fn decide(
        &self,
        bundle: &Bundle,
        request: &Request,
        now: i64,
        start: Instant,
        held: Held<'_>,
    ) -> Result<Decision, RequestError> {
        self.decide_with(bundle, request, now, start, held, |trace| {
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
        held: Held<'_>,
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
                held,
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

    /// The entity type of the bundle's actions (e.g. `Gitlab::Action`), when its schema's
    /// actions all share one: what a caller that names actions by id alone (AuthZEN) means.
    pub(crate) fn action_type(&self) -> Option<String> {
        self.bundle.load().action_type.clone()
    }

    /// The current bundle's entities (its static entities and the schema's action entities),
    /// as Cedar entity JSON with explicit `__entity`/`__extn` escapes.
    pub fn entities_json(&self) -> String {
        self.bundle.load().entities.to_json()
    }

    /// What the current bundle holds.
    pub fn info(&self) -> BundleInfo {
        BundleInfo {
            source: self.source.load().as_deref().cloned(),
            ..self.bundle.load().info()
        }
    }

    /// Decides one request. Its own entities are checked as the JSON path checks them (number,
    /// schema conformance, no uid given twice differently).
    pub fn authorize(&self, request: &Request) -> Result<Decision, RequestError> {
        self.guarded(|start| {
            let bundle = self.bundle.load();
            request.check_entities(&bundle.reader(&self.limits))?;
            self.decide(&bundle, request, self.now(), start, None)
        })
    }

    /// Decides one request given as contract JSON, answering with decision JSON.
    pub fn authorize_json(&self, request: &str) -> Result<String, RequestError> {
        self.decide_json(request, None).map(|d| d.to_json())
    }

    /// [`Engine::authorize_json`]'s decision, typed; a log that hands events to the caller puts
    /// its event in `held`.
    pub(crate) fn decide_json(
        &self,
        request: &str,
        held: Held<'_>,
    ) -> Result<Decision, RequestError> {
        self.guarded(|start| {
            let bundle = self.bundle.load();
            let request = self.read_json(&bundle, request)?;
            self.decide(&bundle, &request, self.now(), start, held)
        })
    }

    /// Which resources of a type the principal may act on: every one, none, or a condition on
    /// the resource (see [`Query`]). Principal, action, context and entities are known, as in a
    /// check; the resource alone is unknown.
    pub fn query(&self, request: &QueryRequest) -> Result<Query, QueryError> {
        contain_query(|| self.planned(request))
    }

    /// [`Engine::query`] inside the caller's panic boundary.
    fn planned(&self, request: &QueryRequest) -> Result<Query, QueryError> {
        let bundle = self.bundle.load_full();
        check_entities(&request.entities, &bundle.reader(&self.limits))?;
        crate::query::plan(bundle, request)
    }

    /// [`Engine::query`] written as SQL in `dialect`, through the bundle's `sql/mapping.json`.
    pub fn query_sql(
        &self,
        request: &QueryRequest,
        dialect: Dialect,
    ) -> Result<SqlQuery, QueryError> {
        contain_query(|| self.planned(request)?.to_sql(dialect))
    }

    /// Reads a query given as request JSON whose `resource` names a `type` and no `id`.
    pub fn read_query(&self, json: &str) -> Result<QueryRequest, QueryError> {
        let bundle = self.bundle.load();
        self.limits.check_json("request", &[json])?;
        Ok(QueryRequest::from_json(json, &bundle.reader(&self.limits))?)
    }

    /// A query given as JSON, answered as `{"kind", "sql", "params"}` (`arbiter query`).
    pub fn query_json(&self, json: &str, dialect: Dialect) -> Result<String, QueryError> {
        self.query_sql(&self.read_query(json)?, dialect)
            .map(|q| q.to_json())
    }

    /// Decides an HTTP request as a proxy sees it, through the bundle's `http.json` (see
    /// docs/server.md): its route names the action and resource, its token,
    /// peer identity or the anonymous principal the principal. A request the mapping cannot
    /// take (no `http.json`, no route, no principal, a bad path or value) is an [`HttpError`],
    /// which the caller answers as a deny. The mapping and the policies come from one bundle,
    /// even while a reload swaps it.
    pub fn authorize_http(&self, http: &HttpRequest<'_>) -> Result<HttpAnswer, HttpError> {
        let bundle = self.bundle.load();
        let routes = bundle
            .http
            .as_ref()
            .ok_or_else(|| HttpError::new("no_mapping", "the bundle has no http.json"))?;
        let mapped = routes.map(http)?;
        let mut principal = mapped.request.principal.clone();
        let decision = self
            .guarded(|start| {
                let now = self.now();
                self.decide_with(&bundle, &mapped.request, now, start, None, |trace| {
                    let decided = decide_uncounted(&bundle, &mapped.request, now, trace);
                    if let Some(token) = &trace.token {
                        principal = Some(token.principal.uid.clone());
                    }
                    decided
                })
            })
            .map_err(|e| HttpError::new(e.kind(), e.to_string()))?;
        let headers = if decision.allowed() {
            routes.allow_headers(
                principal.as_ref(),
                mapped.route,
                http.request_id,
                &decision.reasons,
            )
        } else {
            Vec::new()
        };
        Ok(HttpAnswer {
            decision,
            principal,
            route: mapped.route.to_owned(),
            headers,
        })
    }

    /// Decides a request given as borrowed parts, without request JSON (the C ABI's fast path).
    pub fn authorize_parts(&self, parts: &RequestParts<'_>) -> Result<Decision, RequestError> {
        self.decide_parts(parts, None)
    }

    /// [`Engine::authorize_parts`], its event in `held` as for [`Engine::decide_json`].
    pub(crate) fn decide_parts(
        &self,
        parts: &RequestParts<'_>,
        held: Held<'_>,
    ) -> Result<Decision, RequestError> {
        self.guarded(|start| {
            self.limits.check_parts(parts)?;
            let bundle = self.bundle.load();
            let request = Request::from_parts(parts, &bundle.reader(&self.limits), None)?;
            self.decide(&bundle, &request, self.now(), start, held)
        })
    }
}

/// What [`Engine::authorize_http`] decided, with what a proxy passes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The decision.
    pub decision: Decision,
    /// The principal decided for (the token's, once verified), when one was found.
    pub principal: Option<cedar_policy::EntityUid>,
    /// The route's name (its path template when it has none).
    pub route: String,
    /// The headers `http.json` names for an allowed request (none for a deny): each with its
    /// value, or `None` when this request has none, for a proxy to remove what a client sent.
    pub headers: Vec<(String, Option<String>)>,
}

/// Loads a bundle inside the panic boundary (a reload trips an injected fault first), wires it
/// to the engine's per-action counters and records when and how fast it loaded. A reload gives
/// what the serving bundle's validation passed (see [`Bundle::load_after`]).
fn load(
    metrics: &Metrics,
    faults: &Faults,
    files: Vec<BundleFile>,
    signed_at: Option<i64>,
    reload: bool,
    validated: Option<&ValidationDigest>,
) -> Result<Bundle, LoadError> {
    let start = Instant::now();
    let mut bundle = contain_load(|| {
        if reload {
            faults.trip("reloading");
        }
        Bundle::load_after(files, validated)
    })?;
    bundle.outcomes = metrics.outcomes_for(bundle.schema.as_ref(), &bundle.policies);
    bundle.signed_at = signed_at;
    bundle.load_seconds = start.elapsed().as_secs_f64();
    if reload {
        metrics.reloaded();
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn engine_is_send_and_sync() {
        assert_send_sync::<Engine>();
    }

    const SCHEMA: &str = "entity User = { admin: Bool }; entity Doc;
        action read appliesTo { principal: User, resource: Doc };";
    const POLICY: &str = "permit (principal, action, resource) when { principal.admin };";

    fn files(schema: &str, policy: &str, admin: bool) -> Vec<BundleFile> {
        let entities = format!(
            r#"[{{"uid": {{"type": "User", "id": "a"}}, "attrs": {{"admin": {admin}}}, "parents": []}}]"#
        );
        vec![
            BundleFile::new("schema.cedarschema", schema),
            BundleFile::new("p.cedar", policy),
            BundleFile::new("entities.json", entities),
        ]
    }

    fn allowed(engine: &Engine) -> bool {
        let request = r#"{"principal": {"type": "User", "id": "a"}, "action": {"type": "Action", "id": "read"},
                          "resource": {"type": "Doc", "id": "d"}}"#;
        engine
            .authorize_json(request)
            .unwrap()
            .contains(r#""allow""#)
    }

    #[test]
    fn a_reload_validates_again_whatever_validation_reads_and_only_that() {
        let engine = Engine::from_files(files(SCHEMA, POLICY, false)).unwrap();
        let first = engine.bundle.load().validated;
        assert!(first.is_some());
        // Entities alone changed: the same digest, and the new entities decide.
        engine
            .reload_from_files(files(SCHEMA, POLICY, true))
            .unwrap();
        assert_eq!(engine.bundle.load().validated, first);
        assert!(allowed(&engine));
        // The same policies under a schema without `admin`: validated again, and refused.
        let narrower = SCHEMA.replace("{ admin: Bool }", "{}");
        let e = engine
            .reload_from_files(
                files(&narrower, POLICY, true)
                    .into_iter()
                    .filter(|f| f.path != "entities.json"),
            )
            .unwrap_err();
        assert!(matches!(e, LoadError::PolicyValidation(_)), "{e}");
        // A policy the same schema refuses: validated again, and refused.
        let e = engine
            .reload_from_files(files(
                SCHEMA,
                "permit (principal, action, resource) when { principal.owner };",
                true,
            ))
            .unwrap_err();
        assert!(matches!(e, LoadError::PolicyValidation(_)), "{e}");
        assert!(allowed(&engine));
        // Validation turned off, then on again with the same files: validated again.
        let mut off = files(SCHEMA, POLICY, true);
        off.push(BundleFile::new(
            "manifest.json",
            r#"{"validate_policies": false}"#,
        ));
        engine.reload_from_files(off).unwrap();
        assert_eq!(engine.bundle.load().validated, None);
        engine
            .reload_from_files(files(SCHEMA, POLICY, true))
            .unwrap();
        assert_eq!(engine.bundle.load().validated, first);
    }
}
