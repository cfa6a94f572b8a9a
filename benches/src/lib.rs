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

/// The files of the default bundle (`policies/gitlab`) the engine reads, for benchmarks that
/// also hand them to cedar-policy.
pub fn gitlab_files() -> Vec<arbiter::BundleFile> {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "policies", "gitlab"]
        .iter()
        .collect();
    let mut files: Vec<arbiter::BundleFile> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e == "cedar" || e == "cedarschema" || e == "json")
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            arbiter::BundleFile::new(name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// The text of the bundle file at `path`.
pub fn file_text(files: &[arbiter::BundleFile], path: &str) -> String {
    files
        .iter()
        .find(|f| f.path == path)
        .map(|f| f.text().expect("bundle files are text").to_owned())
        .unwrap_or_else(|| panic!("the bundle has no {path}"))
}

/// Every policy file of a bundle in one text, in file order (what cedar-policy is given).
pub fn policy_text(files: &[arbiter::BundleFile]) -> String {
    files
        .iter()
        .filter(|f| f.path.ends_with(".cedar"))
        .map(|f| f.text().expect("policy files are text"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The slice of the default bundle that the Go benchmarks also run through OPA
/// (`benches/go/testdata/slice.cedar`).
pub fn slice_policies() -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "go", "testdata", "slice.cedar"]
        .iter()
        .collect();
    std::fs::read_to_string(path).unwrap()
}
