//! The request JSON path of the default bundle: `authorize_json` on any input never panics, and
//! what it decides is well-formed, allows only without token or request errors, and matches the
//! same request decided inside a batch.
#![no_main]

use arbiter_fuzz::{check_decision_json, default_engine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = std::str::from_utf8(data) else {
        return;
    };
    let engine = default_engine();
    let single = engine.authorize_json(request);
    if let Ok(decision) = &single {
        check_decision_json(decision);
    }
    let batch = engine
        .authorize_json_batch(&format!("[{request}]"))
        .map(|answers| serde_json::from_str::<serde_json::Value>(&answers).expect("batch JSON"));
    // When the input is exactly one JSON value, the batch holds it alone and answers alike.
    if serde_json::from_str::<serde_json::Value>(request).is_ok() {
        let answers = batch.expect("a one-element batch is an array");
        let answers = answers.as_array().expect("batch answer is an array");
        assert_eq!(answers.len(), 1);
        match &single {
            Ok(decision) => assert_eq!(
                answers[0],
                serde_json::from_str::<serde_json::Value>(decision).unwrap()
            ),
            Err(e) => assert_eq!(answers[0]["error"]["kind"], e.kind()),
        }
    }
});
