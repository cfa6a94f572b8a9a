//! List queries. An input naming `"entity_types"` is an SQL mapping: the default bundle
//! loads with it or refuses it, and its queries answer or refuse, never panic. Any other input
//! is a query request against the default bundle: answered or refused, never a panic, and an
//! answer, run in SQLite over a fixed set of rows, selects exactly the projects the check
//! allows given the same rows as entities (a translated filter never admits a denied row).
#![no_main]

use arbiter::{BundleFile, Dialect, Engine};
use arbiter_fuzz::{default_bundle_files, default_engine, query_fixture};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("\"entity_types\"") {
        let files = default_bundle_files()
            .iter()
            .cloned()
            .filter(|f| f.path != "sql/mapping.json")
            .chain([BundleFile::new("sql/mapping.json", text)]);
        if let Ok(engine) = Engine::from_files(files) {
            for request in query_fixture().requests() {
                if let Ok(query) = engine.read_query(&request) {
                    let _ = engine.query_sql(&query, Dialect::Sqlite);
                    let _ = engine.query_sql(&query, Dialect::Postgres);
                }
            }
        }
        return;
    }
    let engine = default_engine();
    let Ok(query) = engine.read_query(text) else {
        return;
    };
    let _ = engine.query_sql(&query, Dialect::Postgres);
    if let Ok(sql) = engine.query_sql(&query, Dialect::Sqlite) {
        query_fixture().assert_selects_what_checks_allow(engine, text, &sql);
    }
});
