//! `arbiter-server` as a caller sees it: the binary started on loopback ports, spoken to over
//! HTTP (AuthZEN, operations), signalled, and stopped. Envoy's ext_authz API is tested from Go
//! with Envoy's own client (`tests/envoy`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running server, killed if a test fails before stopping it.
struct Server {
    child: Child,
    http: String,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_arbiter-server"))
            .args(["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let listening: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "no listening line: {line:?}; stderr: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            )
        });
        let server = Self {
            child,
            http: listening["http"].as_str().unwrap().to_owned(),
            stderr,
            _dir: dir,
        };
        server.wait_until(|s| s.get("/readyz").0 == 200, "ready");
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut response = Self::agent().get(self.url(path)).call().unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    /// POSTs `body` as JSON; answers the status, the JSON body and the echoed request id.
    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.post_with(path, body, "application/json", None).0
    }

    fn post_with(
        &self,
        path: &str,
        body: &str,
        content_type: &str,
        request_id: Option<&str>,
    ) -> ((u16, Value), Option<String>) {
        let mut request = Self::agent()
            .post(self.url(path))
            .header("content-type", content_type);
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        let mut response = request.send(body).unwrap();
        let status = response.status().as_u16();
        let echoed = response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.body_mut().read_to_string().unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{path}: not JSON ({status}): {text}"));
        ((status, json), echoed)
    }

    fn decide(&self, body: &Value) -> Value {
        let (status, answer) = self.post("/access/v1/evaluation", &body.to_string());
        assert_eq!(status, 200, "{answer}");
        answer
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }

    fn wait_until(&self, done: impl Fn(&Self) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> ExitStatus {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "did not stop: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bundle directory holding `files`.
fn bundle(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        write(dir.path(), name, text);
    }
    dir
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// Policies for the spec's own examples (no schema: the action type is `Action`).
const SPEC_POLICIES: &str = r#"
permit (principal == user::"alice@example.com", action == Action::"can_read", resource == account::"123");
permit (principal == user::"alice@example.com", action == Action::"can_read", resource == document::"boxcarring.md");
permit (principal == user::"alice@example.com", action == Action::"read", resource)
  when { [document::"1", document::"3"].contains(resource) };
permit (principal, action == Action::"can_edit", resource) when { principal.role == "admin" };
"#;

fn spec_server(extra: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = bundle(&[("policies.cedar", SPEC_POLICIES)]);
    let mut args = vec!["--bundle", dir.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    (Server::start(&args), dir)
}

#[test]
fn the_specs_examples_decide_as_the_spec_shows() {
    let (server, _bundle) = spec_server(&[]);
    // Access Evaluation, with action properties and a context.
    let answer = server.decide(&json!({
        "subject": {"type": "user", "id": "alice@example.com"},
        "resource": {"type": "account", "id": "123"},
        "action": {"name": "can_read", "properties": {"method": "GET"}},
        "context": {"time": "1985-10-26T01:22-07:00"}}));
    assert_eq!(answer["decision"], true, "{answer}");
    assert_eq!(answer["context"]["reasons"], json!(["policy0"]));
    // Properties become the entity's attributes.
    let edit = |properties: Value| {
        server.decide(&json!({
            "subject": {"type": "user", "id": "bob", "properties": properties},
            "resource": {"type": "document", "id": "d"}, "action": {"name": "can_edit"}}))
            ["decision"]
            .clone()
    };
    assert_eq!(edit(json!({"role": "admin"})), true);
    assert_eq!(edit(json!({"role": "viewer"})), false);
    assert_eq!(edit(json!({})), false);

    // Access Evaluations: defaults at the top, an item overriding the action.
    let (status, answer) = server.post(
        "/access/v1/evaluations",
        &json!({
            "subject": {"type": "user", "id": "alice@example.com"},
            "context": {"time": "2024-05-31T15:22-07:00"},
            "action": {"name": "can_read"},
            "evaluations": [
                {"resource": {"type": "document", "id": "boxcarring.md"}},
                {"resource": {"type": "document", "id": "subject-search.md"}},
                {"action": {"name": "can_edit"}, "resource": {"type": "document", "id": "resource-search.md"}}]})
        .to_string(),
    );
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"evaluations": [{"decision": true}, {"decision": false}, {"decision": false,
               "context": {"errors": [{"kind": "policy_evaluation", "policy": "policy3",
               "message": answer["evaluations"][2]["context"]["errors"][0]["message"]}]}}]})
    );

    // The three semantics over documents 1, 2 and 3, where 2 is denied.
    let batch = |semantic: &str| {
        server
            .post(
                "/access/v1/evaluations",
                &json!({
                    "subject": {"type": "user", "id": "alice@example.com"},
                    "action": {"name": "read"},
                    "options": {"evaluations_semantic": semantic},
                    "evaluations": [{"resource": {"type": "document", "id": "1"}},
                                    {"resource": {"type": "document", "id": "2"}},
                                    {"resource": {"type": "document", "id": "3"}}]})
                .to_string(),
            )
            .1
    };
    assert_eq!(
        batch("execute_all"),
        json!({"evaluations": [{"decision": true}, {"decision": false}, {"decision": true}]})
    );
    assert_eq!(
        batch("deny_on_first_deny"),
        json!({"evaluations": [{"decision": true}, {"decision": false,
               "context": {"code": "200", "reason": "deny_on_first_deny"}}]})
    );
    assert_eq!(
        batch("permit_on_first_permit"),
        json!({"evaluations": [{"decision": true}]})
    );
    let (status, answer) = server.post(
        "/access/v1/evaluations",
        &json!({"options": {"evaluations_semantic": "first_come"}, "evaluations": []}).to_string(),
    );
    assert_eq!(status, 400);
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("evaluations_semantic"));
}

#[test]
fn a_batch_without_items_is_one_evaluation_and_a_bad_item_is_a_deny() {
    let (server, _bundle) = spec_server(&[]);
    let one = json!({"subject": {"type": "user", "id": "alice@example.com"},
                     "action": {"name": "can_read"}, "resource": {"type": "account", "id": "123"}});
    for evaluations in [None, Some(json!([]))] {
        let mut body = one.clone();
        if let Some(items) = evaluations {
            body["evaluations"] = items;
        }
        let (status, answer) = server.post("/access/v1/evaluations", &body.to_string());
        assert_eq!(
            (status, &answer["decision"]),
            (200, &json!(true)),
            "{answer}"
        );
        assert!(answer.get("evaluations").is_none());
    }
    // The second item has no resource, and there is no default: that item alone is denied.
    let (status, answer) = server.post(
        "/access/v1/evaluations",
        &json!({"subject": {"type": "user", "id": "alice@example.com"}, "action": {"name": "can_read"},
                "evaluations": [{"resource": {"type": "account", "id": "123"}}, {}, "not an object"]})
        .to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    let items = answer["evaluations"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0], json!({"decision": true}));
    for item in &items[1..] {
        assert_eq!(item["decision"], false);
        assert_eq!(item["context"]["error"]["status"], 400, "{item}");
    }
    assert!(items[1]["context"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`resource`"));
}

#[test]
fn bad_input_is_refused_naming_the_problem_and_the_request_id_is_echoed() {
    let (server, _bundle) = spec_server(&["--max-request-bytes", "2048"]);
    let full = json!({"subject": {"type": "user", "id": "a"}, "action": {"name": "can_read"},
                      "resource": {"type": "account", "id": "1"}});
    let without = |path: &[&str]| {
        let mut body = full.clone();
        let (last, parents) = path.split_last().unwrap();
        let mut at = &mut body;
        for p in parents {
            at = &mut at[*p];
        }
        at.as_object_mut().unwrap().remove(*last);
        body.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        (without(&["subject"]), "`subject`"),
        (without(&["subject", "id"]), "`subject.id`"),
        (without(&["subject", "type"]), "`subject.type`"),
        (without(&["action"]), "`action`"),
        (without(&["action", "name"]), "`action.name`"),
        (without(&["resource", "id"]), "`resource.id`"),
        (json!({"subject": "alice", "action": {"name": "x"}, "resource": {"type": "t", "id": "1"}}).to_string(), "`subject`"),
        (json!({"subject": {"type": "u", "id": "1"}, "action": {"name": 123}, "resource": {"type": "t", "id": "1"}}).to_string(), "`action.name`"),
        (json!({"subject": {"type": "u", "id": 7}, "action": {"name": "x"}, "resource": {"type": "t", "id": "1"}}).to_string(), "`subject.id`"),
        ("{\"subject\": ".to_owned(), "not valid JSON"),
        (String::new(), "not valid JSON"),
        ("[1, 2]".to_owned(), "a JSON object"),
    ];
    for (body, named) in &cases {
        let (status, answer) = server.post("/access/v1/evaluation", body);
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(named),
            "{body}: {message} should name {named}"
        );
    }
    // Unknown fields are ignored, as the spec requires.
    let mut extra = full.clone();
    extra["futureField"] = json!({"a": 1});
    assert_eq!(
        server.post("/access/v1/evaluation", &extra.to_string()).0,
        200
    );
    // Content-Type must be JSON; a body over the limit is refused whole.
    let ((status, _), echoed) = server.post_with(
        "/access/v1/evaluation",
        &full.to_string(),
        "text/plain",
        Some("req-9"),
    );
    assert_eq!((status, echoed.as_deref()), (400, Some("req-9")));
    let mut big = full.clone();
    big["context"] = json!({"pad": "x".repeat(4096)});
    assert_eq!(
        server.post("/access/v1/evaluation", &big.to_string()).0,
        413
    );
    let ((status, _), echoed) = server.post_with(
        "/access/v1/evaluation",
        &full.to_string(),
        "application/json; charset=utf-8",
        Some("req-10"),
    );
    assert_eq!((status, echoed.as_deref()), (200, Some("req-10")));
    // What Cedar refuses is a deny carrying the error, not a 4xx.
    let answer = server.decide(&json!({"subject": {"type": "no such type!", "id": "1"},
        "action": {"name": "can_read"}, "resource": {"type": "account", "id": "1"}}));
    assert_eq!(answer["decision"], false);
    assert!(answer["context"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("malformed_request"));
}

#[test]
fn the_metadata_names_the_endpoints_at_the_address_asked() {
    let (server, _bundle) = spec_server(&[]);
    let (status, text) = server.get("/.well-known/authzen-configuration");
    assert_eq!(status, 200);
    let metadata: Value = serde_json::from_str(&text).unwrap();
    let base = format!("http://{}", server.http);
    assert_eq!(metadata["policy_decision_point"], json!(base));
    assert_eq!(
        metadata["access_evaluation_endpoint"],
        json!(format!("{base}/access/v1/evaluation"))
    );
    assert_eq!(
        metadata["access_evaluations_endpoint"],
        json!(format!("{base}/access/v1/evaluations"))
    );
    assert_eq!(
        metadata["search_resource_endpoint"],
        json!(format!("{base}/access/v1/search/resource"))
    );
}

/// Each of the default bundle's decision tests that AuthZEN can carry (the request's own
/// entities, if any, are its subject's or resource's attributes alone), through HTTP: the
/// decision and reasons the test expects, as the embedded engine gives them.
#[test]
fn the_default_bundles_decision_tests_decide_alike_through_authzen() {
    let server = Server::start(&[]);
    let engine = arbiter::Engine::gitlab_default().unwrap();
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/gitlab/tests");
    let (mut carried, mut total) = (0, 0);
    for entry in std::fs::read_dir(tests).unwrap() {
        let path = entry.unwrap().path();
        let suite: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for case in suite["cases"].as_array().unwrap() {
            total += 1;
            let Some(body) = authzen_body(&case["request"]) else {
                continue;
            };
            carried += 1;
            let answer = server.decide(&body);
            let name = format!("{}: {}", path.display(), case["name"]);
            let expected = case["decision"].as_str().map(|d| d == "allow");
            let embedded = engine.authorize_json(&case["request"].to_string());
            match (expected, embedded) {
                (Some(allowed), Ok(decision)) => {
                    let decision: Value = serde_json::from_str(&decision).unwrap();
                    assert_eq!(answer["decision"], allowed, "{name}: {answer}");
                    let sorted = |reasons: &Value| {
                        let mut ids: Vec<String> = reasons
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|r| r.as_str().unwrap().to_owned())
                            .collect();
                        ids.sort();
                        ids
                    };
                    let reasons = sorted(&answer["context"]["reasons"]);
                    assert_eq!(reasons, sorted(&decision["reasons"]), "{name}");
                    if let Some(expected) = case.get("reasons") {
                        assert_eq!(reasons, sorted(expected), "{name}");
                    }
                }
                (None, Err(_)) => {
                    assert_eq!(answer["decision"], false, "{name}: {answer}");
                    assert!(answer["context"]["error"].is_object(), "{name}: {answer}");
                }
                (expected, embedded) => {
                    panic!("{name}: expected {expected:?}, embedded {embedded:?}")
                }
            }
        }
    }
    assert!(
        carried >= 250,
        "only {carried} of {total} cases could be carried"
    );
}

/// The AuthZEN body for a contract request, when AuthZEN can say all of it.
fn authzen_body(request: &Value) -> Option<Value> {
    if request.get("token").is_some() {
        return None;
    }
    let principal = request.get("principal")?;
    let resource = request.get("resource")?;
    let mut subject = principal.clone();
    let mut object = resource.clone();
    for entity in request["entities"].as_array().into_iter().flatten() {
        let plain = entity["parents"].as_array().is_none_or(Vec::is_empty)
            && entity["tags"].as_object().is_none_or(|t| t.is_empty());
        let target = if entity["uid"] == *principal {
            &mut subject
        } else if entity["uid"] == *resource {
            &mut object
        } else {
            return None;
        };
        if !plain {
            return None;
        }
        target["properties"] = entity["attrs"].clone();
    }
    Some(json!({
        "subject": subject,
        "action": {"name": request["action"]["id"]},
        "resource": object,
        "context": request.get("context").cloned().unwrap_or(json!({})),
    }))
}

#[test]
fn resource_search_answers_from_candidates_or_as_the_compiled_filter() {
    let server = Server::start(&[]);
    let body = |extra: Value| {
        let mut body = json!({"subject": {"type": "Gitlab::User", "id": "eve"},
            "action": {"name": "download_code"}, "resource": {"type": "Gitlab::Project"},
            "context": {"admin_mode": false}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body.to_string()
    };
    let (status, answer) = server.post(
        "/access/v1/search/resource",
        &body(json!({"resources": ["1", "3", "10", {"id": "7"}, "99"]})),
    );
    assert_eq!(status, 200);
    // eve (external) reads public projects, and project 10, where she is a Reporter; as the
    // embedded engine decides each candidate.
    let engine = arbiter::Engine::gitlab_default().unwrap();
    let allowed: Vec<Value> = ["1", "3", "10", "7", "99"]
        .into_iter()
        .filter(|id| {
            let request = json!({"principal": {"type": "Gitlab::User", "id": "eve"},
                "action": {"type": "Gitlab::Action", "id": "download_code"},
                "resource": {"type": "Gitlab::Project", "id": id}, "context": {"admin_mode": false}});
            engine.authorize_json(&request.to_string()).unwrap().contains(r#""allow""#)
        })
        .map(|id| json!({"type": "Gitlab::Project", "id": id}))
        .collect();
    assert!(allowed.len() >= 2, "{allowed:?}");
    assert_eq!(answer, json!({ "results": allowed }));
    for dialect in ["postgres", "sqlite"] {
        let (status, answer) = server.post(
            "/access/v1/search/resource",
            &body(json!({"options": {"dialect": dialect}})),
        );
        assert_eq!(status, 200);
        let query = &answer["context"]["query"];
        assert_eq!(query["kind"], "where", "{answer}");
        let placeholder = if dialect == "postgres" { "$1" } else { "?" };
        assert!(
            query["sql"].as_str().unwrap().contains(placeholder),
            "{query}"
        );
        assert_eq!(answer["results"], json!([]));
    }
}

#[test]
fn a_changed_bundle_reloads_and_a_broken_one_keeps_the_old_serving() {
    let dir = bundle(&[(
        "policies.cedar",
        r#"permit (principal == User::"a", action, resource);"#,
    )]);
    let server = Server::start(&[
        "--bundle",
        dir.path().to_str().unwrap(),
        "--reload-interval",
        "1",
    ]);
    let allowed = |s: &Server| {
        s.decide(
            &json!({"subject": {"type": "User", "id": "a"}, "action": {"name": "go"},
                         "resource": {"type": "Doc", "id": "1"}}),
        )["decision"]
            == true
    };
    assert!(allowed(&server));
    // Noticed by the directory check alone.
    write(
        dir.path(),
        "policies.cedar",
        r#"forbid (principal, action, resource);"#,
    );
    server.wait_until(|s| !allowed(s), "the new bundle decides");
    // A bundle that does not load: reported, and the one serving keeps serving.
    write(dir.path(), "policies.cedar", "permit (principal,");
    server.wait_until(
        |s| s.stderr().contains("reload_failed"),
        "the failure is logged",
    );
    assert!(!allowed(&server));
    assert!(
        server.stderr().contains("policy_parse"),
        "{}",
        server.stderr()
    );
    assert_eq!(server.get("/readyz").0, 200);
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn a_source_is_refreshed_on_its_schedule_and_its_status_is_in_the_metrics() {
    let dir = bundle(&[("policies.cedar", r#"permit (principal, action, resource);"#)]);
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(&[
        "--source",
        dir.path().to_str().unwrap(),
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--refresh-interval",
        "1",
    ]);
    let body = json!({"subject": {"type": "User", "id": "a"}, "action": {"name": "go"},
                      "resource": {"type": "Doc", "id": "1"}});
    assert_eq!(server.decide(&body)["decision"], true);
    let metrics = server.get("/metrics").1;
    assert!(
        metrics.contains(&format!(
            "arbiter_bundle_source_info{{source=\"{}\"",
            dir.path().display()
        )),
        "{metrics}"
    );
    assert!(cache.path().join(arbiter_fleet::CACHE_ARCHIVE).exists());
    write(
        dir.path(),
        "policies.cedar",
        r#"forbid (principal, action, resource);"#,
    );
    server.wait_until(|s| s.decide(&body)["decision"] == false, "refreshed");
    write(dir.path(), "policies.cedar", "permit (");
    server.wait_until(
        |s| {
            s.get("/metrics")
                .1
                .contains("arbiter_bundle_source_consecutive_failures 1")
        },
        "the failure is counted",
    );
    assert_eq!(
        server.decide(&body)["decision"],
        false,
        "the old bundle serves"
    );
    assert!(server.stderr().contains("reload_failed"));
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn sighup_reloads_when_the_directory_is_not_watched() {
    let dir = bundle(&[("policies.cedar", r#"permit (principal, action, resource);"#)]);
    let server = Server::start(&[
        "--bundle",
        dir.path().to_str().unwrap(),
        "--reload-interval",
        "0",
    ]);
    let body = json!({"subject": {"type": "User", "id": "a"}, "action": {"name": "go"},
                      "resource": {"type": "Doc", "id": "1"}});
    assert_eq!(server.decide(&body)["decision"], true);
    write(
        dir.path(),
        "policies.cedar",
        r#"forbid (principal, action, resource);"#,
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(server.decide(&body)["decision"], true, "not watched");
    server.signal("-HUP");
    server.wait_until(|s| s.decide(&body)["decision"] == false, "SIGHUP reloads");
    assert!(server.stderr().contains("\"event\":\"reloaded\""));
}

#[test]
fn sigterm_lets_a_request_under_way_finish_then_exits_zero() {
    let (server, _bundle) = spec_server(&[]);
    let body = json!({"subject": {"type": "user", "id": "alice@example.com"},
                      "action": {"name": "can_read"}, "resource": {"type": "account", "id": "123"}})
    .to_string();
    // A slow client: headers and half the body sent, then SIGTERM, then the rest.
    let mut stream = TcpStream::connect(&server.http).unwrap();
    write!(
        stream,
        "POST /access/v1/evaluation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.signal("-TERM");
    server.wait_until(
        |s| s.stderr().contains("\"event\":\"stopping\""),
        "stopping",
    );
    stream.write_all(&body.as_bytes()[10..]).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"decision":true,"context":{"reasons":["policy0"]}}"#));
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn operations_endpoints_report_readiness_and_counts() {
    let (server, _bundle) = spec_server(&[]);
    assert_eq!(server.get("/healthz"), (200, "ok\n".to_owned()));
    let (status, ready) = server.get("/readyz");
    assert_eq!(status, 200);
    assert!(ready.starts_with("ready: bundle `"), "{ready}");
    for _ in 0..3 {
        server.decide(
            &json!({"subject": {"type": "user", "id": "alice@example.com"},
            "action": {"name": "can_read"}, "resource": {"type": "account", "id": "123"}}),
        );
    }
    server.post("/access/v1/evaluation", "{");
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    for line in [
        r#"arbiter_server_requests_total{api="authzen_evaluation",outcome="allow"} 3"#,
        r#"arbiter_server_requests_total{api="authzen_evaluation",outcome="error"} 1"#,
        r#"arbiter_server_request_duration_seconds_count{api="authzen_evaluation"} 4"#,
        r#"arbiter_server_requests_total{api="ext_authz",outcome="allow"} 0"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }
    assert!(metrics.contains("arbiter_decisions_total"), "{metrics}");
}

#[test]
fn a_bundle_that_does_not_load_at_start_exits_2_naming_it() {
    let dir = bundle(&[("policies.cedar", "permit (")]);
    let output = Command::new(env!("CARGO_BIN_EXE_arbiter-server"))
        .args(["--http", "127.0.0.1:0", "--grpc", "off", "--bundle"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("policy_parse"), "{stderr}");
    assert!(stderr.contains("policies.cedar:1"), "{stderr}");
}

#[test]
fn a_reload_storm_under_load_never_tears_or_fails_a_decision() {
    // Both good bundles allow Doc 1; only the first allows Doc 2; the third does not load.
    let versions = [
        r#"permit (principal == User::"a", action, resource);"#,
        r#"permit (principal == User::"a", action, resource) when { resource == Doc::"1" };"#,
        "permit (principal ==",
    ];
    let dir = bundle(&[("policies.cedar", versions[0])]);
    let server = Server::start(&[
        "--bundle",
        dir.path().to_str().unwrap(),
        "--reload-interval",
        "0",
    ]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let decided = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for worker in 0..4 {
            let (server, stop, decided) = (&server, &stop, &decided);
            scope.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let doc = if worker % 2 == 0 { "1" } else { "2" };
                    let (status, answer) = server.post(
                        "/access/v1/evaluation",
                        &json!({"subject": {"type": "User", "id": "a"}, "action": {"name": "go"},
                                "resource": {"type": "Doc", "id": doc}})
                        .to_string(),
                    );
                    assert_eq!(status, 200, "{answer}");
                    assert!(
                        answer.get("context").and_then(|c| c.get("error")).is_none(),
                        "{answer}"
                    );
                    if doc == "1" {
                        assert_eq!(
                            answer["decision"], true,
                            "a torn or failed decision: {answer}"
                        );
                    }
                    decided.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        for round in 0..60 {
            write(dir.path(), "policies.cedar", versions[round % 3]);
            server.signal("-HUP");
            std::thread::sleep(Duration::from_millis(15));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(decided.into_inner() > 100);
    let log = server.stderr();
    assert!(log.contains("\"event\":\"reloaded\""), "{log}");
    assert!(log.contains("\"event\":\"reload_failed\""), "{log}");
}

#[test]
fn slow_and_silent_clients_hold_up_no_one() {
    let (server, _bundle) = spec_server(&[]);
    // Connections that send half a request line, or nothing at all, and stay open.
    let idle: Vec<TcpStream> = (0..50)
        .map(|i| {
            let mut stream = TcpStream::connect(&server.http).unwrap();
            if i % 2 == 0 {
                stream.write_all(b"POST /access/v1/evalu").unwrap();
            }
            stream
        })
        .collect();
    let started = Instant::now();
    for _ in 0..20 {
        let answer = server.decide(
            &json!({"subject": {"type": "user", "id": "alice@example.com"},
            "action": {"name": "can_read"}, "resource": {"type": "account", "id": "123"}}),
        );
        assert_eq!(answer["decision"], true);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "20 decisions took {:?} beside 50 stalled connections",
        started.elapsed()
    );
    drop(idle);
}

#[test]
fn decisions_are_logged_with_their_request_ids_and_written_out_at_shutdown() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let (server, _bundle) = spec_server(&["--decision-log", log.path().to_str().unwrap()]);
    for i in 0..3 {
        let body = json!({"subject": {"type": "user", "id": "alice@example.com"},
            "action": {"name": "can_read"}, "resource": {"type": "account", "id": "123"}});
        let ((status, _), _) = server.post_with(
            "/access/v1/evaluation",
            &body.to_string(),
            "application/json",
            Some(&format!("req-{i}")),
        );
        assert_eq!(status, 200);
    }
    assert_eq!(server.stop().code(), Some(0));
    let events: Vec<Value> = std::fs::read_to_string(log.path())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{events:?}");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["request_id"], format!("req-{i}"), "{event}");
        assert_eq!(event["decision"], "allow", "{event}");
    }
}

#[test]
fn with_a_trusted_key_only_signed_bundles_serve_and_never_an_older_one() {
    let key = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/keys/ed.pem"),
    )
    .unwrap();
    let signer = arbiter::BundleSigner::from_pem(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("bundle.pub");
    std::fs::write(&public, signer.public_key_pem()).unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    // Writes `policy` into the bundle, signed as of `signed_at` when asked.
    let write_signed = |policy: &str, signed_at: Option<i64>| {
        write(&bundle, "policies.cedar", policy);
        if let Some(at) = signed_at {
            let files = arbiter::read_bundle_dir(&bundle).unwrap();
            write(
                &bundle,
                arbiter::SIGNATURE_FILE,
                &signer.sign(&files, at).unwrap(),
            );
        }
    };
    let allow = r#"permit (principal, action, resource);"#;
    let deny = r#"forbid (principal, action, resource);"#;
    write_signed(allow, Some(1_000));
    let server = Server::start(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
        "--reload-interval",
        "0",
    ]);
    let allowed = |s: &Server| {
        s.decide(
            &json!({"subject": {"type": "User", "id": "a"}, "action": {"name": "go"},
                         "resource": {"type": "Doc", "id": "1"}}),
        )["decision"]
            == true
    };
    assert!(allowed(&server));
    // Changed but not signed again, then signed earlier than the bundle serving: both refused.
    for signed_at in [None, Some(999)] {
        write_signed(deny, signed_at);
        server.signal("-HUP");
        server.wait_until(
            |s| s.stderr().matches("reload_failed").count() == 1 + usize::from(signed_at.is_some()),
            "the reload is refused",
        );
        assert!(allowed(&server), "a refused bundle decided");
    }
    assert!(
        server.stderr().contains("\"kind\":\"signature\""),
        "{}",
        server.stderr()
    );
    write_signed(deny, Some(1_001));
    server.signal("-HUP");
    server.wait_until(|s| !allowed(s), "the newer signed bundle serves");
}
