//! Property tests of tokens: macaroons survive every serialization they can be held in; a JWT's
//! claims come back as minted; and a decision is never an allow when its token does not verify
//! (tokens changed by one byte, cut short, re-headed or made up), nor when the request itself is
//! malformed.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use arbiter::{BundleFile, Engine, Macaroon, MacaroonFormat, Minter, SigningKey};

use crate::support::DecideJson;

const NOW: i64 = 1_800_000_000;
const SECRET: [u8; 32] = [7; 32];

/// Everyone may read: whether a request is allowed depends on its token alone.
fn engine() -> Engine {
    let tokens = json!({"jwt": {"issuers": [
        {"issuer": "https://hs.example", "algorithms": ["HS256"], "hmac_secret_file": "keys/hs.b64",
         "secret_encoding": "base64", "required_claims": ["exp", "sub"],
         "principal": {"type": "User", "id_claim": "sub"}}]}});
    Engine::from_files([
        BundleFile::new(
            "p.cedar",
            r#"@id("all") permit (principal, action, resource);"#,
        ),
        BundleFile::new("tokens.json", tokens.to_string()),
        BundleFile::new("keys/hs.b64", STANDARD.encode(SECRET)),
    ])
    .unwrap()
    .with_fixed_time(NOW)
}

fn minter() -> Minter {
    Minter::new(
        "https://hs.example",
        SigningKey::from_hmac_secret("k", "HS256", &SECRET).unwrap(),
    )
}

fn claim_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        prop::collection::vec(any::<String>(), 0..3).prop_map(Value::from),
    ]
}

fn claims() -> impl Strategy<Value = Map<String, Value>> {
    (
        "[a-z0-9]{1,12}",
        prop::collection::btree_map("x_[a-z]{1,8}", claim_value(), 0..5),
    )
        .prop_map(|(sub, extra)| {
            let mut claims: Map<String, Value> = extra.into_iter().collect();
            claims.insert("sub".into(), Value::from(sub));
            claims
        })
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..40)
}

/// A macaroon built through the public API: first-party and third-party caveats, binary ids.
fn macaroon() -> impl Strategy<Value = Macaroon> {
    (
        prop::collection::vec(any::<u8>(), 1..40),
        prop::option::of("[ -~]{1,20}"),
        prop::collection::vec(
            (
                bytes(),
                prop::option::of(("[ -~]{1,20}", prop::option::of("[ -~]{1,20}"))),
            ),
            0..5,
        ),
    )
        .prop_map(|(identifier, location, caveats)| {
            let mut m = Macaroon::mint(b"root key", identifier, location.as_deref());
            for (id, third_party) in caveats {
                match third_party {
                    None => m.add_first_party_caveat(id),
                    Some((key, location)) => {
                        m.add_third_party_caveat(key.as_bytes(), id, location.as_deref())
                    }
                }
            }
            m
        })
}

/// What can happen to a token on its way: nothing, or a change that must make it fail.
#[derive(Debug, Clone)]
enum Damage {
    None,
    Flip(usize, u8),
    Truncate(usize),
    Header(String),
    Garbage(String),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        Just(Damage::None),
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Damage::Flip(i, x)),
        any::<usize>().prop_map(Damage::Truncate),
        prop_oneof![
            Just(r#"{"alg":"none"}"#.to_owned()),
            Just(r#"{"alg":"HS512","kid":"k"}"#.to_owned()),
            Just(r#"{"alg":"RS256","kid":"k"}"#.to_owned()),
            "\\{\"alg\":\"[A-Za-z0-9]{0,6}\"\\}",
        ]
        .prop_map(Damage::Header),
        "[ -~]{0,80}".prop_map(Damage::Garbage),
    ]
}

/// Whether the damage must make the token fail: everything but a flip of the last character of a
/// segment (whose low bits base64 may ignore) changes what the signature covers or the
/// signature itself.
fn must_fail(token: &str, damage: &Damage) -> bool {
    match damage {
        Damage::None => false,
        Damage::Flip(i, _) => {
            let i = i % token.len();
            let last_of_segment = i + 1 == token.len() || token.as_bytes()[i + 1] == b'.';
            !last_of_segment
        }
        Damage::Truncate(_) | Damage::Header(_) | Damage::Garbage(_) => true,
    }
}

fn apply(token: &str, damage: &Damage) -> String {
    match damage {
        Damage::None => token.to_owned(),
        Damage::Flip(i, x) => {
            let mut bytes = token.as_bytes().to_vec();
            let i = i % bytes.len();
            bytes[i] ^= x;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Damage::Truncate(n) => token[..n % token.len()].to_owned(),
        Damage::Header(header) => {
            let rest = token.split_once('.').map_or("", |(_, rest)| rest);
            format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header))
        }
        Damage::Garbage(text) => text.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn macaroons_survive_both_version_2_formats(m in macaroon()) {
        for format in [MacaroonFormat::V2, MacaroonFormat::V2Json] {
            prop_assert_eq!(&Macaroon::deserialize(&m.serialize(format)).unwrap(), &m);
        }
    }

    #[test]
    fn first_party_macaroons_survive_version_1(
        identifier in "[!-~]{1,30}",
        caveats in prop::collection::vec("[ -~]{1,30}", 0..5),
    ) {
        let mut m = Macaroon::mint(b"root key", identifier, Some("https://example.org/"));
        for c in caveats {
            m.add_first_party_caveat(c);
        }
        prop_assert_eq!(Macaroon::deserialize(&m.serialize(MacaroonFormat::V1)).unwrap(), m);
    }

    #[test]
    fn jwt_claims_come_back_as_minted(claims in claims(), ttl in 1u64..100_000) {
        let token = minter().mint(claims.clone(), ttl, NOW).unwrap();
        let info = engine().verify_token(&token).unwrap();
        for (name, value) in &claims {
            prop_assert_eq!(&info.claims()[name], value, "claim {}", name);
        }
        prop_assert_eq!(info.principal().to_string(), format!("User::{}", json!(claims["sub"])));
    }

    #[test]
    fn a_token_that_does_not_verify_never_allows(claims in claims(), damage in damage()) {
        let engine = engine();
        let minted = minter().mint(claims, 600, NOW).unwrap();
        let token = apply(&minted, &damage);
        let verified = engine.verify_token(&token);
        prop_assert!(!(must_fail(&minted, &damage) && verified.is_ok()), "{:?} verified", damage);
        let request = json!({"action": {"type": "Action", "id": "read"},
                             "resource": {"type": "Doc", "id": "1"}, "token": token});
        let decision = engine.decide_json(&request.to_string()).unwrap();
        match verified {
            Ok(_) => prop_assert!(decision.allowed() && decision.errors.is_empty()),
            Err(e) => {
                prop_assert!(!matches!(damage, Damage::None), "an untouched token failed: {:?}", e);
                prop_assert!(!decision.allowed());
                prop_assert_eq!(decision.errors.len(), 1);
                prop_assert_eq!(decision.errors[0].kind, e.kind);
            }
        }
    }

    #[test]
    fn a_malformed_request_is_an_error_never_a_decision(cut in 1usize..200, junk in "[{}\\[\\]\",:a-z0-9 ]{0,20}") {
        let request = json!({"principal": {"type": "User", "id": "a"}, "action": {"type": "Action", "id": "read"},
                             "resource": {"type": "Doc", "id": "1"}}).to_string();
        let broken = format!("{}{junk}", &request[..cut % request.len()]);
        if serde_json::from_str::<Value>(&broken).is_err() {
            prop_assert!(engine().authorize_json(&broken).is_err());
        }
    }
}
