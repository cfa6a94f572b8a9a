//! Resident memory of a process holding one engine, per bundle, beside cedar-policy holding the
//! same policies and entities. Run without arguments: each case runs in a fresh child process
//! (so allocator state does not carry over) and the results print as JSON, in KiB:
//! `{"rss/<bundle>/<subject>": kib, ...}`.

use std::process::Command;
use std::str::FromStr;

use arbiter::{BundleFile, Engine};
use arbiter_benches::{file_text, gitlab_files, policy_text, slice_policies};
use cedar_policy::{Entities, PolicySet, Schema};

const CASES: [&str; 6] = [
    "baseline/process",
    "default_bundle/arbiter",
    "default_bundle/cedar_policy",
    "static_100000/arbiter",
    "static_100000/cedar_policy",
    "linked_10000/arbiter",
];

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn static_entities(n: usize) -> String {
    let users = (0..n).map(|i| {
        format!(r#"{{"uid": {{"type": "User", "id": "u{i}"}}, "attrs": {{"state": "active"}}, "parents": []}}"#)
    });
    let projects = (0..n / 10).map(|i| {
        format!(r#"{{"uid": {{"type": "Project", "id": "p{i}"}}, "attrs": {{"archived": false}}, "parents": []}}"#)
    });
    format!("[{}]", users.chain(projects).collect::<Vec<_>>().join(","))
}

fn links(n: usize) -> String {
    let links = (0..n).map(|i| {
        format!(r#"{{"template_id": "member", "link_id": "member-{i}", "args": {{"?principal": {{"type": "Team", "id": "t{i}"}}, "?resource": {{"type": "Project", "id": "p{i}"}}}}}}"#)
    });
    format!("[{}]", links.collect::<Vec<_>>().join(","))
}

/// Loads what `case` names and holds it while measuring.
fn run(case: &str) -> u64 {
    let files = gitlab_files();
    let held: Box<dyn std::any::Any> = match case {
        "baseline/process" => Box::new(()),
        "default_bundle/arbiter" => Box::new(Engine::from_files(files.clone()).unwrap()),
        "default_bundle/cedar_policy" => {
            let schema = Schema::from_cedarschema_str(&file_text(&files, "schema.cedarschema")).unwrap().0;
            let set = PolicySet::from_str(&policy_text(&files)).unwrap();
            let entities = Entities::from_json_str(&file_text(&files, "entities.json"), Some(&schema)).unwrap();
            Box::new((schema, set, entities))
        }
        "static_100000/arbiter" => Box::new(
            Engine::from_files([
                BundleFile::new("policies.cedar", slice_policies()),
                BundleFile::new("entities.json", static_entities(100_000)),
            ])
            .unwrap(),
        ),
        "static_100000/cedar_policy" => Box::new((
            PolicySet::from_str(&slice_policies()).unwrap(),
            Entities::from_json_str(&static_entities(100_000), None).unwrap(),
        )),
        "linked_10000/arbiter" => Box::new(
            Engine::from_files([
                BundleFile::new(
                    "policies.cedar",
                    format!(
                        "{}\n@id(\"member\")\npermit (principal in ?principal, action == Action::\"read_project\", resource in ?resource);",
                        slice_policies()
                    ),
                ),
                BundleFile::new("links.json", links(10_000)),
            ])
            .unwrap(),
        ),
        other => panic!("unknown case {other}"),
    };
    // Inputs built for loading are dropped; what stays is what the loaded value holds.
    drop(files);
    let rss = rss_kib();
    drop(held);
    rss
}

fn main() {
    if let Some(case) = std::env::args().nth(1) {
        println!("{}", run(&case));
        return;
    }
    let me = std::env::current_exe().unwrap();
    let results: Vec<String> = CASES
        .iter()
        .map(|case| {
            let out = Command::new(&me).arg(case).output().unwrap();
            assert!(
                out.status.success(),
                "{case}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let kib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
            format!("  \"rss/{case}\": {kib}")
        })
        .collect();
    println!("{{\n{}\n}}", results.join(",\n"));
}
