//! The `arbiter` binary: output and exit codes of the contract.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn arbiter(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("arbiter runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn request(user: &str, action: &str, project: &str, access_level: u32) -> String {
    format!(
        r#"{{"principal": {{"type": "Gitlab::User", "id": "{user}"}}, "action": {{"type": "Gitlab::Action", "id": "{action}"}}, "resource": {{"type": "Gitlab::Project", "id": "{project}"}}, "context": {{"access_level": {access_level}, "admin_mode": false}}}}"#
    )
}

#[test]
fn check_exits_0_on_allow_1_on_deny_2_on_invalid_input() {
    let allow = arbiter(&["check"], &request("alice", "push_code", "3", 30));
    assert_eq!(allow.status.code(), Some(0));
    assert_eq!(
        stdout(&allow).trim(),
        r#"{"decision":"allow","reasons":["role-developer"],"errors":[]}"#
    );

    let deny = arbiter(
        &["check", "--request", "-"],
        &request("bob", "push_code", "3", 30),
    );
    assert_eq!(deny.status.code(), Some(1));
    assert!(stdout(&deny).contains(r#""reasons":["user-blocked"]"#));

    let invalid = arbiter(&["check"], "{\"principal\": ");
    assert_eq!(invalid.status.code(), Some(2));
    assert!(stdout(&invalid).contains(r#""kind":"malformed_request""#));
}

#[test]
fn check_reads_a_request_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    std::fs::write(&path, request("alice", "read_project", "1", 0)).unwrap();
    let out = arbiter(&["check", "--request", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let missing = arbiter(&["check", "--request", "/nonexistent.json"], "");
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn batch_prints_one_line_per_request_and_an_error_line_for_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batch.jsonl");
    let lines = [
        request("alice", "push_code", "3", 30),
        "{oops".to_owned(),
        String::new(),
        request("alice", "push_code", "3", 20),
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    let out = arbiter(&["check", "--requests", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    let printed: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed.len(), 3);
    assert_eq!(printed[0]["decision"], "allow");
    assert_eq!(printed[1]["error"]["kind"], "malformed_request");
    assert_eq!(printed[1]["error"]["line"], 2);
    assert_eq!(printed[2]["decision"], "deny");

    std::fs::write(&path, [&lines[0], &lines[3]].map(|s| s.as_str()).join("\n")).unwrap();
    let out = arbiter(&["check", "--requests", path.to_str().unwrap()], "");
    assert_eq!(
        out.status.code(),
        Some(0),
        "a batch of valid requests exits 0 even with denies"
    );
}

#[test]
fn validate_reports_problems_with_file_and_line_and_exits_2() {
    assert_eq!(arbiter(&["validate"], "").status.code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        "permit (principal, action, resource);\nforbid (principal, action, resource) when { 1 + };",
    )
    .unwrap();
    let out = arbiter(&["validate", "--bundle", dir.path().to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("a.cedar:2:"), "{stderr}");
}

#[test]
fn test_runs_the_default_bundle_tests() {
    let out = arbiter(&["test"], "");
    let text = stdout(&out);
    let last = text.lines().last().unwrap_or_default();
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{text}");
    assert!(passed >= 200, "{last}");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn test_reports_failures_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.cedar"),
        r#"@id("all") permit (principal, action, resource);"#,
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    let case = |name: &str, decision: &str| {
        format!(
            r#"{{"name": "{name}", "request": {{"principal": {{"type": "U", "id": "a"}}, "action": {{"type": "Action", "id": "x"}}, "resource": {{"type": "R", "id": "r"}}}}, "decision": "{decision}"}}"#
        )
    };
    std::fs::write(
        dir.path().join("tests/t.json"),
        format!(
            r#"{{"cases": [{}, {}]}}"#,
            case("allowed", "allow"),
            case("wrongly expects deny", "deny")
        ),
    )
    .unwrap();
    let out = arbiter(&["test", "--bundle", dir.path().to_str().unwrap()], "");
    let text = stdout(&out);
    assert!(
        text.contains("FAIL tests/t.json: wrongly expects deny"),
        "{text}"
    );
    assert_eq!(text.lines().last(), Some("1 passed, 1 failed"));
    assert_eq!(out.status.code(), Some(1));
}

fn keys(name: &str) -> String {
    format!(
        "{}/../core/tests/fixtures/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn run(args: &[&str]) -> Output {
    arbiter(args, "")
}

/// A bundle directory trusting the test RSA key (as `https://issuer.example`) and a macaroon key.
fn token_bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let jwks = run(&[
        "token",
        "jwks",
        "--key",
        &format!("k1:RS256:{}", keys("rsa.pem")),
    ]);
    assert_eq!(jwks.status.code(), Some(0));
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/jwks.json"), &jwks.stdout).unwrap();
    std::fs::copy(keys("macaroon.key"), dir.path().join("keys/root.key")).unwrap();
    std::fs::write(
        dir.path().join("p.cedar"),
        r#"@id("readers") permit (principal is User, action == Action::"read", resource);"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tokens.json"),
        r#"{"jwt": {"issuers": [{"issuer": "https://issuer.example", "audiences": ["api"], "algorithms": ["RS256"],
             "jwks_file": "keys/jwks.json", "principal": {"type": "User"}}]},
            "macaroon": {"root_keys": [{"id": "k1", "secret_file": "keys/root.key"}], "principal": {"type": "User", "id_caveat": "user"}}}"#,
    )
    .unwrap();
    dir
}

#[test]
fn token_verify_prints_the_contract_json_and_exits_0_or_1() {
    let bundle = token_bundle();
    let dir = bundle.path().to_str().unwrap();
    let key = format!("k1:RS256:{}", keys("rsa.pem"));
    let minted = run(&[
        "token",
        "mint",
        "jwt",
        "--issuer",
        "https://issuer.example",
        "--key",
        &key,
        "--subject",
        "42",
        "--audience",
        "api",
        "--ttl",
        "60",
        "--now",
        "1800000000",
    ]);
    assert_eq!(
        minted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let token = stdout(&minted).trim().to_owned();

    let ok = run(&[
        "token",
        "verify",
        "--bundle",
        dir,
        "--token",
        &token,
        "--now",
        "1800000030",
    ]);
    assert_eq!(ok.status.code(), Some(0));
    let answer: serde_json::Value = serde_json::from_str(&stdout(&ok)).unwrap();
    assert_eq!(answer["valid"], true);
    assert_eq!(answer["kind"], "jwt");
    assert_eq!(
        answer["principal"],
        serde_json::json!({"type": "User", "id": "42"})
    );
    assert_eq!(answer["claims"]["aud"], "api");

    let late = run(&[
        "token",
        "verify",
        "--bundle",
        dir,
        "--token",
        &token,
        "--now",
        "1800000061",
    ]);
    assert_eq!(late.status.code(), Some(1));
    let answer: serde_json::Value = serde_json::from_str(&stdout(&late)).unwrap();
    assert_eq!(
        (answer["valid"].clone(), answer["error"]["kind"].clone()),
        (serde_json::json!(false), serde_json::json!("expired"))
    );

    // The same token decides a request through `check`, as of the given time.
    let request = format!(
        r#"{{"action": {{"type": "Action", "id": "read"}}, "resource": {{"type": "Doc", "id": "d"}}, "token": "{token}"}}"#
    );
    assert_eq!(
        arbiter(&["check", "--bundle", dir, "--now", "1800000030"], &request)
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        arbiter(&["check", "--bundle", dir, "--now", "1800000061"], &request)
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn minted_macaroons_verify_with_their_caveats() {
    let bundle = token_bundle();
    let dir = bundle.path().to_str().unwrap();
    for format in ["v1", "v2", "v2j"] {
        let minted = run(&[
            "token",
            "mint",
            "macaroon",
            "--root-key-file",
            &keys("macaroon.key"),
            "--identifier",
            "t-1",
            "--caveat",
            "user = 42",
            "--caveat",
            "action = read",
            "--format",
            format,
        ]);
        let token = stdout(&minted).trim().to_owned();
        let out = run(&["token", "verify", "--bundle", dir, "--token", &token]);
        assert_eq!(out.status.code(), Some(0), "{format}: {}", stdout(&out));
        let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(answer["kind"], "macaroon");
        assert_eq!(
            answer["claims"]["caveats"],
            serde_json::json!(["user = 42", "action = read"])
        );
    }
}

#[test]
fn the_default_bundle_accepts_no_token_until_its_keys_are_given() {
    let key = format!("k1:RS256:{}", keys("rsa.pem"));
    let minted = run(&[
        "token",
        "mint",
        "jwt",
        "--issuer",
        "gitlab.example.com",
        "--key",
        &key,
        "--subject",
        "gid://gitlab/Ci::Build/100",
        "--audience",
        "gitlab-authz-token",
    ]);
    let token = format!("glcbt-{}", stdout(&minted).trim());
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(["token", "verify", "--token", &token])
        .env_remove("ARBITER_GITLAB_JWKS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(r#""kind":"unknown_key""#),
        "{}",
        stdout(&out)
    );

    let jwks = stdout(&run(&["token", "jwks", "--key", &key]));
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(["token", "verify", "--token", &token])
        .env("ARBITER_GITLAB_JWKS", jwks.trim())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        answer["principal"],
        serde_json::json!({"type": "Gitlab::CiJob", "id": "100"})
    );
}

#[test]
fn token_jwks_lists_the_active_key_first_then_retired_ones() {
    let out = run(&[
        "token",
        "jwks",
        "--key",
        &format!("new:ES256:{}", keys("ec.pem")),
        "--key",
        &format!("old:RS256:{}", keys("rsa.pem")),
    ]);
    let jwks: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["new", "old"]);
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private key material"
    );
    let bad = run(&["token", "jwks", "--key", "k1:RS256:/nonexistent.pem"]);
    assert_eq!(bad.status.code(), Some(2));
}
