//! Bundle refreshes over loopback (`make fleet-bench`), as JSON on standard output:
//! - a refresh that finds nothing new (a conditional GET answered 304), beside the bare
//!   conditional GET through an HTTP client alone (the floor);
//! - a 10 MB bundle fetched, verified, loaded and swapped in while another thread decides
//!   without pause: each decision's time during the swap against the median, beside the same
//!   loop with no swap (the floor: what this machine's scheduling alone does to a decision).

#[path = "../../../fleet/tests/support/mod.rs"]
#[allow(dead_code)]
mod bundle_server;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbiter::{pack_archive, BundleFile, BundleSigner, Engine, TrustedKeys};
use arbiter_benches::{fixture, gitlab_files};
use arbiter_fleet::{RefreshOptions, Refreshed, Refresher};
use bundle_server::{BundleServer, Reply};
use serde_json::{json, Value};

const REQUEST: &str = r#"{"principal": {"type": "Gitlab::User", "id": "alice"},
    "action": {"type": "Gitlab::Action", "id": "push_code"},
    "resource": {"type": "Gitlab::Project", "id": "10"}, "context": {"admin_mode": false}}"#;

/// The default bundle, with `projects` more projects in its entities, signed at `signed_at`.
fn archive(signed_at: i64, projects: usize) -> Vec<u8> {
    let mut files: Vec<BundleFile> = gitlab_files();
    let entities = files
        .iter_mut()
        .find(|f| f.path == "entities.json")
        .unwrap();
    let mut list: Vec<Value> = serde_json::from_slice(&entities.contents).unwrap();
    for i in 0..projects {
        list.push(json!({
            "uid": {"type": "Gitlab::Project", "id": format!("bench-{i}")},
            "attrs": {"visibility": "private", "archived": false, "path": format!("group-{}/project-{i}", i % 1000),
                      "features": {"repository": "enabled", "issues": "enabled", "merge_requests": "enabled",
                                   "builds": "enabled", "container_registry": "enabled", "package_registry": "enabled"},
                      "job_token_allowlist": []},
            "parents": [{"type": "Gitlab::Group", "id": "gitlab-org"}]
        }));
    }
    entities.contents = serde_json::to_vec(&list).unwrap();
    let signer = BundleSigner::from_pem(&fixture("ed.pem")).unwrap();
    let signature = signer.sign(&files, signed_at).unwrap();
    files.push(BundleFile::new(arbiter::SIGNATURE_FILE, signature));
    pack_archive(&files).unwrap()
}

fn keys() -> TrustedKeys {
    let signer = BundleSigner::from_pem(&fixture("ed.pem")).unwrap();
    TrustedKeys::from_pems(&[signer.public_key_pem()]).unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut micros: Vec<f64>) -> Value {
    micros.sort_by(f64::total_cmp);
    json!({"count": micros.len(), "median_us": percentile(&micros, 0.5),
           "p99_us": percentile(&micros, 0.99), "max_us": micros[micros.len() - 1]})
}

/// A refresh that finds nothing new, and the bare conditional GET beside it.
fn unchanged(rounds: usize) -> Value {
    let server = BundleServer::start(Reply::Archive(archive(1, 0), "\"v1\"".into()));
    let mut refresher =
        Refresher::new(server.url.parse().unwrap(), RefreshOptions::default()).unwrap();
    let engine = refresher.start(Some(keys())).unwrap();
    let mut refresh = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        assert_eq!(refresher.refresh(&engine).unwrap(), Refreshed::Unchanged);
        refresh.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let agent = ureq::Agent::new_with_defaults();
    let mut bare = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let response = agent
            .get(&server.url)
            .header("If-None-Match", "\"v1\"")
            .call();
        assert_eq!(response.unwrap().status().as_u16(), 304);
        bare.push(started.elapsed().as_secs_f64() * 1e6);
    }
    json!({"refresh": summary(refresh), "bare_conditional_get": summary(bare),
           "conditional_requests": server.conditional.load(Ordering::SeqCst)})
}

/// Decision times (µs) on another thread while `during` runs, with `settle` of deciding before
/// and after; answers them with the window `during` took, relative to the first decision.
fn decide_while(
    engine: Arc<Engine>,
    settle: Duration,
    during: impl FnOnce(),
) -> (Vec<(f64, f64)>, f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let decider = {
        let (engine, stop) = (Arc::clone(&engine), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut times = Vec::with_capacity(4_000_000);
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let decision = engine.authorize_json(REQUEST).unwrap();
                let took = started.elapsed();
                assert!(decision.starts_with(r#"{"decision":"allow""#), "{decision}");
                times.push((
                    (started - epoch).as_secs_f64() * 1e6,
                    took.as_secs_f64() * 1e6,
                ));
            }
            times
        })
    };
    std::thread::sleep(settle);
    let from = epoch.elapsed().as_secs_f64() * 1e6;
    during();
    let to = epoch.elapsed().as_secs_f64() * 1e6;
    std::thread::sleep(settle);
    stop.store(true, Ordering::Relaxed);
    (decider.join().unwrap(), from, to)
}

/// What decisions took inside [from, to] against the median of all of them.
fn window(times: &[(f64, f64)], from: f64, to: f64) -> Value {
    let mut all: Vec<f64> = times.iter().map(|t| t.1).collect();
    all.sort_by(f64::total_cmp);
    let median = percentile(&all, 0.5);
    let mut inside: Vec<f64> = times
        .iter()
        .filter(|(start, took)| *start + *took >= from && *start <= to)
        .map(|t| t.1)
        .collect();
    inside.sort_by(f64::total_cmp);
    let max = inside.last().copied().unwrap_or(0.0);
    // When the slowest began, in ms from the window's start (the swap itself is at its end).
    let slowest_at = times
        .iter()
        .filter(|(start, took)| *start + *took >= from && *start <= to)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0.0, |(start, _)| (start - from) / 1e3);
    json!({"median_us": median, "decisions_in_window": inside.len(),
           "window_p99_us": percentile(&inside, 0.99), "window_p999_us": percentile(&inside, 0.999),
           "window_max_us": max, "max_over_median": max / median,
           "window_ms": (to - from) / 1e3, "slowest_began_at_ms": slowest_at,
           "slower_than_2x_median": inside.iter().filter(|t| **t > 2.0 * median).count()})
}

fn swap(projects: usize) -> Value {
    let small = archive(1, 0);
    let big = archive(2, projects);
    let unpacked: usize = arbiter::unpack_archive(&big, 1 << 30)
        .unwrap()
        .iter()
        .map(|f| f.contents.len())
        .sum();
    let server = BundleServer::start(Reply::Archive(small, "\"small\"".into()));
    let mut refresher =
        Refresher::new(server.url.parse().unwrap(), RefreshOptions::default()).unwrap();
    let engine = Arc::new(refresher.start(Some(keys())).unwrap());
    let settle = Duration::from_millis(300);

    // What the refresh cannot go below: unpacking the archive and loading the bundle.
    let started = Instant::now();
    let files = arbiter::unpack_archive(&big, 1 << 30).unwrap();
    drop(Engine::from_signed_files(files, keys()).unwrap());
    let load_ms = started.elapsed().as_secs_f64() * 1e3;

    server.set(Reply::Archive(big.clone(), "\"big\"".into()));
    let mut took = Duration::ZERO;
    let (times, from, to) = decide_while(Arc::clone(&engine), settle, || {
        let started = Instant::now();
        assert!(matches!(
            refresher.refresh(&engine).unwrap(),
            Refreshed::Updated(_)
        ));
        took = started.elapsed();
    });
    assert_eq!(engine.info().signed_at, Some(2));
    // The floor: the same loop for as long, with nothing else running.
    let (floor_times, floor_from, floor_to) =
        decide_while(Arc::clone(&engine), settle, || std::thread::sleep(took));
    json!({"archive_bytes": big.len(), "bundle_bytes": unpacked, "entities": engine.info().entities,
           "refresh_ms": took.as_secs_f64() * 1e3, "unpack_and_load_ms": load_ms,
           "during_swap": window(&times, from, to),
           "floor_no_swap": window(&floor_times, floor_from, floor_to)})
}

fn main() {
    let report = json!({
        "unchanged": unchanged(2_000),
        "swap": swap(30_000),
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
