//! The `arbiter` binary: output and exit codes of the contract.
//!
//! Long: one test per command, option and exit code of the contract, all through one runner.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};

/// `arbiter` with `args`, its standard streams piped.
fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("arbiter runs")
}

/// The output of `arbiter` with `args`, given `stdin`.
fn arbiter(args: &[&str], stdin: &str) -> Output {
    finish(spawn(args), stdin)
}

fn finish(mut child: Child, stdin: &str) -> Output {
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

/// A check request. In entities.json, alice is a Developer of project 10, bob (blocked) too, and
/// eve a Reporter; no one is a member of project 3.
fn request(user: &str, action: &str, project: &str) -> String {
    format!(
        r#"{{"principal": {{"type": "Gitlab::User", "id": "{user}"}}, "action": {{"type": "Gitlab::Action", "id": "{action}"}}, "resource": {{"type": "Gitlab::Project", "id": "{project}"}}, "context": {{"admin_mode": false}}}}"#
    )
}

#[test]
fn check_exits_0_on_allow_1_on_deny_2_on_invalid_input() {
    let allow = arbiter(&["check"], &request("alice", "push_code", "10"));
    assert_eq!(allow.status.code(), Some(0));
    assert_eq!(
        stdout(&allow).trim(),
        r#"{"decision":"allow","reasons":["role-developer"],"errors":[]}"#
    );

    let deny = arbiter(
        &["check", "--request", "-"],
        &request("bob", "push_code", "10"),
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
    std::fs::write(&path, request("alice", "read_project", "1")).unwrap();
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
        request("alice", "push_code", "10"),
        "{oops".to_owned(),
        String::new(),
        request("eve", "push_code", "10"),
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
fn check_appends_a_decision_log_line_per_decision() {
    let dir = tempfile::tempdir().unwrap();
    let (requests, log) = (
        dir.path().join("batch.jsonl"),
        dir.path().join("decisions.log"),
    );
    let with_id = |r: String, id: &str| r.replacen('{', &format!(r#"{{"request_id": "{id}", "#), 1);
    let lines = [
        with_id(request("alice", "push_code", "10"), "r-1"),
        "{oops".to_owned(),
        with_id(request("eve", "push_code", "10"), "r-2"),
    ];
    std::fs::write(&requests, lines.join("\n")).unwrap();
    let args = [
        "check",
        "--requests",
        requests.to_str().unwrap(),
        "--decision-log",
        log.to_str().unwrap(),
    ];
    assert_eq!(arbiter(&args, "").status.code(), Some(2));
    assert_eq!(arbiter(&args, "").status.code(), Some(2));
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Two runs appended: each logged its two decisions, not the bad line.
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r-1", "r-2", "r-1", "r-2"]);
    assert_eq!(events[0]["decision"], "allow");
    assert_eq!(events[0]["bundle"]["name"], "gitlab");
    assert_eq!(events[1]["decision"], "deny");
    assert_eq!(events[1]["principal"]["id"], "eve");

    // `-` writes the log to standard error, leaving standard output to the decision.
    let out = arbiter(
        &["check", "--decision-log", "-"],
        &with_id(request("alice", "push_code", "10"), "r-3"),
    );
    let event: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stderr).trim()).unwrap();
    assert_eq!(event["request_id"], "r-3");
    assert!(stdout(&out).starts_with(r#"{"decision":"allow""#));
}

#[test]
fn metrics_count_a_sample_run_in_prometheus_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sample.jsonl");
    let lines = [
        request("alice", "push_code", "10"),
        request("alice", "push_code", "10"),
        request("eve", "push_code", "10"),
        request("alice", "push_code", "10").replace("Gitlab::Action", "Gitlab::Nope"),
        "{oops".to_owned(),
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    let out = arbiter(&["metrics", "--requests", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for sample in [
        r#"arbiter_decisions_total{action="Gitlab::Action::push_code",decision="allow"} 2"#,
        r#"arbiter_decisions_total{action="Gitlab::Action::push_code",decision="deny"} 1"#,
        r#"arbiter_request_errors_total{kind="malformed_request"} 1"#,
        r#"arbiter_request_errors_total{kind="invalid_request"} 1"#,
        r#"arbiter_decision_duration_seconds_bucket{le="+Inf"} 5"#,
        "arbiter_decision_duration_seconds_count 5",
        r#"arbiter_bundle_info{name="gitlab",version=""#,
        r#"arbiter_bundle_reloads_total{result="error"} 0"#,
        "# TYPE arbiter_decision_duration_seconds histogram",
    ] {
        assert!(text.contains(sample), "missing {sample} in:\n{text}");
    }

    // Without --requests, the bundle's tests are the sample; --json gives the snapshot.
    let out = arbiter(&["metrics", "--json"], "");
    let snapshot: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let decided: u64 = snapshot["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["allow"].as_u64().unwrap() + d["deny"].as_u64().unwrap())
        .sum();
    assert!(decided >= 600, "{snapshot}");
    assert_eq!(
        snapshot["latency"]["buckets"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["le_seconds"],
        serde_json::Value::Null
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
            "user = 42; t-1",
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

#[test]
fn explain_names_each_policy_and_the_condition_that_decided_it() {
    let out = arbiter(&["explain"], &request("eve", "push_code", "10"));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("DENY: no permit was satisfied\n"),
        "{text}"
    );
    let developer = text
        .lines()
        .find(|l| l.contains(" role-developer "))
        .unwrap_or_default();
    assert!(developer.trim_start().starts_with("permit"), "{text}");
    assert!(developer.contains("not satisfied: `"), "{text}");
    assert!(
        developer.contains("30"),
        "the failing condition names the level: {developer}"
    );
    // A forbid whose `unless` clause holds says so.
    let unknown = text
        .lines()
        .find(|l| l.contains(" project-unknown "))
        .unwrap_or_default();
    assert!(
        unknown.contains("not satisfied: the condition of `unless {"),
        "{text}"
    );

    let out = arbiter(&["explain", "--json"], &request("alice", "push_code", "10"));
    assert_eq!(out.status.code(), Some(0));
    let e: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(e["decision"], "allow");
    assert_eq!(e["reasons"], serde_json::json!(["role-developer"]));
    let policies = e["policies"].as_array().unwrap();
    let developer = policies
        .iter()
        .find(|p| p["id"] == "role-developer")
        .unwrap();
    assert_eq!(
        (developer["effect"].as_str(), developer["outcome"].as_str()),
        (Some("permit"), Some("satisfied"))
    );
    assert!(policies.iter().all(|p| p["outcome"] != "satisfied"
        || p["effect"] == "permit" && e["reasons"].as_array().unwrap().contains(&p["id"])));

    let out = arbiter(&["explain"], "{oops");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn diff_lists_the_requests_whose_decision_changes() {
    // The other bundle is the default one with the developer rule gone.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("gitlab");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/gitlab");
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.replace(
                "@id(\"role-developer\")\npermit",
                "@id(\"role-developer\")\nforbid",
            );
            std::fs::create_dir_all(&bundle).unwrap();
            std::fs::write(bundle.join(path.file_name().unwrap()), text).unwrap();
        }
    }
    let requests = dir.path().join("requests.jsonl");
    let lines = [
        request("alice", "push_code", "10"), // allow -> deny
        request("alice", "push_code", "3"),  // deny either way
        "{oops".to_owned(),                  // the same error either way
    ];
    std::fs::write(&requests, lines.join("\n")).unwrap();
    let args = [
        "diff",
        "--against",
        bundle.to_str().unwrap(),
        "--requests",
        requests.to_str().unwrap(),
    ];
    let out = arbiter(&args, "");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let changed: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["line"], 1);
    assert_eq!(changed[0]["bundle"]["decision"], "allow");
    assert_eq!(changed[0]["against"]["decision"], "deny");
    assert_eq!(
        changed[0]["against"]["reasons"],
        serde_json::json!(["role-developer"])
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 requests, 1 changed"));

    // A bundle against itself changes nothing.
    let same = [
        "diff",
        "--against",
        source,
        "--requests",
        requests.to_str().unwrap(),
    ];
    assert_eq!(arbiter(&same, "").status.code(), Some(0));
}

#[test]
fn signed_bundles_verify_until_a_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b");
    std::fs::create_dir_all(bundle.join("policies")).unwrap();
    std::fs::write(
        bundle.join("policies/p.cedar"),
        r#"@id("p") permit (principal, action, resource);"#,
    )
    .unwrap();
    std::fs::write(
        bundle.join("manifest.json"),
        r#"{"name": "signed", "version": "1"}"#,
    )
    .unwrap();
    let b = bundle.to_str().unwrap();
    for (alg, key) in [("Ed25519", "ed.pem"), ("ES256", "ec.pem")] {
        let out = run(&["bundle", "sign", "--bundle", b, "--key", &keys(key)]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let public = dir.path().join(format!("{alg}.pub.pem"));
        std::fs::write(&public, &out.stdout).unwrap();
        assert!(stdout(&out).starts_with("-----BEGIN PUBLIC KEY-----"));
        let signature: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(bundle.join("signature.json")).unwrap())
                .unwrap();
        assert_eq!(signature["manifest"]["algorithm"], alg);
        assert_eq!(signature["manifest"]["files"].as_object().unwrap().len(), 2);
        let verify = [
            "bundle",
            "verify",
            "--bundle",
            b,
            "--public-key",
            public.to_str().unwrap(),
        ];
        assert_eq!(run(&verify).status.code(), Some(0));
    }
    // Altered after signing: named file by file, exit 1.
    std::fs::write(
        bundle.join("policies/p.cedar"),
        r#"@id("p") forbid (principal, action, resource);"#,
    )
    .unwrap();
    std::fs::write(
        bundle.join("policies/extra.cedar"),
        "permit (principal, action, resource);",
    )
    .unwrap();
    let public = dir.path().join("ES256.pub.pem");
    let out = run(&[
        "bundle",
        "verify",
        "--bundle",
        b,
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("policies/p.cedar: changed since the bundle was signed"),
        "{text}"
    );
    assert!(
        text.contains("policies/extra.cedar: added since the bundle was signed"),
        "{text}"
    );
    // Another key is not trusted.
    let other = dir.path().join("Ed25519.pub.pem");
    let out = run(&[
        "bundle",
        "verify",
        "--bundle",
        b,
        "--public-key",
        other.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("which this engine does not trust"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn query_prints_sql_and_exits_0_or_prints_the_error_and_exits_2() {
    let query = r#"{"principal": {"type": "Gitlab::User", "id": "alice"}, "action": {"type": "Gitlab::Action", "id": "read_project"}, "resource": {"type": "Gitlab::Project"}, "context": {"admin_mode": false}}"#;
    let out = arbiter(&["query", "--dialect", "sqlite", "--explain"], query);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(answer["kind"], "where");
    assert!(answer["sql"]
        .as_str()
        .unwrap()
        .contains("projects.visibility_level = ?"));
    assert!(answer["params"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p.is_i64()));
    let explained = String::from_utf8(out.stderr).unwrap();
    assert!(
        explained.contains("permit public-project-read: resource.visibility == \"public\""),
        "{explained}"
    );

    // The anonymous caller may read public projects only; a blocked user nothing.
    let anonymous = query.replace("\"alice\"", "\"anonymous\"");
    let out = arbiter(&["query", "--dialect", "postgres"], &anonymous);
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(answer["kind"], "where");
    assert!(
        answer["sql"]
            .as_str()
            .unwrap()
            .starts_with("(projects.visibility_level = $1 AND NOT"),
        "{answer}"
    );
    assert_eq!(answer["params"][0], 20);
    let out = arbiter(
        &["query", "--dialect", "postgres"],
        &query.replace("\"alice\"", "\"bob\""),
    );
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"kind": "none", "sql": "FALSE", "params": []})
    );

    let out = arbiter(
        &["query", "--dialect", "postgres"],
        &request("alice", "read_project", "3"),
    );
    assert_eq!(out.status.code(), Some(2));
    let error: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(error["error"]["kind"], "malformed_request");
    let out = arbiter(&["query", "--dialect", "oracle"], query);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn output_into_a_closed_pipe_is_an_error_not_a_panic() {
    // Each command reads its request first, so the pipe is closed before it writes.
    for args in [&["check"][..], &["explain"], &["explain", "--json"]] {
        let mut child = spawn(args);
        drop(child.stdout.take());
        let out = finish(child, &request("alice", "push_code", "10"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot write output"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
