//! Bundle loading: any set of files (policies, schema, entities, links, tokens.json, manifest,
//! keys) either loads or fails with an error; a failed reload leaves the engine deciding exactly
//! as before, and a bundle that loads decides well-formed decisions.
#![no_main]

use arbiter::{BundleFile, Engine};
use arbiter_fuzz::{check_decision_json, sections};
use libfuzzer_sys::fuzz_target;

const PROBE: &str = r#"{"principal": {"type": "User", "id": "alice"}, "action": {"type": "Action", "id": "read"}, "resource": {"type": "Doc", "id": "1"}}"#;
const ORIGINAL: &str = r#"@id("original") permit (principal, action, resource);"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files: Vec<BundleFile> = sections(text)
        .into_iter()
        .map(|(path, contents)| BundleFile::new(path, contents))
        .collect();
    let loaded = Engine::from_files(files.clone());
    if let Ok(engine) = &loaded {
        let _ = engine.info();
        if let Ok(decision) = engine.authorize_json(PROBE) {
            check_decision_json(&decision);
        }
    }

    // The same files as a reload: it fails exactly when loading fails, and then changes nothing.
    let engine = Engine::from_files([BundleFile::new("p.cedar", ORIGINAL)]).unwrap();
    let reloaded = engine.reload_from_files(files);
    assert_eq!(reloaded.is_ok(), loaded.is_ok());
    if let (Err(reload), Err(load)) = (&reloaded, &loaded) {
        assert_eq!(reload.kind(), load.kind());
        let decision = engine.authorize_json(PROBE).unwrap();
        assert!(decision.contains(r#""reasons":["original"]"#), "{decision}");
    }
});
