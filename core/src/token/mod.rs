//! Tokens: JWTs, macaroons and Gitaly's HMAC tokens, verified against a bundle's `tokens.json`
//! and mapped to the request's principal.
//!
//! A token is verified once (then served from a cache keyed by its SHA-256 until it expires or
//! the bundle is reloaded); what depends on the request (a macaroon's action and resource
//! caveats) is checked on every use. Any failure is a deny carrying one of the contract's error
//! kinds; it is never cached.
//!
//! Long: the verifiers' shared parts (errors, the verified token, principals, secrets, the
//! dispatch by token shape) are what makes them one verifier.

mod cache;
mod caveat;
mod claims;
pub(crate) mod config;
mod gitaly;
pub(crate) mod jwt;
pub mod macaroon;
pub mod mint;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::bundle::BundleFile;
use crate::wire::decision::{DecisionError, DecisionErrorKind};
use crate::wire::error::{LoadError, Problem};
use cache::Cache;
pub(crate) use caveat::Caveat;
use config::{ClaimType, PrincipalConfig, SecretEncoding, TokenLimits, TokensConfig};

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    /// One of the contract's token error kinds.
    pub kind: DecisionErrorKind,
    /// One line; never contains the token or a secret.
    pub message: String,
}

impl TokenError {
    pub(crate) fn new(kind: DecisionErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Self::new(DecisionErrorKind::Malformed, message)
    }

    pub(crate) fn invalid_claim(message: impl Into<String>) -> Self {
        Self::new(DecisionErrorKind::InvalidClaim, message)
    }

    pub(crate) fn into_decision_error(self) -> DecisionError {
        DecisionError {
            kind: self.kind,
            policy: None,
            message: self.message,
        }
    }
}

/// A verified token, as `arbiter token verify` shows it.
#[derive(Debug, Clone)]
pub struct TokenInfo(Arc<Verified>);

impl TokenInfo {
    pub(crate) fn new(verified: Arc<Verified>) -> Self {
        Self(verified)
    }

    /// `jwt`, `macaroon` or `gitaly`.
    pub fn kind(&self) -> &'static str {
        self.0.kind.name()
    }

    /// The principal the token names.
    pub fn principal(&self) -> &EntityUid {
        &self.0.principal.uid
    }

    /// The JWT's claims; a macaroon's identifier, location and caveats; a Gitaly token's time.
    pub fn claims(&self) -> &Value {
        self.0.claims.get()
    }
}

/// What verifying a token reports, in every interface (`arbiter token verify`, the C ABI's
/// `arbiter_engine_verify_token`, each binding's `verify_token`): `{"valid": true, "kind",
/// "principal": {"type", "id"}, "claims"}` or `{"valid": false, "error": {"kind", "message"}}`.
/// Serialized as maps, so a binding's serde serializer gives String-keyed Hashes or dicts
/// directly.
#[derive(Debug, Clone, Copy)]
pub enum TokenReport<'a> {
    /// The token was accepted.
    Valid(&'a TokenInfo),
    /// The token was refused, and why.
    Invalid(&'a TokenError),
}

impl<'a> From<&'a Result<TokenInfo, TokenError>> for TokenReport<'a> {
    fn from(verified: &'a Result<TokenInfo, TokenError>) -> Self {
        match verified {
            Ok(info) => Self::Valid(info),
            Err(e) => Self::Invalid(e),
        }
    }
}

impl TokenReport<'_> {
    /// The report as a JSON value.
    pub fn to_json(self) -> Value {
        // Strings, booleans and a JSON value under string keys always serialize.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Serialize for TokenReport<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// A two-entry map of strings: the principal, or the error.
        struct Pair<'a>([(&'static str, &'a str); 2]);
        impl Serialize for Pair<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0)
            }
        }
        match self {
            Self::Valid(info) => {
                let uid = info.principal();
                let type_name = uid.type_name().to_string();
                let id = uid.id().unescaped();
                let mut map = serializer.serialize_map(Some(4))?;
                map.serialize_entry("valid", &true)?;
                map.serialize_entry("kind", info.kind())?;
                map.serialize_entry("principal", &Pair([("type", &type_name), ("id", id)]))?;
                map.serialize_entry("claims", info.claims())?;
                map.end()
            }
            Self::Invalid(e) => {
                let error = Pair([("kind", e.kind.as_str()), ("message", &e.message)]);
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("valid", &false)?;
                map.serialize_entry("error", &error)?;
                map.end()
            }
        }
    }
}

/// Which verifier accepted a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum VerifiedKind {
    Jwt,
    Macaroon,
    Gitaly,
}

impl VerifiedKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::Macaroon => "macaroon",
            Self::Gitaly => "gitaly",
        }
    }
}

/// The principal a token names, and the entity built for it from claims, if configured.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub(crate) uid: EntityUid,
    pub(crate) entity: Option<Entity>,
}

/// A verified token: what it vouches for and when.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) kind: VerifiedKind,
    pub(crate) principal: Principal,
    /// `context.token`, when the issuer exposes claims to policies.
    pub(crate) context: Option<HashMap<String, RestrictedExpression>>,
    /// First second the token is valid (inclusive), leeway applied.
    pub(crate) valid_from: Option<i64>,
    /// First second the token is no longer valid, leeway applied.
    pub(crate) valid_until: Option<i64>,
    /// Macaroon caveats that depend on the request.
    pub(crate) caveats: Vec<Caveat>,
    /// The JWT's `jti` or the macaroon's identifier, checked against the revocation lists.
    pub(crate) token_id: Option<String>,
    /// What `arbiter token verify` prints as `claims`.
    pub(crate) claims: ClaimsJson,
}

/// The claims `arbiter token verify` shows: built at verification (macaroons, Gitaly tokens),
/// or a JWT's payload, parsed only when asked for.
#[derive(Debug)]
pub(crate) enum ClaimsJson {
    Value(Value),
    Payload(Box<[u8]>, std::sync::OnceLock<Value>),
}

impl ClaimsJson {
    fn get(&self) -> &Value {
        match self {
            Self::Value(value) => value,
            Self::Payload(payload, parsed) => parsed.get_or_init(|| {
                // The payload was checked to be a JSON object at verification; only nesting
                // beyond the parser's depth bound can fail here.
                serde_json::from_slice(payload).unwrap_or_else(
                    |_| serde_json::json!({"error": "the claims nest too deeply to show"}),
                )
            }),
        }
    }
}

impl Verified {
    pub(crate) fn check_time(&self, now: i64) -> Result<(), TokenError> {
        if let Some(until) = self.valid_until {
            if now >= until {
                return Err(TokenError::new(
                    DecisionErrorKind::Expired,
                    "the token has expired",
                ));
            }
        }
        if let Some(from) = self.valid_from {
            if now < from {
                return Err(TokenError::new(
                    DecisionErrorKind::NotYetValid,
                    "the token is not valid yet",
                ));
            }
        }
        Ok(())
    }

    /// Checks what depends on the request: a macaroon's action and resource caveats.
    pub(crate) fn check_request(
        &self,
        action: &EntityUid,
        resource: &EntityUid,
    ) -> Result<(), TokenError> {
        for caveat in &self.caveats {
            caveat.check(action, resource)?;
        }
        Ok(())
    }
}

/// How a verifier maps a token to its principal (from `principal` in `tokens.json`).
#[derive(Debug, Clone)]
pub(crate) struct PrincipalMap {
    entity_type: EntityTypeName,
    fixed_id: Option<String>,
    id_claim: Option<String>,
    id_prefix: Option<String>,
    id_caveat: Option<String>,
    attributes: BTreeMap<String, AttributeSpec>,
}

#[derive(Debug, Clone)]
struct AttributeSpec {
    claim: String,
    as_type: ClaimType,
    entity_type: Option<EntityTypeName>,
    prefix: Option<String>,
}

impl PrincipalMap {
    fn new(config: &PrincipalConfig) -> Result<Self, String> {
        let entity_type = |name: &str| {
            EntityTypeName::from_str(name)
                .map_err(|_| format!("`{name}` is not an entity type name"))
        };
        let mut attributes = BTreeMap::new();
        for (name, spec) in &config.attributes {
            if spec.as_type == ClaimType::Entity && spec.entity_type.is_none() {
                return Err(format!(
                    "attribute `{name}` is read as an entity but has no `entity_type`"
                ));
            }
            attributes.insert(
                name.clone(),
                AttributeSpec {
                    claim: spec.claim.clone(),
                    as_type: spec.as_type,
                    entity_type: spec.entity_type.as_deref().map(entity_type).transpose()?,
                    prefix: spec.prefix.clone(),
                },
            );
        }
        Ok(Self {
            entity_type: entity_type(&config.entity_type)?,
            fixed_id: config.id.clone(),
            id_claim: config.id_claim.clone(),
            id_prefix: config.id_prefix.clone(),
            id_caveat: config.id_caveat.clone(),
            attributes,
        })
    }

    fn principal(
        &self,
        id: String,
        attributes: HashMap<String, RestrictedExpression>,
    ) -> Result<Principal, TokenError> {
        let uid = EntityUid::from_type_name_and_id(self.entity_type.clone(), EntityId::new(id));
        let entity = if self.attributes.is_empty() {
            None
        } else {
            Some(
                Entity::new(uid.clone(), attributes, HashSet::new()).map_err(|_| {
                    TokenError::invalid_claim("the principal's attributes cannot be built")
                })?,
            )
        };
        Ok(Principal { uid, entity })
    }
}

/// A bundle's token verifiers.
pub(crate) struct Tokens {
    jwt: Option<jwt::Jwt>,
    macaroon: Option<macaroon::Macaroons>,
    gitaly: Option<gitaly::Gitaly>,
    cache: Cache,
    limits: TokenLimits,
    revoked: HashSet<(VerifiedKind, String)>,
}

/// Loads the secret a file or environment variable holds. An unset variable is no secret: the
/// verifier that needs it then accepts no token (`unknown_key`).
fn secret(
    files: &[BundleFile],
    file: Option<&str>,
    env: Option<&str>,
    encoding: SecretEncoding,
) -> Result<Option<Vec<u8>>, String> {
    let bytes = match (file, env) {
        (Some(_), Some(_)) => {
            return Err("give a secret file or an environment variable, not both".into())
        }
        (Some(path), None) => files
            .iter()
            .find(|f| f.path == path)
            .map(|f| f.contents.clone())
            .ok_or_else(|| format!("secret file `{path}` is not in the bundle"))?,
        (None, Some(var)) => match std::env::var_os(var) {
            Some(value) => value.into_encoded_bytes(),
            None => return Ok(None),
        },
        (None, None) => return Ok(None),
    };
    decode_secret(bytes, encoding).map(Some)
}

/// A secret's bytes: `raw` is exactly what the file or variable holds; `base64` is text,
/// surrounding whitespace (a final newline) ignored. A raw secret that is text ending in a
/// newline is refused: it was written by an editor or `echo`, and the newline would silently be
/// part of the key (random bytes are not text, so they may end in a newline byte).
fn decode_secret(bytes: Vec<u8>, encoding: SecretEncoding) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let bytes = match encoding {
        SecretEncoding::Raw if bytes.ends_with(b"\n") && std::str::from_utf8(&bytes).is_ok() => {
            return Err(
                "the raw secret is text ending in a newline, which would be part of \
                        the key: write it without one (`printf`), or give it as `base64`"
                    .into(),
            )
        }
        SecretEncoding::Raw => bytes,
        SecretEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(bytes.trim_ascii())
            .map_err(|_| "the secret is not valid base64".to_owned())?,
    };
    if bytes.is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(bytes)
}

impl Tokens {
    /// Builds the verifiers `tokens.json` describes, reading keys from the bundle's files and
    /// the environment.
    pub(crate) fn load(file: &BundleFile, files: &[BundleFile]) -> Result<Self, LoadError> {
        let config: TokensConfig = crate::bundle::parse_json(file).map_err(LoadError::Tokens)?;
        let problem =
            |message: String| LoadError::Tokens(vec![Problem::in_file(&file.path, message)]);
        let jwt = match &config.jwt {
            None => None,
            Some(jwt) => {
                let mut issuers = Vec::new();
                for (n, issuer) in jwt.issuers.iter().enumerate() {
                    let at =
                        |m: String| problem(format!("jwt.issuers[{n}] (`{}`): {m}", issuer.issuer));
                    issuers.push(load_issuer(issuer, files).map_err(at)?);
                }
                Some(jwt::Jwt { issuers })
            }
        };
        let macaroon = config
            .macaroon
            .as_ref()
            .map(|m| macaroon::Macaroons::load(m, files))
            .transpose()
            .map_err(|m| problem(format!("macaroon: {m}")))?;
        let gitaly = config
            .gitaly
            .as_ref()
            .map(|g| gitaly::Gitaly::load(g, files))
            .transpose()
            .map_err(|m| problem(format!("gitaly: {m}")))?;
        Ok(Self {
            jwt,
            macaroon,
            gitaly,
            cache: Cache::new(config.cache.max_entries, config.cache.max_ttl_seconds),
            limits: config.limits,
            revoked: config
                .revoked
                .jwt_ids
                .into_iter()
                .map(|id| (VerifiedKind::Jwt, id))
                .chain(
                    config
                        .revoked
                        .macaroon_identifiers
                        .into_iter()
                        .map(|id| (VerifiedKind::Macaroon, id)),
                )
                .collect(),
        })
    }

    /// Verifies `token` at time `now` (Unix seconds).
    pub(crate) fn verify(&self, token: &str, now: i64) -> Result<Arc<Verified>, TokenError> {
        if token.len() > self.limits.max_token_bytes {
            return Err(TokenError::new(
                DecisionErrorKind::TooLarge,
                format!(
                    "the token is {} bytes; at most {} are accepted",
                    token.len(),
                    self.limits.max_token_bytes
                ),
            ));
        }
        if token.is_empty() {
            return Err(TokenError::malformed("the token is empty"));
        }
        if !self.cache.enabled() {
            return self.verify_uncached(token, now).map(Arc::new);
        }
        let key = Cache::key(token);
        if let Some(hit) = self.cache.get(&key, now) {
            hit.check_time(now)?;
            return Ok(hit);
        }
        let verified = Arc::new(self.verify_uncached(token, now)?);
        self.cache.insert(key, Arc::clone(&verified), now);
        Ok(verified)
    }

    fn verify_uncached(&self, token: &str, now: i64) -> Result<Verified, TokenError> {
        let verified = self.verify_signature_and_claims(token, now)?;
        if let Some(id) = &verified.token_id {
            if self.revoked.contains(&(verified.kind, id.clone())) {
                return Err(TokenError::new(
                    DecisionErrorKind::Revoked,
                    "the token has been revoked",
                ));
            }
        }
        Ok(verified)
    }

    fn verify_signature_and_claims(&self, token: &str, now: i64) -> Result<Verified, TokenError> {
        if let (Some(gitaly), Some(rest)) = (&self.gitaly, token.strip_prefix("v2.")) {
            return gitaly.verify(rest, now);
        }
        // JSON (a V2 JSON macaroon, or a root macaroon with its discharges) is never a JWT.
        let json = token.starts_with('{') || token.starts_with('[');
        if let (Some(jwt), false) = (&self.jwt, json) {
            for issuer in &jwt.issuers {
                if let Some(prefix) = &issuer.prefix {
                    if let Some(rest) = token.strip_prefix(prefix.as_str()) {
                        return jwt.verify(rest, Some(prefix), now);
                    }
                }
            }
            if token.matches('.').count() == 2 {
                return jwt.verify(token, None, now);
            }
        }
        if let Some(macaroons) = &self.macaroon {
            return macaroons.verify(token, &self.limits, now);
        }
        Err(TokenError::new(
            DecisionErrorKind::UnknownIssuer,
            "no verifier of this bundle accepts tokens of this form",
        ))
    }
}

fn load_issuer(config: &config::IssuerConfig, files: &[BundleFile]) -> Result<jwt::Issuer, String> {
    if config.algorithms.is_empty() {
        return Err("`algorithms` is empty".into());
    }
    let algorithms = config
        .algorithms
        .iter()
        .map(|a| jwt::algorithm(a, jwt::FIPS))
        .collect::<Result<Vec<_>, _>>()?;
    let source = &config.keys;
    let jwks_sources = [
        source.jwks.is_some(),
        source.jwks_file.is_some(),
        source.jwks_env.is_some(),
    ];
    if jwks_sources.iter().filter(|s| **s).count() > 1 {
        return Err("give one of `jwks`, `jwks_file` and `jwks_env`".into());
    }
    let jwks: Option<Value> = match (&source.jwks, &source.jwks_file, &source.jwks_env) {
        (Some(inline), _, _) => Some(inline.clone()),
        (_, Some(path), _) => {
            let file = files
                .iter()
                .find(|f| &f.path == path)
                .ok_or_else(|| format!("key file `{path}` is not in the bundle"))?;
            let text = file.text().map_err(|p| p.message)?;
            crate::wire::json::unique_keys(text).map_err(|e| format!("`{path}`: {e}"))?;
            Some(serde_json::from_str(text).map_err(|e| format!("`{path}` is not JSON: {e}"))?)
        }
        (_, _, Some(var)) => match std::env::var(var) {
            Ok(text) => {
                crate::wire::json::unique_keys(&text).map_err(|e| format!("${var}: {e}"))?;
                Some(serde_json::from_str(&text).map_err(|e| format!("${var} is not JSON: {e}"))?)
            }
            Err(_) => None,
        },
        _ => None,
    };
    let mut keys = Vec::new();
    if let Some(jwks) = jwks {
        let list = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("a JWKS is an object with a `keys` array")?;
        for (n, jwk) in list.iter().enumerate() {
            keys.push(
                jwt::bind_jwk(jwk, &algorithms, jwt::FIPS)
                    .map_err(|e| format!("keys[{n}]: {e}"))?,
            );
        }
    }
    if let Some(secret) = secret(
        files,
        source.hmac_secret_file.as_deref(),
        source.hmac_secret_env.as_deref(),
        source.secret_encoding,
    )? {
        keys.extend(jwt::hmac_keys(&secret, &algorithms)?);
    }
    for key in &keys {
        if !algorithms.contains(&key.alg) {
            return Err(format!(
                "a key is bound to {:?}, which the issuer does not allow",
                key.alg
            ));
        }
    }
    let principal = PrincipalMap::new(&config.principal)?;
    if principal.id_caveat.is_some() {
        return Err("`id_caveat` is for macaroons; a JWT issuer uses `id_claim`".into());
    }
    Ok(jwt::Issuer::new(config, keys, principal, algorithms))
}
