//! The default GitLab bundle's token shapes (`policies/gitlab/tokens.json`): CI job tokens, CI
//! ID tokens, Workhorse API JWTs and Gitaly tokens, verified with test keys handed over the way
//! a deployment hands over its keys: in environment variables.

use std::sync::Once;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use arbiter::{DecisionErrorKind, Effect, Engine, Minter, SigningKey, TokenReport};

use crate::support::DecideJson;

const NOW: i64 = 1_800_000_000;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn ci_key() -> SigningKey {
    SigningKey::from_pem("gitlab-ci", "RS256", &fixture("rsa.pem")).unwrap()
}

fn hs_secret() -> Vec<u8> {
    STANDARD
        .decode(String::from_utf8(fixture("hs256.b64")).unwrap().trim())
        .unwrap()
}

/// The default bundle, with this test's keys in the environment it reads them from.
fn engine() -> Engine {
    static KEYS: Once = Once::new();
    KEYS.call_once(|| {
        std::env::set_var(
            "ARBITER_GITLAB_JWKS",
            Minter::new("x", ci_key()).jwks().to_string(),
        );
        std::env::set_var(
            "ARBITER_WORKHORSE_SECRET",
            String::from_utf8(fixture("hs256.b64")).unwrap().trim(),
        );
        std::env::set_var("ARBITER_GITALY_TOKEN", "gitaly-test-secret");
    });
    Engine::gitlab_default().unwrap().with_fixed_time(NOW)
}

fn mint(issuer: &str, claims: Value, ttl: u64, now: i64) -> String {
    let claims: Map<String, Value> = serde_json::from_value(claims).unwrap();
    Minter::new(issuer, ci_key())
        .mint(claims, ttl, now)
        .unwrap()
}

fn job_token(build: u64, aud: &str, now: i64) -> String {
    let claims =
        json!({"sub": format!("gid://gitlab/Ci::Build/{build}"), "aud": aud, "version": "0.1.0"});
    format!("glcbt-{}", mint("gitlab.example.com", claims, 600, now))
}

fn id_token(ref_protected: Value) -> String {
    let claims = json!({
        "sub": "project_path:acme/platform/api:ref_type:branch:ref:main", "aud": "arbiter",
        "namespace_id": "12", "project_id": "3", "user_id": "alice", "job_id": "555",
        "ref": "main", "ref_type": "branch", "ref_protected": ref_protected,
    });
    mint("https://gitlab.example.com", claims, 300, NOW)
}

fn workhorse_token(iat: i64) -> String {
    let claims: Map<String, Value> =
        serde_json::from_value(json!({"iss": "gitlab-workhorse", "iat": iat})).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&hs_secret()).unwrap(),
    )
    .unwrap()
}

fn gitaly_token(issued: i64) -> String {
    let ts = issued.to_string();
    let mac = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, b"gitaly-test-secret"),
        ts.as_bytes(),
    );
    format!("v2.{}.{ts}", hex::encode(mac.as_ref()))
}

/// Decides `action` on `project` with `token`; with `member`, the token's user is a Developer
/// of `project` (the bundle's static project, its authorization added).
fn decide(token: &str, action: &str, project: &str, member: Option<&str>) -> arbiter::Decision {
    let engine = engine();
    let mut request = json!({
        "action": {"type": "Gitlab::Action", "id": action},
        "resource": {"type": "Gitlab::Project", "id": project},
        "context": {"admin_mode": false},
        "token": token,
    });
    if let Some(user) = member {
        let entities: Vec<Value> = serde_json::from_str(&engine.entities_json()).unwrap();
        let mut entity = entities
            .into_iter()
            .find(|e| e["uid"]["type"] == "Gitlab::Project" && e["uid"]["id"] == project)
            .unwrap();
        entity["tags"] = json!({user: {"access_level": 30}});
        request["entities"] = json!([entity]);
    }
    engine.decide_json(&request.to_string()).unwrap()
}

fn reasons(d: &arbiter::Decision) -> (Effect, Vec<&str>) {
    (d.decision, d.reasons.iter().map(String::as_str).collect())
}

#[test]
fn a_ci_job_token_acts_as_its_job() {
    // Job 100 runs in project 3 for alice (entities.json).
    let token = job_token(100, "gitlab-authz-token", NOW);
    assert_eq!(
        reasons(&decide(&token, "download_code", "3", Some("alice"))),
        (Effect::Allow, vec!["role-reporter"])
    );
    assert_eq!(
        reasons(&decide(&token, "push_code", "3", Some("alice"))),
        (Effect::Deny, vec!["job-token-allowed-actions"])
    );
    // Project 4 is private and does not list project 3 in its allowlist.
    assert_eq!(
        reasons(&decide(&token, "download_code", "4", Some("alice"))),
        (Effect::Deny, vec!["job-token-allowlist"])
    );
    let info = engine().verify_token(&token).unwrap();
    assert_eq!(
        TokenReport::Valid(&info).to_json()["principal"],
        json!({"type": "Gitlab::CiJob", "id": "100"})
    );
}

#[test]
fn a_ci_job_token_for_another_audience_or_out_of_time_is_refused() {
    let kind = |token: &str| decide(token, "download_code", "3", Some("alice")).errors[0].kind;
    assert_eq!(
        kind(&job_token(100, "gitaly", NOW)),
        DecisionErrorKind::AudienceMismatch
    );
    assert_eq!(
        kind(&job_token(100, "gitlab-authz-token", NOW - 700)),
        DecisionErrorKind::Expired
    );
    let plain = job_token(100, "gitlab-authz-token", NOW).replacen("glcbt-", "", 1);
    assert_eq!(kind(&plain), DecisionErrorKind::UnknownIssuer);
}

#[test]
fn ci_id_token_claims_build_the_job_and_reach_policies() {
    // Job 555 is in no entity file: the ID token's claims make it (project 3, user alice).
    let protected = id_token(json!("true"));
    assert_eq!(
        reasons(&decide(&protected, "create_package", "3", Some("alice"))),
        (Effect::Allow, vec!["role-developer"])
    );
    let unprotected = id_token(json!("false"));
    assert_eq!(
        reasons(&decide(&unprotected, "create_package", "3", Some("alice"))),
        (Effect::Deny, vec!["job-unprotected-ref-no-publish"])
    );
    assert_eq!(
        reasons(&decide(&unprotected, "read_package", "3", Some("alice"))),
        (Effect::Allow, vec!["role-reporter"])
    );
    // A real boolean where GitLab sends a string is a wrong type, not "absent".
    assert_eq!(
        decide(&id_token(json!(true)), "read_package", "3", Some("alice")).errors[0].kind,
        DecisionErrorKind::InvalidClaim
    );
}

#[test]
fn a_workhorse_jwt_is_valid_for_ninety_seconds() {
    assert_eq!(
        reasons(&decide(
            &workhorse_token(NOW - 90),
            "download_code",
            "1",
            None
        )),
        (Effect::Allow, vec!["workhorse-repository"])
    );
    assert_eq!(
        decide(&workhorse_token(NOW - 91), "download_code", "1", None).errors[0].kind,
        DecisionErrorKind::Expired
    );
    // Workhorse relays repository traffic only.
    assert_eq!(
        decide(&workhorse_token(NOW), "admin_project", "1", None).decision,
        Effect::Deny
    );
}

#[test]
fn a_gitaly_token_is_valid_within_thirty_seconds() {
    assert_eq!(
        reasons(&decide(&gitaly_token(NOW - 30), "push_code", "3", None)),
        (Effect::Allow, vec!["gitaly-client-repository"])
    );
    assert_eq!(
        decide(&gitaly_token(NOW - 31), "push_code", "3", None).errors[0].kind,
        DecisionErrorKind::Expired
    );
    // The project's own rules still hold: project 5 is archived.
    assert_eq!(
        reasons(&decide(&gitaly_token(NOW), "push_code", "5", None)),
        (Effect::Deny, vec!["archived-read-only"])
    );
}
