//! Token verification: Arbiter against raw jsonwebtoken (HS256) and raw aws-lc-rs (RS256,
//! ES256) on the same token, and Arbiter's cache hit. Arbiter's figures go through the public
//! `Engine::verify_token`, cache off unless said otherwise.

use arbiter::{BundleFile, Engine, Minter, SigningKey};
use arbiter_benches::fixture;
use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Map, Value};
use std::hint::black_box;

const NOW: i64 = 1_900_000_000;

fn engine(issuer: Value, cache_entries: usize) -> Engine {
    let tokens = json!({"jwt": {"issuers": [issuer]}, "cache": {"max_entries": cache_entries}});
    Engine::from_files([
        BundleFile::new("p.cedar", "permit (principal, action, resource);"),
        BundleFile::new("tokens.json", tokens.to_string()),
        BundleFile::new("hs.b64", String::from_utf8(fixture("hs256.b64")).unwrap()),
    ])
    .unwrap()
    .with_fixed_time(NOW)
}

fn claims(iss: &str) -> Map<String, Value> {
    serde_json::from_value(json!({"iss": iss, "sub": "42", "aud": "api", "exp": NOW + 3_600}))
        .unwrap()
}

fn parts(token: &str) -> (&[u8], Vec<u8>) {
    let (input, signature) = token.rsplit_once('.').unwrap();
    (input.as_bytes(), URL_SAFE_NO_PAD.decode(signature).unwrap())
}

fn hs256(c: &mut Criterion) {
    let secret = STANDARD
        .decode(String::from_utf8(fixture("hs256.b64")).unwrap().trim())
        .unwrap();
    let issuer = json!({"issuer": "hs", "audiences": ["api"], "algorithms": ["HS256"], "hmac_secret_file": "hs.b64",
                        "secret_encoding": "base64", "principal": {"type": "User"}});
    let arbiter = engine(issuer.clone(), 0);
    let token = Minter::new(
        "hs",
        SigningKey::from_hmac_secret("k", "HS256", &secret).unwrap(),
    )
    .mint(claims("hs"), 3_600, NOW)
    .unwrap();
    arbiter
        .verify_token(&token)
        .expect("the benchmark token verifies");
    let key = jsonwebtoken::DecodingKey::from_secret(&secret).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_exp = false;
    validation.set_audience(&["api"]);
    validation.set_issuer(&["hs"]);
    jsonwebtoken::decode::<Value>(&token, &key, &validation).expect("jsonwebtoken verifies it too");

    let mut group = c.benchmark_group("token/hs256");
    group.bench_function("arbiter", |b| {
        b.iter(|| arbiter.verify_token(black_box(&token)).unwrap())
    });
    group.bench_function("jsonwebtoken", |b| {
        b.iter(|| jsonwebtoken::decode::<Value>(black_box(&token), &key, &validation).unwrap())
    });
    group.finish();

    let cached = engine(issuer, 10_000);
    cached.verify_token(&token).unwrap();
    let mut group = c.benchmark_group("token/cache_hit");
    group.bench_function("arbiter", |b| {
        b.iter(|| cached.verify_token(black_box(&token)).unwrap())
    });
    group.finish();
}

/// An asymmetric algorithm: Arbiter against aws-lc-rs verifying the same signature with the
/// same public key, as jsonwebtoken's aws-lc backend hands it over.
fn asymmetric(c: &mut Criterion, alg: &str, pem: &str) {
    let key = SigningKey::from_pem("k", alg, &fixture(pem)).unwrap();
    let minter = Minter::new("as", key);
    let jwk = minter.jwks()["keys"][0].clone();
    let issuer = json!({"issuer": "as", "audiences": ["api"], "algorithms": [alg], "jwks": minter.jwks(), "principal": {"type": "User"}});
    let arbiter = engine(issuer, 0);
    let token = minter.mint(claims("as"), 3_600, NOW).unwrap();
    arbiter
        .verify_token(&token)
        .expect("the benchmark token verifies");
    let (input, sig) = parts(&token);
    let field = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    let raw: Box<dyn Fn() -> bool> = match alg {
        "RS256" => {
            let (n, e) = (field("n"), field("e"));
            let (input, sig) = (input.to_vec(), sig.clone());
            Box::new(move || {
                RsaPublicKeyComponents { n: &n, e: &e }
                    .verify(&signature::RSA_PKCS1_2048_8192_SHA256, &input, &sig)
                    .is_ok()
            })
        }
        _ => {
            let mut point = vec![4u8];
            point.extend(field("x"));
            point.extend(field("y"));
            let (input, sig) = (input.to_vec(), sig.clone());
            Box::new(move || {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
                    .verify(&input, &sig)
                    .is_ok()
            })
        }
    };
    assert!(raw(), "aws-lc-rs verifies it too");

    let mut group = c.benchmark_group(format!("token/{}", alg.to_lowercase()));
    group.bench_function("arbiter", |b| {
        b.iter(|| arbiter.verify_token(black_box(&token)).unwrap())
    });
    group.bench_function("aws-lc-rs", |b| b.iter(|| assert!(black_box(raw()))));
    group.finish();
}

fn rs256(c: &mut Criterion) {
    asymmetric(c, "RS256", "rsa.pem");
}

fn es256(c: &mut Criterion) {
    asymmetric(c, "ES256", "ec.pem");
}

criterion_group!(benches, hs256, rs256, es256);
criterion_main!(benches);
