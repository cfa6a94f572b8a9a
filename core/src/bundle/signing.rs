//! Signed bundles. `signature.json` at a bundle's root holds a manifest (the algorithm, the
//! signing key's id, when it was signed, and the SHA-256 digest of every file the engine loads)
//! and a signature over it, made with Ed25519 or ECDSA P-256 (SHA-256). An engine that trusts
//! keys refuses a bundle that is unsigned, signed by a key it does not trust, altered since
//! signing (a file changed, added or removed), or signed before the bundle it serves (a
//! rollback), and keeps the bundle it had. Key material a bundle reads from the environment
//! (`*_env` in `tokens.json`) is outside the signature.

use std::collections::BTreeMap;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING, ED25519,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::bundle::BundleFile;
use crate::wire::error::{LoadError, Problem};

/// The file at a bundle's root that holds its signature.
pub const SIGNATURE_FILE: &str = "signature.json";

const ED25519_NAME: &str = "Ed25519";
const P256_NAME: &str = "ES256";

/// What is signed: canonical JSON (fields in this order, files sorted by path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedManifest {
    algorithm: String,
    key_id: String,
    /// When it was signed (Unix seconds): an engine never goes back to an older bundle.
    signed_at: i64,
    /// Path relative to the bundle root -> lowercase hex SHA-256 of the file's bytes.
    files: BTreeMap<String, String>,
}

/// `signature.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    manifest: SignedManifest,
    /// Base64 of the signature over the manifest's canonical JSON.
    signature: String,
}

/// Why a key could not be read or a bundle signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SigningError(String);

enum PrivateKey {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

/// A private key that signs bundles.
pub struct BundleSigner {
    key: PrivateKey,
    /// The public key, SPKI DER.
    spki: Vec<u8>,
    key_id: String,
}

impl BundleSigner {
    /// An Ed25519 or ECDSA P-256 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &[u8]) -> Result<Self, SigningError> {
        let der = pem_contents(pem, "PRIVATE KEY")?;
        let key = Ed25519KeyPair::from_pkcs8(&der)
            .map(PrivateKey::Ed25519)
            .or_else(|_| {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
                    .map(PrivateKey::P256)
            })
            .map_err(|_| {
                SigningError("the private key is neither Ed25519 nor ECDSA P-256 (PKCS#8)".into())
            })?;
        let spki = match &key {
            PrivateKey::Ed25519(k) => k.public_key().as_der().map(|d| d.as_ref().to_vec()),
            PrivateKey::P256(k) => k.public_key().as_der().map(|d| d.as_ref().to_vec()),
        }
        .map_err(|_| SigningError("cannot encode the public key".into()))?;
        Ok(Self {
            key,
            key_id: key_id(&spki),
            spki,
        })
    }

    /// The public half, as SPKI PEM (`-----BEGIN PUBLIC KEY-----`): what engines trust.
    pub fn public_key_pem(&self) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", self.spki.clone()))
    }

    /// The key's id: the first 16 hex digits of the SHA-256 of its public key (SPKI DER).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs a bundle's files (a `signature.json` among them is left out) as of `signed_at`
    /// (Unix seconds) and returns the contents of its new `signature.json`.
    pub fn sign(&self, files: &[BundleFile], signed_at: i64) -> Result<String, SigningError> {
        if let Some(path) = duplicate(files) {
            return Err(SigningError(format!(
                "the bundle holds two files at `{path}`"
            )));
        }
        let manifest = SignedManifest {
            algorithm: match self.key {
                PrivateKey::Ed25519(_) => ED25519_NAME,
                PrivateKey::P256(_) => P256_NAME,
            }
            .to_owned(),
            key_id: self.key_id.clone(),
            signed_at,
            files: digests(files),
        };
        let message = canonical(&manifest);
        let signature = match &self.key {
            PrivateKey::Ed25519(k) => k.sign(&message).as_ref().to_vec(),
            PrivateKey::P256(k) => k
                .sign(&SystemRandom::new(), &message)
                .map_err(|_| SigningError("signing failed".into()))?
                .as_ref()
                .to_vec(),
        };
        let file = SignatureFile {
            manifest,
            signature: STANDARD.encode(signature),
        };
        serde_json::to_string_pretty(&file).map_err(|e| SigningError(e.to_string()))
    }
}

/// One trusted public key.
#[derive(Debug, Clone)]
struct TrustedKey {
    key_id: String,
    algorithm: &'static str,
    spki: Vec<u8>,
}

/// The public keys an engine trusts to sign its bundles, and the oldest signing time it
/// accepts.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
    not_before: Option<i64>,
}

impl TrustedKeys {
    /// Ed25519 or ECDSA P-256 public keys, each in SPKI PEM (`-----BEGIN PUBLIC KEY-----`); at
    /// least one.
    pub fn from_pems<P: AsRef<[u8]>>(pems: &[P]) -> Result<Self, SigningError> {
        if pems.is_empty() {
            return Err(SigningError("no trusted key was given".into()));
        }
        pems.iter()
            .map(|pem| {
                let der = pem_contents(pem.as_ref(), "PUBLIC KEY")?;
                let (algorithm, parsed) = [
                    (
                        ED25519_NAME,
                        &ED25519 as &'static dyn signature::VerificationAlgorithm,
                    ),
                    (P256_NAME, &ECDSA_P256_SHA256_ASN1),
                ]
                .into_iter()
                .find_map(|(name, alg)| {
                    signature::ParsedPublicKey::new(alg, &der)
                        .ok()
                        .map(|k| (name, k))
                })
                .ok_or_else(|| {
                    SigningError("a trusted key is neither Ed25519 nor ECDSA P-256".into())
                })?;
                // Ids are taken over SPKI DER, whatever encoding the key came in.
                let spki = parsed
                    .as_der()
                    .map_err(|_| SigningError("cannot encode a trusted key".into()))?
                    .as_ref()
                    .to_vec();
                Ok(TrustedKey {
                    key_id: key_id(&spki),
                    algorithm,
                    spki,
                })
            })
            .collect::<Result<_, _>>()
            .map(|keys| Self {
                keys,
                not_before: None,
            })
    }

    /// Accepts only bundles signed at `unix_seconds` or later, the first one loaded included.
    /// An engine never goes back to a bundle older than the one it serves; a host that persists
    /// what it last served ([`crate::BundleInfo::signed_at`]) and passes it here keeps that
    /// rollback protection across restarts.
    pub fn signed_no_earlier_than(mut self, unix_seconds: i64) -> Self {
        self.not_before = Some(unix_seconds);
        self
    }

    /// Checks that `files` carry a valid signature by one of these keys and are exactly the
    /// files signed; answers when they were signed (Unix seconds). Every problem names its file
    /// (error kind `signature`).
    pub fn verify(&self, files: &[BundleFile]) -> Result<i64, LoadError> {
        let problem = |file: &str, message: String| {
            LoadError::Signature(vec![Problem::in_file(file, message)])
        };
        if let Some(path) = duplicate(files) {
            return Err(problem(
                path,
                "the bundle holds two files with this path".into(),
            ));
        }
        let Some(signature_file) = files.iter().find(|f| f.path == SIGNATURE_FILE) else {
            return Err(problem(
                SIGNATURE_FILE,
                "the bundle is not signed, and this engine accepts only signed bundles".into(),
            ));
        };
        let signed: SignatureFile = serde_json::from_slice(&signature_file.contents)
            .map_err(|e| problem(SIGNATURE_FILE, format!("not a valid signature file: {e}")))?;
        let manifest = &signed.manifest;
        let key = self
            .keys
            .iter()
            .find(|k| k.key_id == manifest.key_id && k.algorithm == manifest.algorithm)
            .ok_or_else(|| {
                problem(
                    SIGNATURE_FILE,
                    format!(
                        "signed by {} key {}, which this engine does not trust",
                        manifest.algorithm, manifest.key_id
                    ),
                )
            })?;
        let signature = STANDARD
            .decode(&signed.signature)
            .map_err(|_| problem(SIGNATURE_FILE, "the signature is not base64".into()))?;
        let verifier: &dyn signature::VerificationAlgorithm = match key.algorithm {
            ED25519_NAME => &ED25519,
            _ => &ECDSA_P256_SHA256_ASN1,
        };
        UnparsedPublicKey::new(verifier, &key.spki)
            .verify(&canonical(manifest), &signature)
            .map_err(|_| problem(SIGNATURE_FILE, "the signature does not verify".into()))?;
        let actual = digests(files);
        let mut problems: Vec<Problem> = Vec::new();
        for (path, digest) in &actual {
            match manifest.files.get(path) {
                None => problems.push(Problem::in_file(path, "added since the bundle was signed")),
                Some(signed) if signed != digest => problems.push(Problem::in_file(
                    path,
                    "changed since the bundle was signed",
                )),
                Some(_) => {}
            }
        }
        for path in manifest.files.keys().filter(|p| !actual.contains_key(*p)) {
            problems.push(Problem::in_file(
                path,
                "removed since the bundle was signed",
            ));
        }
        if let Some(not_before) = self.not_before.filter(|t| manifest.signed_at < *t) {
            problems.push(Problem::in_file(
                SIGNATURE_FILE,
                format!(
                    "signed at {}, before {not_before}, the oldest signing time this engine \
                     accepts: an engine does not go back to an older bundle",
                    manifest.signed_at
                ),
            ));
        }
        match problems.is_empty() {
            true => Ok(manifest.signed_at),
            false => Err(LoadError::Signature(problems)),
        }
    }
}

/// A path two files share, if any.
fn duplicate(files: &[BundleFile]) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    files
        .iter()
        .map(|f| f.path.as_str())
        .find(|p| !seen.insert(*p))
}

impl From<SigningError> for LoadError {
    /// A trusted key that cannot be used: an error of kind `signature`.
    fn from(e: SigningError) -> Self {
        LoadError::Signature(vec![Problem::in_file("trusted keys", e.0)])
    }
}

/// The SHA-256 digest of every file but the signature itself.
fn digests(files: &[BundleFile]) -> BTreeMap<String, String> {
    files
        .iter()
        .filter(|f| f.path != SIGNATURE_FILE)
        .map(|f| {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &f.contents);
            (f.path.clone(), hex::encode(digest.as_ref()))
        })
        .collect()
}

fn canonical(manifest: &SignedManifest) -> Vec<u8> {
    serde_json::to_vec(manifest).unwrap_or_default()
}

fn key_id(spki: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
    hex::encode(&digest.as_ref()[..8])
}

fn pem_contents(text: &[u8], tag: &str) -> Result<Vec<u8>, SigningError> {
    let pem = pem::parse(text).map_err(|e| SigningError(format!("not PEM: {e}")))?;
    if pem.tag() != tag {
        return Err(SigningError(format!(
            "expected a PEM `{tag}`, found `{}`",
            pem.tag()
        )));
    }
    Ok(pem.contents().to_vec())
}
