//! How much memory a preforked worker stops sharing with its parent once it decides.
//!
//! The parent loads two engines, as the bindings do (`arbiter::ffi::in_own_arena`), the default
//! bundle and the default bundle with 100,000 more entities (`gitlab_with_entities`), makes
//! 1,000 decisions as a preloading server's boot check would, then forks 8 workers and a control. Each worker makes
//! 100,000 varied decisions (nine in ten on the large bundle, over its users and projects); the
//! control runs the same loop, building the same request parts, without deciding. Each reads its
//! own `/proc/self/smaps` before and after; once all have reported, and while all are alive, the
//! parent reads each one's `/proc/PID/smaps_rollup` for its USS and PSS. What a worker's
//! decisions made private is its growth in private memory less the control's, reported in all
//! and apart for the first 1,000 decisions (a worker's first use).
//!
//! Prints JSON (KiB). `--check` exits 1 when a worker's decisions made 1 MiB or more private
//! (what reference counts bumped on shared entities would do: the decisions reach tens of
//! thousands of them), or when a decision failed (`make fork-test`). `--write-bundle DIR` writes the large bundle
//! instead, for benches/ruby/fork_share.rb.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Instant;

use arbiter::ffi::in_own_arena;
use arbiter::{Engine, RequestParts};
use arbiter_benches::{gitlab_files, gitlab_with_entities};
use serde_json::{json, Value};

const WORKERS: usize = 8;
const DECISIONS: usize = 100_000;
const ENTITIES: usize = 100_000;
/// The first decisions, measured apart: what a worker's first use costs once.
const FIRST: usize = 1_000;
/// The budget of private memory a worker's decisions may add.
const LIMIT_KIB: i64 = 1024;

const ACTIONS: [&str; 8] = [
    "read_project",
    "download_code",
    "push_code",
    "read_issue",
    "create_issue",
    "create_merge_request",
    "admin_project",
    "remove_project",
];
const USERS: [&str; 9] = [
    "alice",
    "eve",
    "bob",
    "anonymous",
    "root",
    "dora",
    "ben",
    "lars",
    "audrey",
];
const PROJECTS: [&str; 9] = ["1", "2", "3", "4", "5", "6", "7", "8", "10"];

/// Private (`Private_Clean` + `Private_Dirty`) KiB per mapping name of this process; anonymous
/// mappings are `anon`.
fn private_by_mapping() -> BTreeMap<String, i64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    let mut out = BTreeMap::new();
    let mut name = String::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            name = fields.nth(4).unwrap_or("anon").to_owned();
        } else if first == "Private_Clean:" || first == "Private_Dirty:" {
            let kib: i64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *out.entry(name.clone()).or_insert(0) += kib;
        }
    }
    out
}

/// `field` of `/proc/PID/smaps_rollup`, in KiB.
fn rollup(pid: i32, fields: &[&str]) -> i64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("smaps_rollup");
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| fields.contains(k))
        .map(|(_, v)| {
            v.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<i64>()
                .unwrap_or(0)
        })
        .sum()
}

/// The worker's loop over decisions `range` (of `DECISIONS` varied ones), or (the control) the
/// same request parts built without deciding. Adds to `counts` (allowed, denied, failed).
fn decide(
    worker: usize,
    range: std::ops::Range<usize>,
    (small, large): (&Engine, &Engine),
    control: bool,
    counts: &mut (usize, usize, usize),
) {
    let (users, projects) = (
        ENTITIES * 3 / 5,
        ENTITIES - ENTITIES * 3 / 5 - ENTITIES / 100,
    );
    for i in range {
        let action = ACTIONS[(i / 7 + worker) % ACTIONS.len()];
        let (engine, user, project) = if i % 10 == 0 {
            (
                small,
                USERS[i % USERS.len()].to_owned(),
                PROJECTS[(i / 3) % PROJECTS.len()].to_owned(),
            )
        } else {
            let u = (i * 7919 + worker * 104_729) % users;
            let p = (i * 31 + worker * 4_099) % projects;
            (large, format!("u{u}"), format!("bench-{p}"))
        };
        let parts = RequestParts {
            principal: Some(("Gitlab::User", &user)),
            action: ("Gitlab::Action", action),
            resource: ("Gitlab::Project", &project),
            context_json: Some(r#"{"admin_mode": false}"#),
            entities_json: None,
            token: None,
            request_id: None,
        };
        if control {
            std::hint::black_box(&parts);
            continue;
        }
        match engine.authorize_parts(&parts) {
            Ok(d) if d.allowed() && d.errors.is_empty() => counts.0 += 1,
            Ok(d) if d.errors.is_empty() => counts.1 += 1,
            _ => counts.2 += 1,
        }
    }
}

/// A pipe as (read end, write end).
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

/// The parent's two pipes: workers report on one, and wait for the other to close.
struct Pipes {
    report: (File, File),
    release: (File, File),
}

/// Forks a child that runs `work`, writes its answer as one line to the report pipe and then
/// waits until the parent closes the release pipe.
fn spawn(pipes: &Pipes, work: impl FnOnce() -> Value) -> i32 {
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            // Only the parent may hold the release pipe open.
            unsafe { libc::close(pipes.release.1.as_raw_fd()) };
            // A panic must not unwind into the parent's loop, here in the child.
            let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|_| json!({"panicked": true}));
            // One write of under PIPE_BUF bytes: the workers' lines never interleave.
            let _ = (&pipes.report.1).write_all(format!("{answer}\n").as_bytes());
            let _ = (&pipes.release.0).read(&mut [0u8; 1]);
            unsafe { libc::_exit(0) }
        }
        pid => pid,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(dir) = args.iter().skip_while(|a| *a != "--write-bundle").nth(1) {
        std::fs::create_dir_all(dir).expect("the bundle directory");
        for file in gitlab_with_entities(ENTITIES) {
            std::fs::write(std::path::Path::new(dir).join(&file.path), &file.contents)
                .expect("a bundle file");
        }
        return;
    }
    let check = args.iter().any(|a| a == "--check");
    let started = Instant::now();
    // As the bindings load (`arbiter::ffi::in_own_arena`).
    let small =
        in_own_arena(|| Engine::from_files(gitlab_files())).expect("the default bundle loads");
    let large = in_own_arena(|| Engine::from_files(gitlab_with_entities(ENTITIES)))
        .expect("the large bundle loads");
    let load_seconds = started.elapsed().as_secs_f64();
    // A preloading server checks its engine before forking; so does this parent.
    decide(WORKERS, 0..FIRST, (&small, &large), false, &mut (0, 0, 0));
    let pipes = Pipes {
        report: pipe(),
        release: pipe(),
    };

    let mut pids = Vec::new();
    for worker in 0..=WORKERS {
        let control = worker == WORKERS;
        let (small, large) = (&small, &large);
        pids.push(spawn(&pipes, move || {
            let total = |m: &BTreeMap<String, i64>| m.values().sum::<i64>();
            let before = private_by_mapping();
            let started = Instant::now();
            let mut counts = (0, 0, 0);
            decide(worker, 0..FIRST, (small, large), control, &mut counts);
            let first = total(&private_by_mapping()) - total(&before);
            decide(
                worker,
                FIRST..DECISIONS,
                (small, large),
                control,
                &mut counts,
            );
            let seconds = started.elapsed().as_secs_f64();
            let after = private_by_mapping();
            let (allowed, denied, failed) = counts;
            let mut grown: Vec<(String, i64)> = after
                .iter()
                .map(|(name, kib)| (name.clone(), kib - before.get(name).copied().unwrap_or(0)))
                .filter(|(_, kib)| *kib != 0)
                .collect();
            grown.sort_by_key(|(_, kib)| -kib);
            json!({"worker": worker, "control": control, "pid": std::process::id(),
                   "allowed": allowed, "denied": denied, "failed": failed, "seconds": seconds,
                   "private_growth_kib": grown.iter().map(|(_, k)| k).sum::<i64>(),
                   "first_growth_kib": first,
                   "growth_by_mapping_kib": grown.into_iter().take(6).collect::<BTreeMap<_, _>>()})
        }));
    }
    let Pipes {
        report: (report_read, report_write),
        release: (release_read, release_write),
    } = pipes;
    drop((report_write, release_read));
    let mut reports: Vec<Value> = BufReader::new(report_read)
        .lines()
        .take(pids.len())
        .map(|l| serde_json::from_str(&l.expect("a report")).expect("a report is JSON"))
        .collect();
    if reports.iter().any(|r| r["panicked"] == true) {
        drop(release_write);
        eprintln!("fork_share: a worker panicked");
        std::process::exit(1);
    }
    for report in &mut reports {
        let pid = report["pid"].as_i64().expect("pid") as i32;
        report["uss_kib"] = rollup(pid, &["Private_Clean", "Private_Dirty"]).into();
        report["pss_kib"] = rollup(pid, &["Pss"]).into();
    }
    drop(release_write);
    for pid in pids {
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    let parent = std::process::id() as i32;
    let (control, control_first) = reports
        .iter()
        .find(|r| r["control"] == true)
        .map(|r| {
            let kib = |field: &str| r[field].as_i64().unwrap_or(0);
            (kib("private_growth_kib"), kib("first_growth_kib"))
        })
        .expect("the control reported");
    let control_rest = control - control_first;
    let (mut worst, mut worst_rest, mut failed) = (0, 0, 0);
    for report in reports.iter_mut().filter(|r| r["control"] == false) {
        let growth = report["private_growth_kib"].as_i64().unwrap_or(0);
        let rest = growth - report["first_growth_kib"].as_i64().unwrap_or(0);
        report["engine_private_kib"] = (growth - control).into();
        report["engine_private_after_first_kib"] = (rest - control_rest).into();
        worst = worst.max(growth - control);
        worst_rest = worst_rest.max(rest - control_rest);
        failed += report["failed"].as_u64().unwrap_or(0) + u64::from(report["allowed"] == 0);
    }
    let summary = json!({
        "workers": WORKERS, "decisions_per_worker": DECISIONS, "entities": ENTITIES,
        "load_seconds": load_seconds,
        "parent_rss_kib": rollup(parent, &["Rss"]),
        "first_decisions": FIRST, "worst_engine_private_kib": worst,
        "worst_engine_private_after_first_kib": worst_rest, "limit_kib": LIMIT_KIB,
        "reports": reports,
    });
    println!("{}", serde_json::to_string_pretty(&summary).expect("JSON"));
    if check && (worst >= LIMIT_KIB || failed > 0) {
        eprintln!(
            "fork_share: a worker's decisions made {worst} KiB private (limit {LIMIT_KIB}); \
             {failed} failed or never allowed"
        );
        std::process::exit(1);
    }
}
