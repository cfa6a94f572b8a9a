//! Explain: for one request, every policy whose scope matched it, and whether its conditions
//! were satisfied, not satisfied (and which condition was false) or errored (which condition,
//! and the error). The decision is the one `authorize` gives; the explanation is Cedar's own
//! evaluator run over each condition of each policy in the same entity store.

use std::fmt::Write as _;

use cedar_policy_core::ast::{self, Effect as PolicyEffect, ExprKind, Literal, ValueKind};
use cedar_policy_core::entities::Entities;
use cedar_policy_core::evaluator::Evaluator;
use cedar_policy_core::extensions::Extensions;
use serde::Serialize;

use crate::evaluation::index::IndexedPolicy;
use crate::wire::decision::{Decision, Effect};
use crate::wire::error::one_line;

/// A decision and the policies behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The decision, as `authorize` gives it.
    #[serde(flatten)]
    pub decision: Decision,
    /// Every policy whose scope matched the request, in policy id order. Empty when the
    /// request was denied before any policy ran (a token that did not verify).
    pub policies: Vec<PolicyExplanation>,
}

/// How one policy fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyExplanation {
    /// The policy id.
    pub id: String,
    /// `permit` or `forbid`.
    pub effect: &'static str,
    /// What its conditions came to.
    pub outcome: Outcome,
    /// The condition that was false or errored (Cedar syntax); `None` when satisfied.
    pub condition: Option<String>,
    /// The evaluation error, when it errored.
    pub error: Option<String>,
}

/// What a policy's conditions came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every condition held: the policy counts toward the decision.
    Satisfied,
    /// A condition was false.
    NotSatisfied,
    /// A condition could not be evaluated: the policy was skipped (Cedar's semantics).
    Errored,
}

impl Explanation {
    /// The explanation as JSON: the decision's fields plus `policies`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The explanation for a person: the decision and what determined it, then one line per
    /// policy.
    pub fn to_text(&self) -> String {
        let d = &self.decision;
        let mut out = match (d.decision, d.reasons.is_empty()) {
            (Effect::Allow, _) => format!("ALLOW by {}\n", d.reasons.join(", ")),
            (Effect::Deny, false) => format!("DENY by {}\n", d.reasons.join(", ")),
            (Effect::Deny, true) => "DENY: no permit was satisfied\n".to_owned(),
        };
        for e in &d.errors {
            let policy = e
                .policy
                .as_deref()
                .map(|p| format!(" in {p}"))
                .unwrap_or_default();
            let _ = writeln!(out, "  error{policy}: {} ({})", e.message, e.kind.as_str());
        }
        let width = self.policies.iter().map(|p| p.id.len()).max().unwrap_or(0);
        for p in &self.policies {
            let condition = p.condition.as_deref().unwrap_or_default();
            let outcome = match p.outcome {
                Outcome::Satisfied => "satisfied".to_owned(),
                // An `unless` clause fails when what it names is true.
                Outcome::NotSatisfied if condition.starts_with("unless") => {
                    format!("not satisfied: the condition of `{condition}` is true")
                }
                Outcome::NotSatisfied => format!("not satisfied: `{condition}` is false"),
                Outcome::Errored => format!(
                    "errored: `{condition}`: {}",
                    p.error.as_deref().unwrap_or_default()
                ),
            };
            let _ = writeln!(out, "  {:<6} {:<width$}  {outcome}", p.effect, p.id);
        }
        out
    }
}

/// Explains `policies` (the candidates the index chose) for `request` over `store`.
pub(crate) fn explain_policies(
    request: &ast::Request,
    store: &Entities,
    policies: &[(&IndexedPolicy, &ast::Expr)],
) -> Vec<PolicyExplanation> {
    let evaluator = Evaluator::new(request.clone(), store, Extensions::all_available());
    let mut out: Vec<PolicyExplanation> = policies
        .iter()
        .filter_map(|(indexed, _)| explain_one(&evaluator, indexed))
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// `None` when the policy's scope does not match the request.
fn explain_one(evaluator: &Evaluator<'_>, indexed: &IndexedPolicy) -> Option<PolicyExplanation> {
    let policy = indexed.policy.as_ref();
    let holds = |expr: &ast::Expr| match evaluator.interpret(expr, policy.env()) {
        Ok(value) => match value.value_kind() {
            ValueKind::Lit(Literal::Bool(b)) => Ok(*b),
            _ => Err(format!("`{expr}` is not a boolean")),
        },
        Err(e) => Err(one_line(&e.to_string())),
    };
    let scope = [
        policy.principal_constraint().as_expr(),
        policy.action_constraint().as_expr(),
        policy.resource_constraint().as_expr(),
    ];
    if !scope.iter().all(|c| holds(c) == Ok(true)) {
        return None;
    }
    let mut conditions = Vec::new();
    if let Some(expr) = policy.non_scope_constraints() {
        conjuncts(expr, &mut conditions);
    }
    let mut explanation = PolicyExplanation {
        id: indexed.id.clone(),
        effect: match policy.effect() {
            PolicyEffect::Permit => "permit",
            PolicyEffect::Forbid => "forbid",
        },
        outcome: Outcome::Satisfied,
        condition: None,
        error: None,
    };
    // Cedar evaluates a conjunction left to right and stops at the first false or error.
    for condition in conditions {
        match holds(condition) {
            Ok(true) => continue,
            Ok(false) => explanation.outcome = Outcome::NotSatisfied,
            Err(e) => {
                explanation.outcome = Outcome::Errored;
                explanation.error = Some(e);
            }
        }
        // As written in the policy when the source is at hand, else as Cedar prints it.
        let text = condition
            .source_loc()
            .and_then(|loc| loc.snippet())
            .map_or_else(|| condition.to_string(), str::to_owned);
        explanation.condition = Some(one_line(&text));
        break;
    }
    Some(explanation)
}

/// The operands of a conjunction `a && b && ...`, left to right (`when` clauses and the
/// negated `unless` clauses of a policy are one conjunction).
fn conjuncts<'e>(expr: &'e ast::Expr, out: &mut Vec<&'e ast::Expr>) {
    match expr.expr_kind() {
        ExprKind::And { left, right } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        // `true` is what an absent clause becomes.
        ExprKind::Lit(Literal::Bool(true)) => {}
        _ => out.push(expr),
    }
}
