//! `arbiter token`: verify a token against a bundle, mint JWTs and macaroons, export a JWKS.

use std::path::{Path, PathBuf};

use arbiter::{Macaroon, MacaroonFormat, Minter, SigningKey, TokenReport};
use clap::{Subcommand, ValueEnum};
use serde_json::{Map, Value};

use crate::{load, ALLOW, DENY};

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Verify a token as the bundle's tokens.json says. Prints {"valid": true, ...} and exits 0,
    /// or {"valid": false, "error": {...}} and exits 1.
    Verify {
        /// Bundle directory; the embedded default GitLab bundle when left out.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// The token (a compact JWT, a serialized macaroon or a Gitaly v2 token).
        #[arg(long)]
        token: String,
        /// Verify as of this time (Unix seconds) instead of now.
        #[arg(long)]
        now: Option<i64>,
    },
    /// Mint a token.
    #[command(subcommand)]
    Mint(MintCommand),
    /// Print the JWKS (public keys) of signing keys, the active one first, for verifiers.
    Jwks {
        /// A signing key as `KID:ALG:PEM_FILE`; repeat for retired keys that still verify.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum MintCommand {
    /// Sign a JWT with iss, iat, nbf, exp and a random jti.
    Jwt {
        /// The `iss` claim.
        #[arg(long)]
        issuer: String,
        /// The signing key as `KID:ALG:PEM_FILE` (RS*, PS*, ES*, EdDSA).
        #[arg(
            long,
            conflicts_with = "hmac_secret_file",
            required_unless_present = "hmac_secret_file"
        )]
        key: Option<String>,
        /// An HMAC secret file (raw bytes; a final newline is dropped), with --alg HS256/384/512.
        #[arg(long)]
        hmac_secret_file: Option<PathBuf>,
        /// The HMAC algorithm, with --hmac-secret-file.
        #[arg(long, default_value = "HS256")]
        alg: String,
        /// The `sub` claim.
        #[arg(long)]
        subject: Option<String>,
        /// An `aud` value; repeat for several.
        #[arg(long = "audience")]
        audiences: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 300)]
        ttl: u64,
        /// More claims, as a JSON object.
        #[arg(long)]
        claims: Option<String>,
        /// Mint as of this time (Unix seconds) instead of now.
        #[arg(long)]
        now: Option<i64>,
    },
    /// Mint a macaroon with first-party caveats (see the caveat language in the README).
    Macaroon {
        /// File holding the root key (its bytes, exactly, as `secret_encoding: raw` reads them).
        #[arg(long)]
        root_key_file: PathBuf,
        /// The identifier, which names the principal: `;`-separated fields, one of them
        /// `<id_caveat> = <id>`, e.g. "user = 42; t-1" (caveats cannot name it: any holder may
        /// add them).
        #[arg(long)]
        identifier: String,
        /// The location.
        #[arg(long)]
        location: Option<String>,
        /// A first-party caveat, e.g. "action = push_code"; repeat for several.
        #[arg(long = "caveat")]
        caveats: Vec<String>,
        /// Serialization format.
        #[arg(long, value_enum, default_value_t = Serialization::V2)]
        format: Serialization,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Serialization {
    V1,
    V2,
    V2j,
}

pub(crate) fn run(command: TokenCommand) -> Result<u8, String> {
    match command {
        TokenCommand::Verify { bundle, token, now } => {
            let engine = load(bundle.as_deref(), now)?;
            let verified = engine.verify_token(&token);
            say!("{}", TokenReport::from(&verified).to_json())?;
            Ok(if verified.is_ok() { ALLOW } else { DENY })
        }
        TokenCommand::Mint(MintCommand::Jwt {
            issuer,
            key,
            hmac_secret_file,
            alg,
            subject,
            audiences,
            ttl,
            claims,
            now,
        }) => {
            let key = match (key, hmac_secret_file) {
                (Some(spec), _) => signing_key(&spec)?,
                (None, Some(path)) => {
                    SigningKey::from_hmac_secret("hmac", &alg, &read_secret(&path)?)
                        .map_err(|e| e.to_string())?
                }
                (None, None) => return Err("give --key or --hmac-secret-file".into()),
            };
            let mut claims: Map<String, Value> = match claims {
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| format!("--claims is not a JSON object: {e}"))?,
                None => Map::new(),
            };
            if let Some(subject) = subject {
                claims.insert("sub".into(), subject.into());
            }
            match audiences.len() {
                0 => {}
                1 => {
                    claims.insert("aud".into(), audiences[0].clone().into());
                }
                _ => {
                    claims.insert("aud".into(), audiences.into());
                }
            }
            let now = now.unwrap_or_else(unix_now);
            let token = Minter::new(issuer, key)
                .mint(claims, ttl, now)
                .map_err(|e| e.to_string())?;
            say!("{token}")?;
            Ok(ALLOW)
        }
        TokenCommand::Mint(MintCommand::Macaroon {
            root_key_file,
            identifier,
            location,
            caveats,
            format,
        }) => {
            let mut macaroon = Macaroon::mint(
                &read_secret(&root_key_file)?,
                identifier,
                location.as_deref(),
            );
            for caveat in caveats {
                macaroon.add_first_party_caveat(caveat);
            }
            say!(
                "{}",
                macaroon.serialize(match format {
                    Serialization::V1 => MacaroonFormat::V1,
                    Serialization::V2 => MacaroonFormat::V2,
                    Serialization::V2j => MacaroonFormat::V2Json,
                })
            )?;
            Ok(ALLOW)
        }
        TokenCommand::Jwks { keys } => {
            let mut keys = keys.iter().map(|k| signing_key(k));
            let mut minter = Minter::new("jwks", keys.next().ok_or("give at least one --key")??);
            for key in keys {
                minter.add_retired(key?);
            }
            say!("{}", minter.jwks())?;
            Ok(ALLOW)
        }
    }
}

/// `KID:ALG:PEM_FILE`.
fn signing_key(spec: &str) -> Result<SigningKey, String> {
    let mut parts = spec.splitn(3, ':');
    let (Some(kid), Some(alg), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("a key is KID:ALG:PEM_FILE, not `{spec}`"));
    };
    let pem = std::fs::read(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    SigningKey::from_pem(kid, alg, &pem).map_err(|e| format!("key `{kid}`: {e}"))
}

/// A secret file's bytes, exactly, as `secret_encoding: raw` reads it in a bundle (which also
/// refuses text ending in a newline: the newline would be part of the key).
fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    if bytes.ends_with(b"\n") && std::str::from_utf8(&bytes).is_ok() {
        return Err(format!(
            "`{}` is text ending in a newline, which would be part of the key: write it \
             without one (`printf`)",
            path.display()
        ));
    }
    Ok(bytes)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
