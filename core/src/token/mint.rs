//! Minting short-lived JWTs with key rotation: one active signing key, retired keys whose
//! public halves stay in the JWKS so that tokens they signed keep verifying until they expire.

use aws_lc_rs::rand;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

/// Why a key or a token could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MintError(String);

/// A signing key: an id, an algorithm, and the private key (or HMAC secret).
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    public: Option<Jwk>,
}

impl SigningKey {
    /// A key from a PEM private key (PKCS#8, or PKCS#1 for RSA) for `alg` (RS*, PS*, ES*, EdDSA).
    pub fn from_pem(kid: impl Into<String>, alg: &str, pem: &[u8]) -> Result<Self, MintError> {
        let alg = super::jwt::algorithm(alg, super::jwt::FIPS).map_err(MintError)?;
        let key = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => EncodingKey::from_rsa_pem(pem),
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => {
                return Err(MintError(format!(
                    "{alg:?} takes an HMAC secret, not a PEM key"
                )))
            }
        }
        .map_err(|e| MintError(format!("cannot read the private key: {e}")))?;
        let kid = kid.into();
        let mut public = Jwk::from_encoding_key(&key, alg)
            .map_err(|e| MintError(format!("cannot derive the public key: {e}")))?;
        public.common.key_id = Some(kid.clone());
        Ok(Self {
            kid,
            alg,
            key,
            public: Some(public),
        })
    }

    /// An HMAC key (HS256/384/512); it has no public half, so it never appears in a JWKS.
    pub fn from_hmac_secret(
        kid: impl Into<String>,
        alg: &str,
        secret: &[u8],
    ) -> Result<Self, MintError> {
        let alg = super::jwt::algorithm(alg, super::jwt::FIPS).map_err(MintError)?;
        super::jwt::hmac_keys(secret, &[alg]).map_err(MintError)?;
        Ok(Self {
            kid: kid.into(),
            alg,
            key: EncodingKey::from_secret(secret).map_err(|e| MintError(e.to_string()))?,
            public: None,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// Mints tokens for one issuer.
pub struct Minter {
    issuer: String,
    active: SigningKey,
    retired: Vec<SigningKey>,
}

impl Minter {
    /// A minter signing with `active`.
    pub fn new(issuer: impl Into<String>, active: SigningKey) -> Self {
        Self {
            issuer: issuer.into(),
            active,
            retired: Vec::new(),
        }
    }

    /// Makes `next` the active key; the previous one is retired (it signs nothing more, and its
    /// public key stays in the JWKS until [`Minter::drop_retired`]).
    pub fn rotate(&mut self, next: SigningKey) {
        let previous = std::mem::replace(&mut self.active, next);
        self.retired.push(previous);
    }

    /// Adds a retired key: it signs nothing, and its public key is listed in the JWKS (a key
    /// from before a restart, say).
    pub fn add_retired(&mut self, key: SigningKey) {
        self.retired.push(key);
    }

    /// Forgets a retired key, once every token it signed has expired.
    pub fn drop_retired(&mut self, kid: &str) {
        self.retired.retain(|k| k.kid != kid);
    }

    /// The active key's id.
    pub fn active_kid(&self) -> &str {
        &self.active.kid
    }

    /// Signs `claims` with the active key, adding `iss`, `iat`, `nbf`, `exp` (`now` + `ttl`)
    /// and a random `jti` unless `claims` sets them.
    pub fn mint(
        &self,
        mut claims: Map<String, Value>,
        ttl_seconds: u64,
        now: i64,
    ) -> Result<String, MintError> {
        let mut jti = [0u8; 16];
        rand::fill(&mut jti).map_err(|_| MintError("the system random source failed".into()))?;
        let exp = now.saturating_add(i64::try_from(ttl_seconds).unwrap_or(i64::MAX));
        let defaults = [
            ("iss", Value::from(self.issuer.clone())),
            ("iat", Value::from(now)),
            ("nbf", Value::from(now)),
            ("exp", Value::from(exp)),
            ("jti", Value::from(URL_SAFE_NO_PAD.encode(jti))),
        ];
        for (name, value) in defaults {
            claims.entry(name).or_insert(value);
        }
        let mut header = Header::new(self.active.alg);
        header.kid = Some(self.active.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.active.key)
            .map_err(|e| MintError(format!("cannot sign: {e}")))
    }

    /// The public keys of the active and retired keys, for verifiers (`jwks` in `tokens.json`).
    pub fn jwks(&self) -> Value {
        let keys: Vec<Jwk> = std::iter::once(&self.active)
            .chain(&self.retired)
            .filter_map(|k| k.public.clone())
            .collect();
        serde_json::to_value(JwkSet { keys }).unwrap_or(Value::Null)
    }
}
