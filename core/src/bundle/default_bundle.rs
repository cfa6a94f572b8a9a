//! The default GitLab bundle, embedded at build time from `policies/gitlab`.

use crate::bundle::{is_engine_file, is_test_file, BundleFile};

/// Every file of the bundle as (relative path, contents), decision tests included.
static FILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/default_bundle.rs"));

/// The files an engine loads.
pub(crate) fn engine_files() -> Vec<BundleFile> {
    files(is_engine_file)
}

/// The decision tests.
pub(crate) fn test_files() -> Vec<BundleFile> {
    files(is_test_file)
}

fn files(keep: fn(&str) -> bool) -> Vec<BundleFile> {
    FILES
        .iter()
        .filter(|(p, _)| keep(p))
        .map(|(p, c)| BundleFile::new(*p, *c))
        .collect()
}
