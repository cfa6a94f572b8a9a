//! A refresher against an HTTP bundle server the test controls: every way a fetch can go wrong
//! leaves the engine serving its bundle with the status saying why, and the next good bundle is
//! picked up; a restart with the source down serves the cache.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arbiter::{pack_archive, BundleFile, BundleSigner, Engine, TrustedKeys};
use arbiter_fleet::{RefreshOptions, Refreshed, Refresher, Source, CACHE_ARCHIVE};
use support::{BundleServer, Reply};

const ALLOW: &str = "permit (principal, action, resource);";
const DENY: &str = "forbid (principal, action, resource);";
const REQUEST: &str = r#"{"principal": {"type": "User", "id": "1"},
    "action": {"type": "Action", "id": "read"}, "resource": {"type": "Doc", "id": "1"}}"#;

fn key(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../core/tests/fixtures/keys")
            .join(name),
    )
    .unwrap()
}

fn signer() -> BundleSigner {
    BundleSigner::from_pem(&key("ed.pem")).unwrap()
}

fn trusted() -> TrustedKeys {
    TrustedKeys::from_pems(&[signer().public_key_pem()]).unwrap()
}

/// The archive of a one-policy bundle signed by `by` at `signed_at`.
fn archive(policy: &str, signed_at: i64, by: &BundleSigner) -> Vec<u8> {
    let mut files = vec![BundleFile::new("policies.cedar", policy)];
    let signature = by.sign(&files, signed_at).unwrap();
    files.push(BundleFile::new(arbiter::SIGNATURE_FILE, signature));
    pack_archive(&files).unwrap()
}

fn decision(engine: &Engine) -> String {
    let answer: serde_json::Value =
        serde_json::from_str(&engine.authorize_json(REQUEST).unwrap()).unwrap();
    answer["decision"].as_str().unwrap().to_owned()
}

fn options(cache: &Path) -> RefreshOptions {
    RefreshOptions {
        cache_dir: Some(cache.to_owned()),
        timeout: Duration::from_millis(500),
        ..RefreshOptions::default()
    }
}

#[test]
fn a_refresh_keeps_serving_through_every_failure_and_picks_up_the_next_good_bundle() {
    let cache = tempfile::tempdir().unwrap();
    let server = BundleServer::start(Reply::Archive(
        archive(ALLOW, 1_000, &signer()),
        "\"a\"".into(),
    ));
    let source: Source = server.url.parse().unwrap();
    let mut refresher = Refresher::new(source, options(cache.path())).unwrap();
    let engine = refresher.start(Some(trusted())).unwrap();
    assert_eq!(decision(&engine), "allow");
    assert_eq!(refresher.status().served_from, "source");
    assert_eq!(refresher.status().signed_at, Some(1_000));

    // Unchanged: a conditional GET answered 304.
    assert_eq!(refresher.refresh(&engine).unwrap(), Refreshed::Unchanged);
    assert_eq!(server.conditional.load(Ordering::SeqCst), 1);
    assert_eq!(refresher.status().consecutive_failures, 0);

    let other_key = BundleSigner::from_pem(&key("ec.pem")).unwrap();
    let failures: Vec<(Reply, &str)> = vec![
        (Reply::Status(500), "HTTP status 500"),
        (Reply::Stall(Duration::from_secs(3)), "imeout"),
        (
            Reply::Truncated(archive(DENY, 2_000, &signer())),
            "reading the body",
        ),
        (
            Reply::Archive(archive(DENY, 2_000, &other_key), "\"b\"".into()),
            "does not trust",
        ),
        (
            Reply::Archive(archive(DENY, 500, &signer()), "\"c\"".into()),
            "before the serving bundle",
        ),
        (
            Reply::Archive(
                archive("permit (principal", 2_000, &signer()),
                "\"d\"".into(),
            ),
            "policies.cedar",
        ),
        (
            Reply::Archive(b"not an archive".to_vec(), "\"e\"".into()),
            "bundle archive",
        ),
    ];
    for (n, (reply, why)) in failures.into_iter().enumerate() {
        server.set(reply);
        let error = refresher.refresh(&engine).unwrap_err().to_string();
        assert!(error.contains(why), "{why}: {error}");
        assert_eq!(decision(&engine), "allow", "{why}: the old bundle serves");
        let status = engine.info().source.unwrap();
        assert_eq!(status.consecutive_failures, n as u64 + 1);
        assert_eq!(status.last_error.as_deref(), Some(error.as_str()));
        assert_eq!(status.signed_at, Some(1_000));
    }
    let metrics = engine.metrics().to_prometheus();
    assert!(
        metrics.contains("arbiter_bundle_source_consecutive_failures 7"),
        "{metrics}"
    );

    server.set(Reply::Archive(
        archive(DENY, 2_000, &signer()),
        "\"f\"".into(),
    ));
    assert!(matches!(
        refresher.refresh(&engine).unwrap(),
        Refreshed::Updated(_)
    ));
    assert_eq!(decision(&engine), "deny");
    let status = engine.info().source.unwrap();
    assert_eq!((status.consecutive_failures, status.last_error), (0, None));
    assert_eq!(status.signed_at, Some(2_000));
    // After failures, the next attempt waits at least the interval.
    assert!(refresher.next_refresh_in() > Duration::from_secs(40));
    assert!(refresher.refresh_if_due(&engine).is_none());
}

#[test]
fn a_restart_with_the_source_down_serves_the_cache_and_refuses_a_corrupted_one() {
    let cache = tempfile::tempdir().unwrap();
    let server = BundleServer::start(Reply::Archive(
        archive(DENY, 2_000, &signer()),
        "\"x\"".into(),
    ));
    let source: Source = server.url.parse().unwrap();
    Refresher::new(source.clone(), options(cache.path()))
        .unwrap()
        .start(Some(trusted()))
        .unwrap();

    // Down: the cached bundle serves, and the status says both where from and why.
    server.set(Reply::Status(503));
    let mut restarted = Refresher::new(source.clone(), options(cache.path())).unwrap();
    let engine = restarted.start(Some(trusted())).unwrap();
    assert_eq!(decision(&engine), "deny");
    let status = engine.info().source.unwrap();
    assert_eq!(status.served_from, "cache");
    assert_eq!(status.consecutive_failures, 1);
    assert!(status.last_error.unwrap().contains("503"));

    // Up again, but serving an older bundle than the cache's: refused at start, across the
    // restart, and the cache serves.
    server.set(Reply::Archive(
        archive(ALLOW, 1_000, &signer()),
        "\"old\"".into(),
    ));
    let engine = Refresher::new(source.clone(), options(cache.path()))
        .unwrap()
        .start(Some(trusted()))
        .unwrap();
    assert_eq!(decision(&engine), "deny");
    // ...unless an operator allows the rollback.
    let rollback = RefreshOptions {
        allow_rollback: true,
        ..options(cache.path())
    };
    let engine = Refresher::new(source.clone(), rollback)
        .unwrap()
        .start(Some(trusted()))
        .unwrap();
    assert_eq!(decision(&engine), "allow");

    // A corrupted cache is refused: no engine, and the error names the cache.
    server.set(Reply::Status(503));
    let path = cache.path().join(CACHE_ARCHIVE);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let error = Refresher::new(source, options(cache.path()))
        .unwrap()
        .start(Some(trusted()))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("corrupted"), "{error}");
}

#[test]
fn a_remote_source_needs_trusted_keys() {
    let server = BundleServer::start(Reply::Archive(archive(ALLOW, 1, &signer()), "\"a\"".into()));
    let mut refresher =
        Refresher::new(server.url.parse().unwrap(), RefreshOptions::default()).unwrap();
    let error = refresher.start(None).err().unwrap().to_string();
    assert!(error.contains("must be signed"), "{error}");
    let unsigned = Engine::from_files([BundleFile::new("p.cedar", ALLOW)]).unwrap();
    assert!(refresher.refresh(&unsigned).is_err());
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
}

#[test]
fn a_directory_source_reloads_when_its_files_change() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policies.cedar"), ALLOW).unwrap();
    let mut refresher = Refresher::new(
        Source::Dir(dir.path().to_owned()),
        RefreshOptions::default(),
    )
    .unwrap();
    let engine = refresher.start(None).unwrap();
    assert_eq!(refresher.refresh(&engine).unwrap(), Refreshed::Unchanged);
    std::fs::write(dir.path().join("policies.cedar"), DENY).unwrap();
    assert!(matches!(
        refresher.refresh(&engine).unwrap(),
        Refreshed::Updated(_)
    ));
    assert_eq!(decision(&engine), "deny");
    std::fs::write(dir.path().join("policies.cedar"), "permit (").unwrap();
    assert!(refresher.refresh(&engine).is_err());
    assert_eq!(decision(&engine), "deny");
}
