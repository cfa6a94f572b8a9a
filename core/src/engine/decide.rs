//! The decision procedure: a request's token verified and its principal found, its entities
//! layered over the bundle's, the policies its scope can reach selected by the index and
//! evaluated (the fast evaluator first, Cedar's where it cannot vouch).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cedar_policy::{Context, RequestValidationError, RestrictedExpression};
use cedar_policy_core::ast::{
    self, Effect as PolicyEffect, EntityUID, Literal, PartialValue, ValueKind,
};
use cedar_policy_core::evaluator::Evaluator;
use cedar_policy_core::extensions::Extensions;
use smol_str::SmolStr;

use crate::bundle::entities::{push_value_references, validate_entity};
use crate::bundle::Bundle;
use crate::evaluation::eval;
use crate::evaluation::explain::{explain_policies, PolicyExplanation};
use crate::evaluation::index::IndexedPolicy;
use crate::token::{TokenError, Verified};
use crate::wire::decision::{Decision, DecisionError, DecisionErrorKind, Effect};
use crate::wire::error::{one_line, RequestError};
use crate::wire::request::Request;

/// What a decision leaves behind besides its answer, for whoever asks.
#[derive(Default)]
pub(super) struct Trace {
    /// When `Some`, filled with how each policy whose scope matched was evaluated.
    pub(super) explain: Option<Vec<PolicyExplanation>>,
    /// The request's token, once verified.
    pub(super) token: Option<Arc<Verified>>,
}

// Cedar's `RequestValidationError` is large; it is handled at once, never passed along.
#[allow(clippy::result_large_err)]
pub(super) fn decide_uncounted(
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
                None => Err(RequestError::validation(e)),
                Some(reread) => {
                    new_request(with_claims(reread?)?).map_err(RequestError::validation)
                }
            },
            Err(e) => Err(RequestError::validation(e)),
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
    let (store, fast_store) = if own.is_empty() {
        let statics = &bundle.entities;
        (statics.store(), eval::Store::Static(statics))
    } else {
        let mut seeds = vec![p.clone(), a.clone(), r.clone()];
        if let Some(ast::Context::Value(context)) = ast_request.context() {
            context
                .values()
                .for_each(|v| push_value_references(v, &mut seeds));
        }
        seeds.extend_from_slice(bundle.index.literals(a, hierarchy_may_change));
        layered = bundle.entities.layered(seeds, own)?;
        (&layered, eval::Store::Cedar(&layered))
    };
    let policies = bundle
        .index
        .select(p, a, r, fast_store, hierarchy_may_change);
    let decision = evaluate(ast_request, store, fast_store, &policies);
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

pub(super) fn verify_token(
    bundle: &Bundle,
    token: &str,
    now: i64,
) -> Result<Arc<Verified>, TokenError> {
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
    fast_store: eval::Store<'_>,
    policies: &[(&IndexedPolicy, &ast::Expr)],
) -> Decision {
    let vars = eval::Vars::new(request);
    let fast = vars
        .as_ref()
        .and_then(|vars| eval::Env::new(vars, request.context(), fast_store));
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
