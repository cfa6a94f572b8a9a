//! The engine: a bundle behind an atomic pointer, and the decision procedure.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use cedar_policy::RequestValidationError;
use cedar_policy_core::ast::{self, Effect as PolicyEffect, EntityUID};
use cedar_policy_core::evaluator::Evaluator;
use cedar_policy_core::extensions::Extensions;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::bundle::{read_engine_files, Bundle, BundleFile, BundleInfo};
use crate::decision::{Decision, DecisionError, DecisionErrorKind, Effect};
use crate::entities::push_value_references;
use crate::error::{one_line, LoadError, RequestError};
use crate::request::Request;

/// Decides requests against one bundle at a time.
///
/// `Engine` is `Send + Sync`: share it (in an `Arc` or a static) between threads. Decisions
/// never block each other or a reload; each sees one whole bundle, the one current when it
/// started.
pub struct Engine {
    bundle: ArcSwap<Bundle>,
}

impl Engine {
    /// Loads the bundle in directory `path`.
    pub fn from_bundle_dir(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        Self::from_files(read_engine_files(path.as_ref())?)
    }

    /// Loads a bundle held in memory, one [`BundleFile`] per file.
    pub fn from_files(files: impl IntoIterator<Item = BundleFile>) -> Result<Self, LoadError> {
        Ok(Self {
            bundle: ArcSwap::from_pointee(Bundle::load(files.into_iter().collect())?),
        })
    }

    /// The default GitLab bundle embedded in this library (`policies/gitlab`).
    pub fn gitlab_default() -> Result<Self, LoadError> {
        Self::from_files(crate::default_bundle::engine_files())
    }

    /// Replaces the bundle with the one in directory `path`. On any error the current bundle
    /// keeps serving, untouched.
    pub fn reload_from_dir(&self, path: impl AsRef<Path>) -> Result<(), LoadError> {
        self.reload_from_files(read_engine_files(path.as_ref())?)
    }

    /// Replaces the bundle with one held in memory. On any error the current bundle keeps
    /// serving, untouched.
    pub fn reload_from_files(
        &self,
        files: impl IntoIterator<Item = BundleFile>,
    ) -> Result<(), LoadError> {
        let bundle = Bundle::load(files.into_iter().collect())?;
        self.bundle.store(Arc::new(bundle));
        Ok(())
    }

    /// What the current bundle holds.
    pub fn info(&self) -> BundleInfo {
        self.bundle.load().info()
    }

    /// Decides one request.
    pub fn authorize(&self, request: &Request) -> Result<Decision, RequestError> {
        decide(&self.bundle.load(), request)
    }

    /// Decides many requests against the same bundle version, one result per request.
    pub fn authorize_batch(&self, requests: &[Request]) -> Vec<Result<Decision, RequestError>> {
        let bundle = self.bundle.load_full();
        requests.iter().map(|r| decide(&bundle, r)).collect()
    }

    /// Decides one request given as contract JSON, answering with decision JSON.
    pub fn authorize_json(&self, request: &str) -> Result<String, RequestError> {
        self.authorize_json_decision(request).map(|d| d.to_json())
    }

    /// Decides one request given as contract JSON, answering with a typed [`Decision`].
    pub fn authorize_json_decision(&self, request: &str) -> Result<Decision, RequestError> {
        let bundle = self.bundle.load();
        let request = Request::from_json(request, bundle.request_schema())?;
        decide(&bundle, &request)
    }

    /// Decides a JSON array of requests against the same bundle version. The answer is an array
    /// of the same length holding, in order, each decision or `{"error": {"kind", "code",
    /// "message"}}` for a request that could not be decided; a bad element does not affect the
    /// others. Only input that is not a JSON array fails as a whole.
    pub fn authorize_json_batch(&self, requests: &str) -> Result<String, RequestError> {
        let items: Vec<&RawValue> = serde_json::from_str(requests).map_err(|e| {
            RequestError::Malformed(format!("expected a JSON array of requests: {e}"))
        })?;
        let bundle = self.bundle.load_full();
        let answers: Vec<Answer> = items
            .into_iter()
            .map(|item| {
                Request::from_json(item.get(), bundle.request_schema())
                    .and_then(|r| decide(&bundle, &r))
                    .into()
            })
            .collect();
        Ok(serde_json::to_string(&answers).unwrap_or_default())
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

fn decide(bundle: &Bundle, request: &Request) -> Result<Decision, RequestError> {
    let Some(principal) = &request.principal else {
        return match request.token {
            Some(_) => Ok(untrusted_token()),
            None => Err(RequestError::Malformed(
                "missing `principal` (it may only be left out when a `token` is given)".into(),
            )),
        };
    };
    if request.token.is_some() {
        // Fail closed: a token this bundle cannot verify never vouches for anything.
        return Ok(untrusted_token());
    }
    let schema = bundle.request_schema();
    let cedar_request = cedar_policy::Request::new(
        principal.clone(),
        request.action.clone(),
        request.resource.clone(),
        request.context.clone(),
        schema,
    )
    .map_err(|e| match e {
        RequestValidationError::InvalidContext(_) | RequestValidationError::TypeOfContext(_) => {
            RequestError::context(&e)
        }
        e => RequestError::invalid(&e),
    })?;
    let ast_request: &ast::Request = cedar_request.as_ref();
    let (p, a, r): (&EntityUID, &EntityUID, &EntityUID) = (
        principal.as_ref(),
        request.action.as_ref(),
        request.resource.as_ref(),
    );

    let hierarchy_may_change = request
        .entities
        .iter()
        .any(|e| e.as_ref().uid().entity_type().is_action());
    let layered;
    let store = if request.entities.is_empty() {
        bundle.entities.store()
    } else {
        let mut seeds = vec![p.clone(), a.clone(), r.clone()];
        if let Some(ast::Context::Value(context)) = ast_request.context() {
            context
                .values()
                .for_each(|v| push_value_references(v, &mut seeds));
        }
        seeds.extend_from_slice(bundle.index.literals(a, hierarchy_may_change));
        let own = request
            .entities
            .iter()
            .map(|e| Arc::new(e.as_ref().clone()))
            .collect();
        layered = bundle.entities.layered(seeds, own, schema)?;
        &layered
    };
    let policies = bundle.index.select(p, a, r, store, hierarchy_may_change);
    Ok(evaluate(ast_request.clone(), store, &policies))
}

/// Cedar's authorization over `policies`: deny if any forbid holds (its forbids are the
/// reasons), else allow if any permit holds (its permits are the reasons), else deny. A policy
/// whose evaluation errors is skipped and its error reported.
fn evaluate(
    request: ast::Request,
    store: &cedar_policy_core::entities::Entities,
    policies: &[&ast::Policy],
) -> Decision {
    let evaluator = Evaluator::new(request, store, Extensions::all_available());
    let mut permits = Vec::new();
    let mut forbids = Vec::new();
    let mut errors = Vec::new();
    for policy in policies {
        match evaluator.evaluate(policy) {
            Ok(true) => match policy.effect() {
                PolicyEffect::Permit => permits.push(policy.id().to_string()),
                PolicyEffect::Forbid => forbids.push(policy.id().to_string()),
            },
            Ok(false) => {}
            Err(e) => errors.push(DecisionError {
                kind: DecisionErrorKind::PolicyEvaluation,
                policy: Some(policy.id().to_string()),
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

fn untrusted_token() -> Decision {
    Decision::denied_by(DecisionError {
        kind: DecisionErrorKind::UnknownIssuer,
        policy: None,
        message: "this bundle has no token configuration, so no token is trusted".into(),
    })
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
