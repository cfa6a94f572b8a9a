//! Macaroons in every format (V1, V2 binary, V2 JSON): deserializing any text never panics, a
//! macaroon that reads survives a round trip through each format that can hold it, and
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
        // Version 1 holds only what its text packets can: when it reads back, it is the same.
        if let Ok(back) = Macaroon::deserialize(&macaroon.serialize(MacaroonFormat::V1)) {
            assert_eq!(back, macaroon, "V1");
        }
    }
    let _ = token_engine().verify_token(text);
});
