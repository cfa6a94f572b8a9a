//! What the fuzz targets share: the engines they drive, the way an input is cut into bundle
//! files or request fields, and the invariants every decision must keep.

use std::sync::OnceLock;

use arbiter::{BundleFile, Engine, Minter, SigningKey};
use serde_json::{json, Value};

/// The fixed clock of every engine here, so a token's validity does not depend on the day.
pub const NOW: i64 = 1_800_000_000;

/// The test keys of core's token tests.
macro_rules! key {
    ($name:literal) => {
        include_str!(concat!("../../core/tests/fixtures/keys/", $name))
    };
}

/// The default bundle, as the CLI runs it.
pub fn default_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::gitlab_default()
            .expect("the default bundle loads")
            .with_fixed_time(NOW)
    })
}

/// Policies for the token engine: the token's principal and claims decide.
const TOKEN_POLICIES: &str = r#"
@id("user-reads") permit (principal is User, action == Action::"read", resource);
@id("job-push") permit (principal is Job, action == Action::"push", resource)
  when { context has token && context.token.ref_protected && principal.project == Project::"7" };
@id("gitaly") permit (principal == Service::"gitaly-client", action, resource);
"#;

/// An engine trusting JWTs of every algorithm family (HS256, RS256, ES256, EdDSA), macaroons
/// and Gitaly tokens, all with test keys.
pub fn token_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::from_files(token_bundle())
            .expect("the token bundle loads")
            .with_fixed_time(NOW)
    })
}

fn jwks(kid: &str, alg: &str, pem: &str) -> Value {
    let key = SigningKey::from_pem(kid, alg, pem.as_bytes()).expect("test key");
    Minter::new("fuzz", key).jwks()
}

/// The token engine's bundle files.
fn token_bundle() -> Vec<BundleFile> {
    let issuer = |name: &str, alg: &str, jwks: Value| {
        json!({"issuer": name, "algorithms": [alg], "jwks": jwks, "leeway_seconds": 30,
               "principal": {"type": "User", "id_claim": "sub"}})
    };
    let tokens = json!({
        "jwt": {"issuers": [
            {"issuer": "https://hs.example", "audiences": ["api"], "algorithms": ["HS256"],
             "hmac_secret_file": "keys/hs256.b64", "secret_encoding": "base64",
             "required_claims": ["exp", "sub"], "principal": {"type": "User", "id_claim": "sub"}},
            issuer("https://rs.example", "RS256", jwks("rs-1", "RS256", key!("rsa.pem"))),
            issuer("https://ec.example", "ES256", jwks("ec-1", "ES256", key!("ec.pem"))),
            issuer("https://ed.example", "EdDSA", jwks("ed-1", "EdDSA", key!("ed.pem"))),
            {"issuer": "https://ci.example", "algorithms": ["RS256"],
             "jwks": jwks("ci-1", "RS256", key!("rsa.pem")), "token_prefix": "glcbt-",
             "max_age_seconds": 90,
             "principal": {"type": "Job", "id_claim": "sub", "id_prefix": "gid://gitlab/Ci::Build/",
                           "attributes": {"project": {"claim": "project_id", "as": "entity", "entity_type": "Project"}}},
             "claims": {"ref_protected": "bool_string"}}
        ]},
        "macaroon": {"root_keys": [{"id": "k1", "secret_file": "keys/macaroon.key"}],
                     "principal": {"type": "User", "id_caveat": "user"}},
        "gitaly": {"secret_file": "keys/gitaly.secret", "principal": {"type": "Service", "id": "gitaly-client"}}
    });
    vec![
        BundleFile::new("policies.cedar", TOKEN_POLICIES),
        BundleFile::new("tokens.json", tokens.to_string()),
        BundleFile::new("keys/hs256.b64", key!("hs256.b64")),
        BundleFile::new("keys/macaroon.key", key!("macaroon.key")),
        BundleFile::new("keys/gitaly.secret", key!("gitaly.secret")),
    ]
}

/// The line that starts a section of a multi-part input: `=== name`.
pub const SECTION: &str = "=== ";

/// Cuts `text` into named sections, each starting with a line `=== name`; text before the first
/// such line is ignored. Bundle inputs name files this way; seeds are written the same way.
pub fn sections(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    if !rest.starts_with(SECTION) {
        match rest.find(&format!("\n{SECTION}")) {
            Some(i) => rest = &rest[i + 1..],
            None => return out,
        }
    }
    while let Some(after) = rest.strip_prefix(SECTION) {
        let (name, body) = after.split_once('\n').unwrap_or((after, ""));
        let (contents, next) = match body.find(&format!("\n{SECTION}")) {
            Some(i) => (&body[..i], &body[i + 1..]),
            None => (body, ""),
        };
        out.push((name, contents));
        rest = next;
    }
    out
}

/// The invariants of a decision given as decision JSON: it parses, it is `allow` or `deny`, and
/// an `allow` carries no error other than a policy's evaluation error (a bad token, or anything
/// else that is not one policy failing, always denies).
pub fn check_decision_json(json: &str) {
    let value: Value = serde_json::from_str(json).expect("decision JSON parses");
    let decision = value["decision"].as_str().expect("decision is a string");
    assert!(decision == "allow" || decision == "deny", "{json}");
    if decision == "allow" {
        let errors = value["errors"].as_array().expect("errors is an array");
        assert!(
            errors.iter().all(|e| e["kind"] == "policy_evaluation"),
            "an allow with a non-policy error: {json}"
        );
        assert!(
            !value["reasons"].as_array().expect("reasons").is_empty(),
            "an allow without a reason: {json}"
        );
    }
}
