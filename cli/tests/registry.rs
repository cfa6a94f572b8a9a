//! `arbiter bundle push` and `pull` against a real OCI registry (Debian's `docker-registry`,
//! started on loopback for each test and stopped after) and a third-party client (`oras`):
//! pushed by one, pulled by the other, by tag and by digest; and a refresher following a tag.
//! Run by `make fleet-test`, which installs both (they are not Rust dependencies), hence
//! `ignore` here.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use arbiter::{BundleSigner, Engine, TrustedKeys};
use arbiter_fleet::{RefreshOptions, Refreshed, Refresher, Source};

const ARTIFACT_TYPE: &str = "application/vnd.arbiter.bundle.v1";

/// A registry of its own: storage in a temporary directory, killed when dropped.
struct Registry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\nhttp:\n  addr: {host}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        // Its log (every 404 a client's probe meets is logged as an error) goes to a file.
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry runs (apt-get install docker-registry)");
        let registry = Self {
            child,
            host,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.host).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not start: {}",
                std::fs::read_to_string(registry._dir.path().join("registry.log")).unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn oci(&self, repo_and_tag: &str) -> String {
        format!("oci://{}/{repo_and_tag}", self.host)
    }

    /// The same reference as oras writes it.
    fn plain(&self, repo_and_tag: &str) -> String {
        format!("{}/{repo_and_tag}", self.host)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn arbiter(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_arbiter"), args)
}

/// oras, as `make fleet-test` builds it.
fn oras_command() -> Command {
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/bin/oras"))
}

fn oras(args: &[&str]) -> Output {
    oras_command()
        .args(args)
        .output()
        .expect("oras runs (make fleet-test builds it)")
}

/// `arbiter bundle push DIR REFERENCE --plain-http`, which must succeed: its JSON.
fn push(bundle: &Path, reference: &str) -> serde_json::Value {
    let bundle = bundle.to_str().unwrap();
    json(&ok(arbiter(&[
        "bundle",
        "push",
        bundle,
        reference,
        "--plain-http",
    ])))
}

/// `arbiter bundle pull REFERENCE --out OUT --public-key KEY --plain-http`.
fn pull(reference: &str, out: &Path, public_key: &Path) -> Output {
    let (out, key) = (out.to_str().unwrap(), public_key.to_str().unwrap());
    arbiter(&[
        "bundle",
        "pull",
        reference,
        "--out",
        out,
        "--public-key",
        key,
        "--plain-http",
    ])
}

/// `arbiter bundle pack DIR --out ARCHIVE`, which must succeed: its JSON.
fn pack(bundle: &Path, archive: &Path) -> serde_json::Value {
    let (bundle, archive) = (bundle.to_str().unwrap(), archive.to_str().unwrap());
    json(&ok(arbiter(&["bundle", "pack", bundle, "--out", archive])))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn key_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/fixtures/keys")
        .join(name)
}

/// A copy of the default bundle in `dir/name`, signed at `signed_at` with the Ed25519 key
/// (with `policy` added, when given); answers the directory and the public key file.
fn signed_bundle(
    dir: &Path,
    name: &str,
    signed_at: i64,
    policy: Option<&str>,
) -> (PathBuf, PathBuf) {
    let bundle = dir.join(name);
    let files =
        arbiter::read_bundle_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/gitlab"))
            .unwrap();
    let mut files: Vec<_> = files
        .into_iter()
        .filter(|f| f.path != arbiter::SIGNATURE_FILE)
        .collect();
    if let Some(policy) = policy {
        files.push(arbiter::BundleFile::new("zz-extra.cedar", policy));
    }
    let signer = BundleSigner::from_pem(&std::fs::read(key_file("ed.pem")).unwrap()).unwrap();
    files.push(arbiter::BundleFile::new(
        arbiter::SIGNATURE_FILE,
        signer.sign(&files, signed_at).unwrap(),
    ));
    arbiter::write_bundle_dir(&bundle, &files).unwrap();
    let public = dir.join(format!("{name}.pub"));
    std::fs::write(&public, signer.public_key_pem()).unwrap();
    (bundle, public)
}

fn same_files(a: &Path, b: &Path) {
    let sorted = |p: &Path| {
        let mut files = arbiter::read_bundle_dir(p).unwrap();
        files.sort_by(|x, y| x.path.cmp(&y.path));
        files
    };
    assert_eq!(sorted(a), sorted(b));
}

#[test]
#[ignore = "needs Debian's docker-registry and oras (make fleet-test)"]
fn pushed_by_arbiter_pulled_by_oras_and_the_same_bundle_gives_the_same_digest() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (bundle, _) = signed_bundle(dir.path(), "bundle", 1_000, None);
    let reference = registry.oci("arbiter/gitlab:v1");
    let pushed = push(&bundle, &reference);
    let again = push(&bundle, &reference);
    assert_eq!(pushed["digest"], again["digest"], "reproducible");

    let manifest = json(&ok(oras(&[
        "manifest",
        "fetch",
        "--plain-http",
        &registry.plain("arbiter/gitlab:v1"),
    ])));
    assert_eq!(manifest["artifactType"], ARTIFACT_TYPE);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        arbiter::ARCHIVE_MEDIA_TYPE
    );
    assert_eq!(manifest["annotations"]["dev.arbiter.bundle.name"], "gitlab");

    let out = dir.path().join("oras-out");
    ok(oras(&[
        "pull",
        "--plain-http",
        &registry.plain("arbiter/gitlab:v1"),
        "-o",
        out.to_str().unwrap(),
    ]));
    let archive = dir.path().join("packed.tar.gz");
    let packed = pack(&bundle, &archive);
    assert_eq!(
        std::fs::read(out.join("bundle.tar.gz")).unwrap(),
        std::fs::read(&archive).unwrap(),
        "oras pulls exactly what arbiter bundle pack writes"
    );
    assert_eq!(packed["digest"], manifest["layers"][0]["digest"]);
}

#[test]
#[ignore = "needs Debian's docker-registry and oras (make fleet-test)"]
fn pushed_by_oras_pulled_by_arbiter_by_tag_and_by_digest() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (bundle, public) = signed_bundle(dir.path(), "bundle", 1_000, None);
    pack(&bundle, &dir.path().join("bundle.tar.gz"));
    let layer = format!("bundle.tar.gz:{}", arbiter::ARCHIVE_MEDIA_TYPE);
    ok(oras_command()
        .current_dir(dir.path())
        .args([
            "push",
            "--plain-http",
            &registry.plain("arbiter/oras:v2"),
            "--artifact-type",
            ARTIFACT_TYPE,
            &layer,
        ])
        .output()
        .unwrap());
    let digest = ok(oras(&[
        "resolve",
        "--plain-http",
        &registry.plain("arbiter/oras:v2"),
    ]));
    let digest = digest.trim();

    for (reference, out) in [
        (registry.oci("arbiter/oras:v2"), "by-tag"),
        (registry.oci(&format!("arbiter/oras@{digest}")), "by-digest"),
    ] {
        let out = dir.path().join(out);
        let pulled = json(&ok(pull(&reference, &out, &public)));
        assert_eq!(pulled["digest"], digest);
        same_files(&bundle, &out);
        Engine::from_bundle_dir(&out).unwrap();
    }
}

#[test]
#[ignore = "needs Debian's docker-registry and oras (make fleet-test)"]
fn a_pull_refuses_an_untrusted_or_unsigned_bundle_and_writes_nothing() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (bundle, _) = signed_bundle(dir.path(), "bundle", 1_000, None);
    let reference = registry.oci("arbiter/untrusted:v1");
    push(&bundle, &reference);
    // A key that did not sign it.
    let other = dir.path().join("other.pub");
    let signer = BundleSigner::from_pem(&std::fs::read(key_file("ec.pem")).unwrap()).unwrap();
    std::fs::write(&other, signer.public_key_pem()).unwrap();
    let out = dir.path().join("out");
    let refused = pull(&reference, &out, &other);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("signature"));
    assert!(!out.exists());

    // Unsigned: the signature file dropped before pushing.
    std::fs::remove_file(bundle.join(arbiter::SIGNATURE_FILE)).unwrap();
    push(&bundle, &reference);
    let refused = pull(&reference, &out, &dir.path().join("bundle.pub"));
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not signed"));
    assert!(!out.exists());
}

#[test]
#[ignore = "needs Debian's docker-registry and oras (make fleet-test)"]
fn a_refresher_follows_a_tag_by_digest() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (v1, public) = signed_bundle(dir.path(), "v1", 1_000, None);
    let (v2, _) = signed_bundle(
        dir.path(),
        "v2",
        2_000,
        Some("@id(\"nobody\") forbid (principal, action, resource);"),
    );
    let reference = registry.oci("arbiter/fleet:stable");
    push(&v1, &reference);
    let keys = TrustedKeys::from_pems(&[std::fs::read(public).unwrap()]).unwrap();
    let options = RefreshOptions {
        plain_http: true,
        cache_dir: Some(dir.path().join("cache")),
        ..RefreshOptions::default()
    };
    let mut refresher = Refresher::new(reference.parse::<Source>().unwrap(), options).unwrap();
    let engine = refresher.start(Some(keys)).unwrap();
    let first = refresher.status().digest.clone().unwrap();
    assert_eq!(refresher.refresh(&engine).unwrap(), Refreshed::Unchanged);

    let pushed = push(&v2, &reference);
    let second = pushed["digest"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(
        refresher.refresh(&engine).unwrap(),
        Refreshed::Updated(second.clone())
    );
    assert_eq!(engine.info().source.unwrap().digest, Some(second));
    assert_eq!(engine.info().signed_at, Some(2_000));

    // The tag moved back to v1: an older bundle, refused; v2 keeps serving.
    push(&v1, &reference);
    let error = refresher.refresh(&engine).unwrap_err().to_string();
    assert!(error.contains("before the serving bundle"), "{error}");
    assert_eq!(engine.info().signed_at, Some(2_000));
}
