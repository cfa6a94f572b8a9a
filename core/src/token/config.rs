//! `tokens.json`: how a bundle verifies tokens and maps them to principals.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokensConfig {
    #[serde(default)]
    pub(crate) jwt: Option<JwtConfig>,
    #[serde(default)]
    pub(crate) macaroon: Option<MacaroonConfig>,
    #[serde(default)]
    pub(crate) gitaly: Option<GitalyConfig>,
    #[serde(default)]
    pub(crate) cache: CacheConfig,
    #[serde(default)]
    pub(crate) limits: TokenLimits,
    #[serde(default)]
    pub(crate) revoked: Revoked,
}

/// Tokens refused although they verify (`revoked`): by JWT `jti` and by macaroon identifier.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Revoked {
    #[serde(default)]
    pub(crate) jwt_ids: Vec<String>,
    #[serde(default)]
    pub(crate) macaroon_identifiers: Vec<String>,
}

/// Limits checked before any parsing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenLimits {
    /// Longest token accepted, in bytes (default 8 KiB).
    #[serde(default = "default_max_token_bytes")]
    pub(crate) max_token_bytes: usize,
    /// Most first- and third-party caveats a macaroon may carry (default 64).
    #[serde(default = "default_max_caveats")]
    pub(crate) max_caveats: usize,
    /// Most discharge macaroons a request may bring (default 8).
    #[serde(default = "default_max_discharges")]
    pub(crate) max_discharges: usize,
}

fn default_max_token_bytes() -> usize {
    8 * 1024
}

fn default_max_caveats() -> usize {
    64
}

fn default_max_discharges() -> usize {
    8
}

impl Default for TokenLimits {
    fn default() -> Self {
        Self {
            max_token_bytes: default_max_token_bytes(),
            max_caveats: default_max_caveats(),
            max_discharges: default_max_discharges(),
        }
    }
}

/// The cache of verified tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheConfig {
    /// Entries kept at most (default 10,000; 0 turns the cache off).
    #[serde(default = "default_cache_entries")]
    pub(crate) max_entries: usize,
    /// Longest an entry lives, whatever the token's own expiry (default 300 s).
    #[serde(default = "default_cache_ttl")]
    pub(crate) max_ttl_seconds: u64,
}

fn default_cache_entries() -> usize {
    10_000
}

fn default_cache_ttl() -> u64 {
    300
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: default_cache_entries(),
            max_ttl_seconds: default_cache_ttl(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JwtConfig {
    pub(crate) issuers: Vec<IssuerConfig>,
}

/// Where a secret or a key set comes from. Files are relative to the bundle.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeySource {
    #[serde(default)]
    pub(crate) jwks: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) jwks_file: Option<String>,
    #[serde(default)]
    pub(crate) jwks_env: Option<String>,
    #[serde(default)]
    pub(crate) hmac_secret_file: Option<String>,
    #[serde(default)]
    pub(crate) hmac_secret_env: Option<String>,
    /// How a secret file or variable is encoded: `raw` (default: its bytes, exactly, a final
    /// newline included) or `base64` (text; surrounding whitespace is ignored).
    #[serde(default)]
    pub(crate) secret_encoding: SecretEncoding,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SecretEncoding {
    #[default]
    Raw,
    Base64,
}

/// One JWT issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssuerConfig {
    /// Compared exactly with the token's `iss`.
    pub(crate) issuer: String,
    /// Accepted audiences; when given, the token's `aud` must contain one of them exactly.
    #[serde(default)]
    pub(crate) audiences: Vec<String>,
    /// The only algorithms this issuer's tokens may use.
    pub(crate) algorithms: Vec<String>,
    #[serde(flatten)]
    pub(crate) keys: KeySource,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 0).
    #[serde(default)]
    pub(crate) leeway_seconds: u64,
    /// Claims that must be present (default `["exp"]`).
    #[serde(default = "default_required_claims")]
    pub(crate) required_claims: Vec<String>,
    /// When set, `iat` is required and may be at most this old.
    #[serde(default)]
    pub(crate) max_age_seconds: Option<u64>,
    /// Accepted `typ` header values (RFC 8725 explicit typing, e.g. `at+jwt`); when given, a
    /// token must carry one of them. Compared case-insensitively, `application/` optional.
    #[serde(default)]
    pub(crate) types: Vec<String>,
    /// A prefix the presented token carries before the JWT itself (e.g. `glcbt-`).
    #[serde(default)]
    pub(crate) token_prefix: Option<String>,
    pub(crate) principal: PrincipalConfig,
    /// Claims exposed to policies as `context.token`, by name and type.
    #[serde(default)]
    pub(crate) claims: BTreeMap<String, ClaimType>,
}

fn default_required_claims() -> Vec<String> {
    vec!["exp".to_owned()]
}

/// How a token names its principal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrincipalConfig {
    /// The principal's entity type, e.g. `Gitlab::User`.
    #[serde(rename = "type")]
    pub(crate) entity_type: String,
    /// JWT: the claim holding the principal's id (default `sub`).
    #[serde(default)]
    pub(crate) id_claim: Option<String>,
    /// A prefix the id claim must carry, removed to give the id.
    #[serde(default)]
    pub(crate) id_prefix: Option<String>,
    /// Macaroons: the caveat (`<name> = <id>`) holding the principal's id.
    #[serde(default)]
    pub(crate) id_caveat: Option<String>,
    /// A fixed id (for tokens that name a service rather than a user).
    #[serde(default)]
    pub(crate) id: Option<String>,
    /// JWT: attributes of the principal entity built from claims. When given, that entity is
    /// layered over the bundle's entities for the request, like a request entity.
    #[serde(default)]
    pub(crate) attributes: BTreeMap<String, AttributeFromClaim>,
}

/// A principal attribute taken from a claim.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttributeFromClaim {
    pub(crate) claim: String,
    /// How the claim is read; `entity` needs `entity_type`.
    #[serde(rename = "as")]
    pub(crate) as_type: ClaimType,
    #[serde(default)]
    pub(crate) entity_type: Option<String>,
    /// A prefix the claim must carry, removed before use (for `entity` and `string`).
    #[serde(default)]
    pub(crate) prefix: Option<String>,
}

/// How a claim's JSON value is read. A value of another type is an `invalid_claim` error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ClaimType {
    /// A JSON string.
    String,
    /// A JSON integer.
    Long,
    /// A JSON boolean.
    Bool,
    /// The JSON string `"true"` or `"false"`, read as a boolean.
    BoolString,
    /// A JSON string of decimal digits, read as an integer.
    LongString,
    /// A JSON string, or an array of strings, read as a set of strings.
    StringSet,
    /// A JSON string or integer naming an entity of `entity_type`.
    Entity,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MacaroonConfig {
    pub(crate) root_keys: Vec<RootKeyConfig>,
    pub(crate) principal: PrincipalConfig,
    /// Location accepted in macaroons (any when absent).
    #[serde(default)]
    pub(crate) location: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RootKeyConfig {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) secret_file: Option<String>,
    #[serde(default)]
    pub(crate) secret_env: Option<String>,
    #[serde(default)]
    pub(crate) secret_encoding: SecretEncoding,
}

/// Gitaly's v2 HMAC auth token: `v2.<hex HMAC-SHA256(secret, timestamp)>.<timestamp>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GitalyConfig {
    #[serde(default)]
    pub(crate) secret_file: Option<String>,
    #[serde(default)]
    pub(crate) secret_env: Option<String>,
    #[serde(default)]
    pub(crate) secret_encoding: SecretEncoding,
    /// How far the token's timestamp may be from now (default 30 s).
    #[serde(default = "default_gitaly_skew")]
    pub(crate) max_skew_seconds: u64,
    pub(crate) principal: PrincipalConfig,
}

fn default_gitaly_skew() -> u64 {
    30
}

impl TokensConfig {
    /// Bundle files this configuration refers to (key and secret files).
    pub(crate) fn referenced_files(&self) -> Vec<&str> {
        let mut files = Vec::new();
        if let Some(jwt) = &self.jwt {
            for issuer in &jwt.issuers {
                files.extend(issuer.keys.jwks_file.as_deref());
                files.extend(issuer.keys.hmac_secret_file.as_deref());
            }
        }
        if let Some(macaroon) = &self.macaroon {
            files.extend(
                macaroon
                    .root_keys
                    .iter()
                    .filter_map(|k| k.secret_file.as_deref()),
            );
        }
        if let Some(gitaly) = &self.gitaly {
            files.extend(gitaly.secret_file.as_deref());
        }
        files
    }
}
