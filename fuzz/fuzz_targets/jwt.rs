//! JWT parsing and verification: any string verifies or is refused with a kind, never panics;
//! a request carrying it is a deny with the token's error unless the token verified.
#![no_main]

use arbiter_fuzz::{check_decision_json, token_engine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let engine = token_engine();
    let verified = engine.verify_token(token);
    let request = serde_json::json!({
        "action": {"type": "Action", "id": "read"},
        "resource": {"type": "Doc", "id": "1"},
        "context": {},
        "token": token,
    });
    match (engine.authorize_json(&request.to_string()), verified) {
        (Ok(decision), verified) => {
            check_decision_json(&decision);
            if verified.is_err() {
                assert!(decision.contains(r#""decision":"deny""#), "{decision}");
            }
        }
        // A token that does not verify is a deny with its reason, never an error of the call.
        (Err(e), Err(_)) => panic!("a bad token failed the call: {e}"),
        (Err(_), Ok(_)) => {}
    }
});
