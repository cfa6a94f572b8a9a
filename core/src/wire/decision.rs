//! What a decision says: allow or deny, the policies that determined it, and every error met.

use serde::{Deserialize, Serialize};

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The request is allowed.
    Allow,
    /// The request is denied (explicitly, by default, or because of an error).
    Deny,
}

impl Effect {
    /// The effect as the contract writes it: `"allow"` or `"deny"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// The kind of an error attached to a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionErrorKind {
    /// A policy's condition could not be evaluated; the policy was skipped (Cedar semantics).
    PolicyEvaluation,
    /// The token is not well-formed.
    Malformed,
    /// The token is larger than allowed.
    TooLarge,
    /// No configured issuer (or no token configuration at all) matches the token.
    UnknownIssuer,
    /// No key of the issuer matches the token.
    UnknownKey,
    /// The token's algorithm is not in the issuer's allow-list.
    AlgorithmNotAllowed,
    /// The signature does not verify.
    BadSignature,
    /// The token has expired.
    Expired,
    /// The token is not valid yet.
    NotYetValid,
    /// The token's audience is not accepted.
    AudienceMismatch,
    /// A required claim is missing.
    MissingClaim,
    /// A claim has the wrong type or value.
    InvalidClaim,
    /// A macaroon caveat does not hold for this request.
    CaveatNotSatisfied,
    /// The token has been revoked.
    Revoked,
    /// Arbiter failed inside (a caught panic): nothing was allowed.
    Internal,
}

impl DecisionErrorKind {
    /// Every kind, in declaration order (`kind as usize` indexes it).
    pub const ALL: [Self; 15] = [
        Self::PolicyEvaluation,
        Self::Malformed,
        Self::TooLarge,
        Self::UnknownIssuer,
        Self::UnknownKey,
        Self::AlgorithmNotAllowed,
        Self::BadSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::AudienceMismatch,
        Self::MissingClaim,
        Self::InvalidClaim,
        Self::CaveatNotSatisfied,
        Self::Revoked,
        Self::Internal,
    ];

    /// Whether this kind says why a token was refused.
    pub fn is_token_failure(self) -> bool {
        !matches!(self, Self::PolicyEvaluation | Self::Internal)
    }

    /// The kind as the contract writes it, e.g. `"policy_evaluation"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PolicyEvaluation => "policy_evaluation",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::UnknownIssuer => "unknown_issuer",
            Self::UnknownKey => "unknown_key",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::AudienceMismatch => "audience_mismatch",
            Self::MissingClaim => "missing_claim",
            Self::InvalidClaim => "invalid_claim",
            Self::CaveatNotSatisfied => "caveat_not_satisfied",
            Self::Revoked => "revoked",
            Self::Internal => "internal",
        }
    }
}

/// One error met while deciding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionError {
    /// What went wrong.
    pub kind: DecisionErrorKind,
    /// The policy whose evaluation failed, for `policy_evaluation` errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// One-line description.
    pub message: String,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Allow or deny.
    pub decision: Effect,
    /// Ids of the determining policies, sorted: the satisfied forbids of a deny, the satisfied
    /// permits of an allow, none for a default deny.
    pub reasons: Vec<String>,
    /// Every error met, sorted by policy id.
    pub errors: Vec<DecisionError>,
}

impl Decision {
    /// Whether the request is allowed.
    pub fn allowed(&self) -> bool {
        self.decision == Effect::Allow
    }

    /// A deny caused by `error`, with no determining policy.
    pub(crate) fn denied_by(error: DecisionError) -> Self {
        Self {
            decision: Effect::Deny,
            reasons: Vec::new(),
            errors: vec![error],
        }
    }

    /// The decision as contract JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            // Serializing plain strings and enums cannot fail; if it ever did, fail closed.
            r#"{"decision":"deny","reasons":[],"errors":[]}"#.to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_match_their_json() {
        for (i, kind) in DecisionErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
