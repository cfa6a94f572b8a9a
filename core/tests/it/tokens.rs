//! Token checks through the engine: every RFC 8725 point, JWT claims at their boundaries,
//! macaroons, Gitaly tokens, the cache, rotation, and claims reaching policies.
//!
//! Long: one case per RFC 8725 point and claim boundary, all over the minting helpers at the top.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use arbiter::{
    BundleFile, DecisionErrorKind, Effect, Engine, Macaroon, Minter, SigningKey, TokenReport,
};

use crate::support::DecideJson;

const NOW: i64 = 1_800_000_000;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn hs_secret() -> Vec<u8> {
    STANDARD
        .decode(String::from_utf8(fixture("hs256.b64")).unwrap().trim())
        .unwrap()
}

fn rsa(kid: &str) -> SigningKey {
    SigningKey::from_pem(kid, "RS256", &fixture("rsa.pem")).unwrap()
}

fn jwks(key: SigningKey) -> Value {
    Minter::new("x", key).jwks()
}

const POLICIES: &str = r#"
@id("user-reads") permit (principal is User, action == Action::"read", resource);
@id("protected-jobs-push") permit (principal is Job, action == Action::"push", resource)
  when { context has token && context.token.ref_protected && principal.project == Project::"7" };
@id("gitaly-client") permit (principal == Service::"gitaly-client", action, resource);
"#;

fn tokens_json() -> Value {
    json!({
        "jwt": {"issuers": [
            {"issuer": "https://hs.example", "audiences": ["api"], "algorithms": ["HS256"],
             "hmac_secret_file": "keys/hs256.b64", "secret_encoding": "base64", "leeway_seconds": 30,
             "required_claims": ["exp", "sub"], "principal": {"type": "User", "id_claim": "sub"}},
            {"issuer": "https://rs.example", "algorithms": ["RS256"], "jwks": jwks(rsa("rs-1")),
             "principal": {"type": "User"}},
            {"issuer": "https://mixed.example", "algorithms": ["RS256", "HS256"], "jwks": jwks(rsa("m-1")),
             "principal": {"type": "User"}},
            {"issuer": "https://ci.example", "algorithms": ["RS256"], "jwks": jwks(rsa("ci-1")),
             "token_prefix": "glcbt-", "max_age_seconds": 90,
             "principal": {"type": "Job", "id_claim": "sub", "id_prefix": "gid://gitlab/Ci::Build/",
                           "attributes": {"project": {"claim": "project_id", "as": "entity", "entity_type": "Project"}}},
             "claims": {"ref_protected": "bool_string"}}
        ]},
        "macaroon": {"root_keys": [{"id": "k1", "secret_file": "keys/macaroon.key"}],
                     "principal": {"type": "User", "id_caveat": "user"}},
        "gitaly": {"secret_file": "keys/gitaly.secret", "principal": {"type": "Service", "id": "gitaly-client"}}
    })
}

fn engine_with(tokens: Value) -> Engine {
    Engine::from_files([
        BundleFile::new("policies.cedar", POLICIES),
        BundleFile::new("tokens.json", tokens.to_string()),
        BundleFile::new(
            "keys/hs256.b64",
            String::from_utf8(fixture("hs256.b64")).unwrap(),
        ),
        BundleFile::new("keys/macaroon.key", fixture("macaroon.key")),
        BundleFile::new("keys/gitaly.secret", fixture("gitaly.secret")),
    ])
    .unwrap()
    .with_fixed_time(NOW)
}

fn engine() -> Engine {
    engine_with(tokens_json())
}

fn hs_token(claims: Value) -> String {
    let claims: Map<String, Value> = serde_json::from_value(claims).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = None;
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&hs_secret()).unwrap(),
    )
    .unwrap()
}

fn good_claims() -> Value {
    json!({"iss": "https://hs.example", "aud": "api", "sub": "42", "exp": NOW + 60})
}

/// A token from raw parts: header and payload JSON, signature bytes.
fn forge(header: &Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn hmac_sign(secret: &[u8], header: &Value, payload: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fn decide(engine: &Engine, token: &str, action: &str) -> arbiter::Decision {
    let request = json!({"action": {"type": "Action", "id": action}, "resource": {"type": "Doc", "id": "d"}, "token": token});
    engine.decide_json(&request.to_string()).unwrap()
}

/// The token error kind of a deny (`None` for an allow or a deny without token error).
fn refusal(engine: &Engine, token: &str) -> Option<DecisionErrorKind> {
    let d = decide(engine, token, "read");
    match d.decision {
        Effect::Allow => None,
        Effect::Deny => d.errors.first().map(|e| e.kind),
    }
}

fn ok(engine: &Engine, token: &str) {
    let d = decide(engine, token, "read");
    assert_eq!(d.decision, Effect::Allow, "{}", d.to_json());
}

#[test]
fn a_valid_token_supplies_the_principal() {
    let e = engine();
    ok(&e, &hs_token(good_claims()));
    let info = e.verify_token(&hs_token(good_claims())).unwrap();
    assert_eq!(info.kind(), "jwt");
    assert_eq!(
        TokenReport::Valid(&info).to_json()["principal"],
        json!({"type": "User", "id": "42"})
    );
    assert_eq!(info.claims()["aud"], "api");
}

/// The report every interface gives (CLI, C ABI, bindings), whole and in its key order.
#[test]
fn the_token_report_has_the_contract_shape() {
    let e = engine();
    let token = hs_token(good_claims());
    let verified = e.verify_token(&token);
    assert_eq!(
        serde_json::to_string(&TokenReport::from(&verified)).unwrap(),
        format!(
            r#"{{"valid":true,"kind":"jwt","principal":{{"type":"User","id":"42"}},"claims":{}}}"#,
            good_claims()
        )
    );
    let (signed, _) = token.rsplit_once('.').unwrap();
    let forged = e.verify_token(&format!("{signed}.{}", URL_SAFE_NO_PAD.encode([0u8; 32])));
    let report = serde_json::to_string(&TokenReport::from(&forged)).unwrap();
    assert!(
        report.starts_with(r#"{"valid":false,"error":{"kind":"bad_signature","message":""#),
        "{report}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&report).unwrap(),
        TokenReport::from(&forged).to_json()
    );
}

#[test]
fn alg_none_is_refused() {
    let e = engine();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = forge(&json!({"alg": alg, "typ": "JWT"}), &good_claims(), b"");
        assert_eq!(
            refusal(&e, &token),
            Some(DecisionErrorKind::AlgorithmNotAllowed),
            "{alg}"
        );
    }
}

#[test]
fn hs_rs_confusion_is_refused() {
    // The attacker HMACs with the issuer's public key as the secret.
    let public_pem = fixture("rsa.pub.pem");
    let mut claims = good_claims();
    claims["iss"] = json!("https://rs.example");
    let token = hmac_sign(
        &public_pem,
        &json!({"alg": "HS256", "kid": "rs-1"}),
        &claims,
    );
    assert_eq!(
        refusal(&engine(), &token),
        Some(DecisionErrorKind::AlgorithmNotAllowed)
    );
    // Even where the issuer allows HS256, its RSA key is bound to RS256 and serves no HMAC.
    claims["iss"] = json!("https://mixed.example");
    let token = hmac_sign(&public_pem, &json!({"alg": "HS256", "kid": "m-1"}), &claims);
    assert_eq!(
        refusal(&engine(), &token),
        Some(DecisionErrorKind::UnknownKey)
    );
}

#[test]
fn kid_selects_only_among_the_issuers_own_keys() {
    let e = engine();
    let mut claims = good_claims();
    claims["iss"] = json!("https://rs.example");
    // A key id of another issuer, a path, an injection attempt: no such key here.
    for kid in ["ci-1", "../../../../dev/null", "' OR 1=1 --", ""] {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&fixture("rsa.pem")).unwrap();
        let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        assert_eq!(
            refusal(&e, &token),
            Some(DecisionErrorKind::UnknownKey),
            "{kid}"
        );
    }
}

#[test]
fn keys_embedded_or_linked_in_the_header_are_ignored() {
    // Signed with the attacker's key, which the header offers as `jwk`, `jku` and `x5u`.
    let attacker = SigningKey::from_pem("evil", "RS256", &fixture("rsa2.pem")).unwrap();
    let attacker_jwk = jwks(SigningKey::from_pem("evil", "RS256", &fixture("rsa2.pem")).unwrap())
        ["keys"][0]
        .clone();
    let mut claims: Map<String, Value> = serde_json::from_value(good_claims()).unwrap();
    claims.insert("iss".into(), json!("https://rs.example"));
    let header = json!({"alg": "RS256", "jwk": attacker_jwk, "jku": "https://evil.example/jwks", "x5u": "https://evil.example/cert"});
    let minted = Minter::new("https://rs.example", attacker)
        .mint(claims, 60, NOW)
        .unwrap();
    let (_, rest) = minted.split_once('.').unwrap();
    let token = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()));
    assert_eq!(
        refusal(&engine(), &token),
        Some(DecisionErrorKind::BadSignature)
    );
}

#[test]
fn critical_and_unencoded_payload_headers_are_refused() {
    let e = engine();
    for header in [
        json!({"alg": "HS256", "crit": ["exp"], "exp": 1}),
        json!({"alg": "HS256", "b64": false, "crit": ["b64"]}),
        json!({"alg": 256}),
    ] {
        let token = hmac_sign(&hs_secret(), &header, &good_claims());
        assert_eq!(
            refusal(&e, &token),
            Some(DecisionErrorKind::Malformed),
            "{header}"
        );
    }
}

#[test]
fn exp_and_nbf_hold_to_the_second_with_leeway() {
    let e = engine();
    let at = |claims: Value| refusal(&e, &hs_token(claims));
    let with = |field: &str, value: i64| {
        let mut c = good_claims();
        c[field] = json!(value);
        c
    };
    // Leeway 30 s: valid while now < exp + 30.
    assert_eq!(at(with("exp", NOW - 29)), None);
    assert_eq!(at(with("exp", NOW - 30)), Some(DecisionErrorKind::Expired));
    // Valid once now >= nbf - 30.
    let mut c = with("nbf", NOW + 30);
    assert_eq!(at(c.clone()), None);
    c["nbf"] = json!(NOW + 31);
    assert_eq!(at(c), Some(DecisionErrorKind::NotYetValid));
}

#[test]
fn iat_bounds_the_age_where_configured() {
    let e = engine();
    let key = SigningKey::from_pem("ci-1", "RS256", &fixture("rsa.pem")).unwrap();
    let ci = |iat: i64| {
        let claims = json!({"iss": "https://ci.example", "sub": "gid://gitlab/Ci::Build/99", "project_id": 7, "ref_protected": "true", "iat": iat, "exp": NOW + 3600});
        format!(
            "glcbt-{}",
            Minter::new("https://ci.example", key_clone(&key))
                .mint(serde_json::from_value(claims).unwrap(), 3600, iat)
                .unwrap()
        )
    };
    assert_eq!(decide(&e, &ci(NOW - 90), "push").decision, Effect::Allow);
    assert_eq!(
        decide(&e, &ci(NOW - 91), "push").errors[0].kind,
        DecisionErrorKind::Expired
    );
    assert_eq!(
        decide(&e, &ci(NOW + 1), "push").errors[0].kind,
        DecisionErrorKind::NotYetValid
    );
    // Without its prefix the job token matches no issuer.
    let bare = ci(NOW).trim_start_matches("glcbt-").to_owned();
    assert_eq!(
        decide(&e, &bare, "push").errors[0].kind,
        DecisionErrorKind::UnknownIssuer
    );
}

fn key_clone(_: &SigningKey) -> SigningKey {
    SigningKey::from_pem("ci-1", "RS256", &fixture("rsa.pem")).unwrap()
}

#[test]
fn iss_and_aud_match_exactly() {
    let e = engine();
    for iss in [
        "https://hs.example/",
        "https://hs.exampl",
        "HTTPS://HS.EXAMPLE",
        "https://hs.example.evil",
    ] {
        let mut c = good_claims();
        c["iss"] = json!(iss);
        assert_eq!(
            refusal(&e, &hs_token(c)),
            Some(DecisionErrorKind::UnknownIssuer),
            "{iss}"
        );
    }
    for aud in [
        json!("ap"),
        json!("api "),
        json!("API"),
        json!(["apis", "x"]),
    ] {
        let mut c = good_claims();
        c["aud"] = aud.clone();
        assert_eq!(
            refusal(&e, &hs_token(c)),
            Some(DecisionErrorKind::AudienceMismatch),
            "{aud}"
        );
    }
    let mut c = good_claims();
    c["aud"] = json!(["other", "api"]);
    assert_eq!(refusal(&e, &hs_token(c)), None);
}

#[test]
fn a_claim_of_the_wrong_type_is_refused_not_ignored() {
    let e = engine();
    for (field, value) in [
        ("exp", json!("1900000000")),
        ("exp", json!(null)),
        ("nbf", json!(true)),
        ("iat", json!([1])),
        ("aud", json!(7)),
        ("aud", json!(["api", 7])),
        ("iss", json!(["https://hs.example"])),
        ("sub", json!({"id": 42})),
        ("jti", json!(5)),
    ] {
        let mut c = good_claims();
        c[field] = value.clone();
        assert_eq!(
            refusal(&e, &hs_token(c)),
            Some(DecisionErrorKind::InvalidClaim),
            "{field}: {value}"
        );
    }
}

#[test]
fn required_claims_must_be_present() {
    let e = engine();
    for field in ["exp", "sub", "aud"] {
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove(field);
        assert_eq!(
            refusal(&e, &hs_token(c)),
            Some(DecisionErrorKind::MissingClaim),
            "{field}"
        );
    }
}

#[test]
fn size_and_shape_are_checked_before_parsing() {
    let e = engine();
    let huge = format!("{}.{}.{}", "a".repeat(5000), "b".repeat(5000), "c");
    assert_eq!(refusal(&e, &huge), Some(DecisionErrorKind::TooLarge));
    for bad in [
        "a.b.c.d",
        "a..b.c",
        "....",
        "abc",
        "a.b",
        "eyJhbGciOiJIUzI1NiJ9 .e30.x",
        "é.é.é",
    ] {
        let kind = refusal(&e, bad);
        assert!(
            matches!(
                kind,
                Some(DecisionErrorKind::Malformed | DecisionErrorKind::UnknownIssuer)
            ),
            "{bad}: {kind:?}"
        );
    }
    // Deeply nested JSON is refused before any parser sees it, in the payload and the header.
    let deep = format!("{}{}", "[".repeat(3000), "]".repeat(3000));
    let payload = format!(r#"{{"iss":"https://hs.example","x":{deep}}}"#);
    let token = format!(
        "{}.{}.sig",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#),
        URL_SAFE_NO_PAD.encode(&payload)
    );
    assert_eq!(refusal(&e, &token), Some(DecisionErrorKind::Malformed));
    let token = format!(
        "{}.{}.sig",
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","x":{deep}}}"#)),
        URL_SAFE_NO_PAD.encode("{}")
    );
    assert!(refusal(&e, &token).is_some());
}

#[test]
fn a_tampered_token_fails_its_signature() {
    let token = hs_token(good_claims());
    let (head, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let mut claims = good_claims();
    claims["sub"] = json!("1");
    let tampered = format!(
        "{head}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    assert_eq!(
        refusal(&engine(), &tampered),
        Some(DecisionErrorKind::BadSignature)
    );
}

#[test]
fn the_token_and_the_request_must_name_the_same_principal() {
    let e = engine();
    let request = |principal: &str| {
        json!({"principal": {"type": "User", "id": principal}, "action": {"type": "Action", "id": "read"},
               "resource": {"type": "Doc", "id": "d"}, "token": hs_token(good_claims())})
        .to_string()
    };
    assert_eq!(
        e.decide_json(&request("42")).unwrap().decision,
        Effect::Allow
    );
    let d = e.decide_json(&request("1")).unwrap();
    assert_eq!(
        (d.decision, d.errors[0].kind),
        (Effect::Deny, DecisionErrorKind::InvalidClaim)
    );
}

#[test]
fn typed_claims_reach_policies_as_context_token() {
    let e = engine();
    let ci = |ref_protected: Value, project: Value| {
        let claims = json!({"iss": "https://ci.example", "sub": "gid://gitlab/Ci::Build/99", "project_id": project, "ref_protected": ref_protected, "iat": NOW});
        format!(
            "glcbt-{}",
            Minter::new("https://ci.example", key_clone(&rsa("x")))
                .mint(serde_json::from_value(claims).unwrap(), 60, NOW)
                .unwrap()
        )
    };
    let d = decide(&e, &ci(json!("true"), json!(7)), "push");
    assert_eq!(
        (d.decision, d.reasons),
        (Effect::Allow, vec!["protected-jobs-push".to_owned()])
    );
    assert_eq!(
        decide(&e, &ci(json!("false"), json!(7)), "push").decision,
        Effect::Deny
    );
    assert_eq!(
        decide(&e, &ci(json!("true"), json!(8)), "push").decision,
        Effect::Deny
    );
    for wrong in [json!(true), json!("yes"), json!(1)] {
        let d = decide(&e, &ci(wrong.clone(), json!(7)), "push");
        assert_eq!(d.errors[0].kind, DecisionErrorKind::InvalidClaim, "{wrong}");
    }
    assert_eq!(
        decide(&e, &ci(json!("true"), json!([7])), "push").errors[0].kind,
        DecisionErrorKind::InvalidClaim
    );
    let info = e.verify_token(&ci(json!("true"), json!(7))).unwrap();
    assert_eq!(
        TokenReport::Valid(&info).to_json()["principal"],
        json!({"type": "Job", "id": "99"})
    );
}

#[test]
fn the_cache_respects_expiry_and_reloads() {
    let e = engine();
    let token =
        hs_token(json!({"iss": "https://hs.example", "aud": "api", "sub": "42", "exp": NOW + 10}));
    ok(&e, &token);
    ok(&e, &token); // from the cache
                    // The same engine a minute later: the cached entry has expired with the token.
    let later = Engine::from_files([
        BundleFile::new("policies.cedar", POLICIES),
        BundleFile::new("tokens.json", tokens_json().to_string()),
        BundleFile::new(
            "keys/hs256.b64",
            String::from_utf8(fixture("hs256.b64")).unwrap(),
        ),
        BundleFile::new("keys/macaroon.key", "x"),
        BundleFile::new("keys/gitaly.secret", "x"),
    ])
    .unwrap()
    .with_fixed_time(NOW + 60);
    assert_eq!(refusal(&later, &token), Some(DecisionErrorKind::Expired));
    // A reload with another HMAC secret empties the cache: the token no longer verifies.
    e.reload_from_files([
        BundleFile::new("policies.cedar", POLICIES),
        BundleFile::new("tokens.json", tokens_json().to_string()),
        BundleFile::new("keys/hs256.b64", STANDARD.encode([7u8; 32])),
        BundleFile::new("keys/macaroon.key", "x"),
        BundleFile::new("keys/gitaly.secret", "x"),
    ])
    .unwrap();
    assert_eq!(refusal(&e, &token), Some(DecisionErrorKind::BadSignature));
}

#[test]
fn without_token_configuration_no_token_is_trusted() {
    let e = Engine::from_files([BundleFile::new("p.cedar", POLICIES)]).unwrap();
    assert_eq!(
        refusal(&e, &hs_token(good_claims())),
        Some(DecisionErrorKind::UnknownIssuer)
    );
}

#[test]
fn rotated_keys_keep_verifying_until_dropped() {
    let mut minter = Minter::new("https://rot.example", rsa("old"));
    let old_token = minter
        .mint(
            serde_json::from_value(json!({"sub": "42"})).unwrap(),
            600,
            NOW,
        )
        .unwrap();
    minter.rotate(SigningKey::from_pem("new", "ES256", &fixture("ec.pem")).unwrap());
    let new_token = minter
        .mint(
            serde_json::from_value(json!({"sub": "43"})).unwrap(),
            600,
            NOW,
        )
        .unwrap();
    let issuer = |jwks: Value| {
        let mut t = tokens_json();
        t["jwt"]["issuers"] = json!([{"issuer": "https://rot.example", "algorithms": ["RS256", "ES256"], "jwks": jwks, "principal": {"type": "User"}}]);
        engine_with(t)
    };
    let e = issuer(minter.jwks());
    ok(&e, &old_token);
    ok(&e, &new_token);
    assert_eq!(
        jsonwebtoken::decode_header(&new_token)
            .unwrap()
            .kid
            .as_deref(),
        Some("new")
    );
    minter.drop_retired("old");
    let e = issuer(minter.jwks());
    assert_eq!(refusal(&e, &old_token), Some(DecisionErrorKind::UnknownKey));
    ok(&e, &new_token);
}

#[test]
fn bad_token_configuration_names_the_problem() {
    let load = |tokens: Value| {
        Engine::from_files([
            BundleFile::new("p.cedar", POLICIES),
            BundleFile::new("tokens.json", tokens.to_string()),
        ])
    };
    let err = |tokens: Value| {
        load(tokens)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let issuer = |extra: Value| {
        let mut i = json!({"issuer": "i", "algorithms": ["HS256"], "principal": {"type": "User"}});
        i.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"jwt": {"issuers": [i]}})
    };
    assert!(err(issuer(json!({"hmac_secret_file": "keys/missing"})))
        .contains("`keys/missing` is not in the bundle"));
    assert!(err(issuer(json!({"algorithms": ["XS256"]}))).contains("unsupported algorithm `XS256`"));
    let mut no_alg = jwks(rsa("k"));
    no_alg["keys"][0].as_object_mut().unwrap().remove("alg");
    assert!(err(issuer(
        json!({"algorithms": ["RS256", "PS256"], "jwks": no_alg})
    ))
    .contains("several allowed algorithms fit"));
    assert!(err(issuer(
        json!({"algorithms": ["ES256"], "jwks": jwks(rsa("k"))})
    ))
    .contains("does not allow"));
    assert!(err(json!({"jwt": {"issuers": [{"issuer": "i"}]}})).contains("tokens.json"));
    assert_eq!(load(json!({"jwt": {}})).err().unwrap().kind(), "tokens");
    // A secret in an unset variable leaves the issuer without keys: it loads, and refuses.
    let e = load(issuer(
        json!({"hmac_secret_env": "ARBITER_TEST_UNSET_VARIABLE"}),
    ))
    .unwrap();
    let token = hmac_sign(
        &hs_secret(),
        &json!({"alg": "HS256"}),
        &json!({"iss": "i", "sub": "1", "exp": i64::MAX / 2}),
    );
    assert_eq!(refusal(&e, &token), Some(DecisionErrorKind::UnknownKey));
    // Short HMAC secrets are refused (RFC 7518: at least the hash size).
    let short = Engine::from_files([
        BundleFile::new("p.cedar", POLICIES),
        BundleFile::new(
            "tokens.json",
            issuer(json!({"hmac_secret_file": "k"})).to_string(),
        ),
        BundleFile::new("k", "too short"),
    ]);
    assert!(short
        .err()
        .unwrap()
        .to_string()
        .contains("needs at least 32"));
}

fn macaroon_key() -> Vec<u8> {
    fixture("macaroon.key")
}

#[test]
fn macaroons_verify_and_their_caveats_hold_against_the_request() {
    let e = engine();
    let mut m = Macaroon::mint(
        &macaroon_key(),
        "user = 42; token-1",
        Some("https://gitlab.example.com"),
    );
    m.add_first_party_caveat("user = 42");
    m.add_first_party_caveat("action in read, push");
    m.add_first_party_caveat(r#"resource = Doc::"d""#);
    m.add_first_party_caveat("expires < 2027-02-01T00:00:00Z");
    for format in [
        arbiter::MacaroonFormat::V1,
        arbiter::MacaroonFormat::V2,
        arbiter::MacaroonFormat::V2Json,
    ] {
        ok(&e, &m.serialize(format));
    }
    let token = m.serialize(arbiter::MacaroonFormat::V2);
    assert_eq!(
        decide(&e, &token, "delete").errors[0].kind,
        DecisionErrorKind::CaveatNotSatisfied
    );
    let info = e.verify_token(&token).unwrap();
    assert_eq!(
        (
            info.kind(),
            TokenReport::Valid(&info).to_json()["principal"]["id"].clone()
        ),
        ("macaroon", json!("42"))
    );

    // Attenuated further by its holder: still verifies, and narrows.
    let mut narrower = m.clone();
    narrower.add_first_party_caveat("action = push");
    assert_eq!(
        decide(&e, &narrower.serialize(arbiter::MacaroonFormat::V2), "read").errors[0].kind,
        DecisionErrorKind::CaveatNotSatisfied
    );

    let later = engine().with_fixed_time(1_800_000_000 + 86_400 * 365);
    assert_eq!(refusal(&later, &token), Some(DecisionErrorKind::Expired));

    let mut unknown = Macaroon::mint(&macaroon_key(), "user = 42; token-2", None);
    unknown.add_first_party_caveat("user = 42");
    unknown.add_first_party_caveat("ip = 10.0.0.1");
    assert_eq!(
        refusal(&e, &unknown.serialize(arbiter::MacaroonFormat::V2)),
        Some(DecisionErrorKind::CaveatNotSatisfied)
    );

    let mut forged = Macaroon::mint(b"not the root key", "user = 42; token-3", None);
    forged.add_first_party_caveat("user = 42");
    assert_eq!(
        refusal(&e, &forged.serialize(arbiter::MacaroonFormat::V2)),
        Some(DecisionErrorKind::BadSignature)
    );

    let nobody = Macaroon::mint(&macaroon_key(), "token-4", None);
    assert_eq!(
        refusal(&e, &nobody.serialize(arbiter::MacaroonFormat::V2)),
        Some(DecisionErrorKind::MissingClaim)
    );
}

#[test]
fn macaroons_with_third_party_caveats_need_their_bound_discharge() {
    let e = engine();
    let mut root = Macaroon::mint(&macaroon_key(), "user = 42; token-5", None);
    root.add_first_party_caveat("user = 42");
    root.add_third_party_caveat(
        b"auth service key",
        "2fa-done",
        Some("https://auth.example"),
    );
    let mut discharge = Macaroon::discharge(b"auth service key", "2fa-done", None);
    discharge.add_first_party_caveat("action = read");
    let bound = root.bind(&discharge);
    let stack = |items: &[&Macaroon]| {
        Value::Array(
            items
                .iter()
                .map(|m| Value::String(m.serialize(arbiter::MacaroonFormat::V2)))
                .collect(),
        )
        .to_string()
    };
    ok(&e, &stack(&[&root, &bound]));
    assert_eq!(
        decide(&e, &stack(&[&root, &bound]), "push").errors[0].kind,
        DecisionErrorKind::CaveatNotSatisfied
    );
    assert_eq!(
        refusal(&e, &stack(&[&root])),
        Some(DecisionErrorKind::BadSignature)
    );
    assert_eq!(
        refusal(&e, &stack(&[&root, &discharge])),
        Some(DecisionErrorKind::BadSignature)
    );
    let too_many: Vec<&Macaroon> = std::iter::once(&root)
        .chain(std::iter::repeat_n(&bound, 9))
        .collect();
    assert_eq!(
        refusal(&e, &stack(&too_many)),
        Some(DecisionErrorKind::TooLarge)
    );
}

/// The principal is what the minter wrote in the root identifier; a holder, who may append
/// first-party caveats to the root or to a discharge without any key, can only narrow.
#[test]
fn a_macaroon_holder_cannot_choose_its_principal() {
    let e = engine();
    let v2 = |m: &Macaroon| m.serialize(arbiter::MacaroonFormat::V2);
    let principal = |token: &str| {
        e.verify_token(token)
            .map(|info| info.principal().id().unescaped().to_owned())
    };

    // Minted without a principal: appending `user = root` does not make one.
    let mut nameless = Macaroon::mint(&macaroon_key(), "t-10", None);
    nameless.add_first_party_caveat("user = root");
    assert_eq!(
        refusal(&e, &v2(&nameless)),
        Some(DecisionErrorKind::MissingClaim)
    );

    // Minted for 42: appending `user = root` only narrows it to nothing.
    let mut for_42 = Macaroon::mint(&macaroon_key(), "user = 42; t-11", None);
    assert_eq!(principal(&v2(&for_42)).unwrap(), "42");
    let mut widened = for_42.clone();
    widened.add_first_party_caveat("user = root");
    assert_eq!(
        refusal(&e, &v2(&widened)),
        Some(DecisionErrorKind::CaveatNotSatisfied)
    );
    for_42.add_first_party_caveat("user = 42");
    assert_eq!(principal(&v2(&for_42)).unwrap(), "42");

    // Through a discharge: its caveats are the holder's to append too.
    let stack = |root: &Macaroon, discharge: &Macaroon| {
        json!([v2(root), v2(&root.bind(discharge))]).to_string()
    };
    for (identifier, refused) in [
        ("t-12", DecisionErrorKind::MissingClaim),
        ("user = 42; t-13", DecisionErrorKind::CaveatNotSatisfied),
    ] {
        let mut root = Macaroon::mint(&macaroon_key(), identifier, None);
        root.add_third_party_caveat(b"auth service key", "2fa-done", None);
        let mut discharge = Macaroon::discharge(b"auth service key", "2fa-done", None);
        discharge.add_first_party_caveat("user = root");
        assert_eq!(refusal(&e, &stack(&root, &discharge)), Some(refused));
    }

    // An identifier naming two principals names none.
    let twice = Macaroon::mint(&macaroon_key(), "user = 42; user = 43", None);
    assert_eq!(
        refusal(&e, &v2(&twice)),
        Some(DecisionErrorKind::InvalidClaim)
    );
}

fn gitaly_token(secret: &[u8], issued: i64) -> String {
    let ts = issued.to_string();
    let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), ts.as_bytes());
    format!("v2.{}.{ts}", hex::encode(mac.as_ref()))
}

#[test]
fn gitaly_tokens_are_valid_for_thirty_seconds_either_side() {
    let e = engine();
    let secret = b"gitaly-test-secret";
    ok(&e, &gitaly_token(secret, NOW));
    ok(&e, &gitaly_token(secret, NOW - 30));
    ok(&e, &gitaly_token(secret, NOW + 30));
    assert_eq!(
        refusal(&e, &gitaly_token(secret, NOW - 31)),
        Some(DecisionErrorKind::Expired)
    );
    assert_eq!(
        refusal(&e, &gitaly_token(secret, NOW + 31)),
        Some(DecisionErrorKind::NotYetValid)
    );
    assert_eq!(
        refusal(&e, &gitaly_token(b"wrong", NOW)),
        Some(DecisionErrorKind::BadSignature)
    );
    assert_eq!(
        refusal(&e, &format!("v2.zz.{NOW}")),
        Some(DecisionErrorKind::Malformed)
    );
    assert_eq!(
        e.verify_token(&gitaly_token(secret, NOW)).unwrap().kind(),
        "gitaly"
    );
}

#[test]
fn revoked_tokens_are_refused_though_they_verify() {
    let mut tokens = tokens_json();
    tokens["revoked"] =
        json!({"jwt_ids": ["leaked-1"], "macaroon_identifiers": ["user = 42; token-9"]});
    let e = engine_with(tokens);
    let mut c = good_claims();
    c["jti"] = json!("leaked-1");
    assert_eq!(
        refusal(&e, &hs_token(c.clone())),
        Some(DecisionErrorKind::Revoked)
    );
    c["jti"] = json!("fine-2");
    assert_eq!(refusal(&e, &hs_token(c)), None);
    let mut m = Macaroon::mint(&macaroon_key(), "user = 42; token-9", None);
    m.add_first_party_caveat("user = 42");
    assert_eq!(
        refusal(&e, &m.serialize(arbiter::MacaroonFormat::V2)),
        Some(DecisionErrorKind::Revoked)
    );
}
