//! Shared inputs of Arbiter's benchmarks: the test keys and bundles built from them.

use std::path::PathBuf;

/// A test key or secret from `core/tests/fixtures/keys`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "core",
        "tests",
        "fixtures",
        "keys",
        name,
    ]
    .iter()
    .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
