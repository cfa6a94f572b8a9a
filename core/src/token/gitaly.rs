//! Gitaly's v2 HMAC auth token: `v2.<hex HMAC-SHA256(secret, timestamp)>.<timestamp>`, where
//! the timestamp is in Unix seconds and must be within `max_skew_seconds` of now.

use aws_lc_rs::{constant_time, hmac};
use serde_json::json;

use super::config::GitalyConfig;
use super::{secret, ClaimsJson, PrincipalMap, TokenError, Verified, VerifiedKind};
use crate::bundle::BundleFile;
use crate::wire::decision::DecisionErrorKind;

pub(crate) struct Gitaly {
    key: Option<hmac::Key>,
    skew: i64,
    principal: PrincipalMap,
}

impl Gitaly {
    pub(crate) fn load(config: &GitalyConfig, files: &[BundleFile]) -> Result<Self, String> {
        let key = secret(
            files,
            config.secret_file.as_deref(),
            config.secret_env.as_deref(),
            config.secret_encoding,
        )?
        .map(|s| hmac::Key::new(hmac::HMAC_SHA256, &s));
        let principal = PrincipalMap::new(&config.principal)?;
        if principal.fixed_id.is_none() {
            return Err("a Gitaly token names no user: give the principal a fixed `id`".into());
        }
        Ok(Self {
            key,
            skew: i64::try_from(config.max_skew_seconds).unwrap_or(i64::MAX),
            principal,
        })
    }

    /// Verifies the part after `v2.`.
    pub(crate) fn verify(&self, rest: &str, now: i64) -> Result<Verified, TokenError> {
        let (mac, timestamp) = rest
            .split_once('.')
            .ok_or_else(|| TokenError::malformed("a Gitaly v2 token is `v2.<hmac>.<timestamp>`"))?;
        let mac = hex::decode(mac)
            .ok()
            .filter(|m| m.len() == 32)
            .ok_or_else(|| TokenError::malformed("the Gitaly token's HMAC is not 64 hex digits"))?;
        if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TokenError::malformed(
                "the Gitaly token's timestamp is not decimal seconds",
            ));
        }
        let issued: i64 = timestamp
            .parse()
            .map_err(|_| TokenError::malformed("the Gitaly token's timestamp is out of range"))?;
        let key = self.key.as_ref().ok_or_else(|| {
            TokenError::new(
                DecisionErrorKind::UnknownKey,
                "no Gitaly secret is configured",
            )
        })?;
        let expected = hmac::sign(key, timestamp.as_bytes());
        constant_time::verify_slices_are_equal(expected.as_ref(), &mac).map_err(|_| {
            TokenError::new(
                DecisionErrorKind::BadSignature,
                "the Gitaly token's HMAC does not verify",
            )
        })?;
        let verified = Verified {
            kind: VerifiedKind::Gitaly,
            token_id: None,
            principal: self.principal.principal(
                self.principal.fixed_id.clone().unwrap_or_default(),
                Default::default(),
            )?,
            context: None,
            valid_from: Some(issued.saturating_sub(self.skew)),
            valid_until: Some(issued.saturating_add(self.skew).saturating_add(1)),
            caveats: Vec::new(),
            claims: ClaimsJson::Value(json!({"issued_at": issued})),
        };
        verified.check_time(now)?;
        Ok(verified)
    }
}
