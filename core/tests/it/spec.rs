//! The shared spec of error cases (`tests/spec/errors.json`), which every language runs: each
//! failed call reports the spec's kind and code, through the JSON path, a JSON batch, the parts
//! path and a batch of parts, and each bundle that does not load through `from_files`.

use arbiter::{BundleFile, Engine, RequestParts};
use serde_json::Value;

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/spec/errors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn expected(case: &Value) -> (String, u64) {
    (
        case["kind"].as_str().unwrap().to_owned(),
        case["code"].as_u64().unwrap(),
    )
}

#[test]
fn every_request_error_of_the_spec_is_reported_alike_by_every_path() {
    let engine = Engine::gitlab_default().unwrap();
    let spec = spec();
    let cases = spec["requests"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let want = expected(case);
        let text = match &case["request_text"] {
            Value::String(text) => text.clone(),
            _ => case["request"].to_string(),
        };
        let e = engine.authorize_json(&text).unwrap_err();
        assert_eq!(
            (e.kind().to_owned(), u64::from(e.code())),
            want,
            "{name}: {e}"
        );
        if serde_json::from_str::<Value>(&text).is_ok() {
            let batch: Value =
                serde_json::from_str(&engine.authorize_json_batch(&format!("[{text}]")).unwrap())
                    .unwrap();
            let error = &batch[0]["error"];
            assert_eq!(
                (
                    error["kind"].as_str().unwrap().to_owned(),
                    error["code"].as_u64().unwrap()
                ),
                want,
                "{name}: {batch}"
            );
        }
        let Some(request) = case.get("request") else {
            continue;
        };
        fn pair(v: &Value) -> (&str, &str) {
            (v["type"].as_str().unwrap(), v["id"].as_str().unwrap())
        }
        let (context, entities) = (
            request.get("context").map(Value::to_string),
            request.get("entities").map(Value::to_string),
        );
        let parts = RequestParts {
            principal: request.get("principal").map(pair),
            action: pair(&request["action"]),
            resource: pair(&request["resource"]),
            context_json: context.as_deref(),
            entities_json: entities.as_deref(),
            token: None,
            request_id: None,
        };
        let single = engine.authorize_parts(&parts).unwrap_err();
        let batch = engine
            .authorize_parts_batch(&[parts])
            .remove(0)
            .unwrap_err();
        for e in [single, batch] {
            assert_eq!(
                (e.kind().to_owned(), u64::from(e.code())),
                want,
                "{name}: {e}"
            );
        }
    }
}

#[test]
fn every_bundle_error_of_the_spec_is_reported_with_its_kind_and_code() {
    let spec = spec();
    for case in spec["bundles"].as_array().unwrap() {
        let files = case["files"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(path, text)| BundleFile::new(path.clone(), text.as_str().unwrap()));
        let e = Engine::from_files(files).err().unwrap();
        assert_eq!(
            (e.kind().to_owned(), u64::from(e.code())),
            expected(case),
            "{}: {e}",
            case["name"]
        );
    }
}
