//! A fleet on paper: 1,000 processes refreshing from one registry on the refresher's schedule
//! (`delay_after`), each refresh one request. The registry's budget is three times the fleet's
//! average rate (1,000 / 60 s); the request rate must stay under it once the fleet has started,
//! and fall while the registry is down.

use std::time::Duration;

use arbiter_fleet::{delay_after, delay_after_start, RefreshOptions};

const CLIENTS: usize = 1_000;
const HOUR: usize = 3_600;

/// Requests per second over an hour: every client starts at second 0 (a fleet-wide restart,
/// the worst case) and refreshes on the refresher's schedule; attempts during `down`
/// (seconds) fail.
fn simulate(down: std::ops::Range<f64>, seed: u64) -> Vec<u32> {
    let options = RefreshOptions {
        interval: Duration::from_secs(60),
        ..RefreshOptions::default()
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut per_second = vec![0u32; HOUR];
    for _ in 0..CLIENTS {
        per_second[0] += 1;
        let mut t = delay_after_start(&options, rng.f64()).as_secs_f64();
        let mut failures = 0;
        while t < HOUR as f64 {
            per_second[t as usize] += 1;
            failures = if down.contains(&t) { failures + 1 } else { 0 };
            t += delay_after(&options, failures, rng.f64()).as_secs_f64();
        }
    }
    per_second
}

fn peak(rates: &[u32]) -> u32 {
    rates.iter().copied().max().unwrap_or(0)
}

#[test]
fn a_thousand_clients_stay_under_the_registrys_budget() {
    let average = CLIENTS as f64 / 60.0;
    let budget = (3.0 * average) as u32;
    let steady = simulate(0.0..0.0, 7);
    // The start itself is one request each, at once: a fleet-wide restart is the host's to
    // stagger. After it, jitter spreads the fleet out.
    assert!(steady[0] >= CLIENTS as u32);
    let after_start = peak(&steady[1..]);
    let last_half_hour = peak(&steady[HOUR / 2..]);
    println!(
        "average {average:.1}/s, budget {budget}/s; peak after the start {after_start}/s, \
         in the last half hour {last_half_hour}/s"
    );
    assert!(after_start <= budget, "{after_start} > {budget}");

    // Down from minute 10 to minute 30: failures back off, so the registry sees fewer requests
    // than usual while it is down, and no stampede when it returns.
    let outage = simulate(600.0..1800.0, 7);
    let during: u32 = outage[900..1800].iter().sum();
    let usual: u32 = steady[900..1800].iter().sum();
    let after = peak(&outage[1800..]);
    println!(
        "down 10-30 min: {during} requests in its last 15 minutes (usually {usual}); peak after \
         it returns {after}/s"
    );
    assert!(during * 2 < usual, "{during} against {usual}");
    assert!(after <= budget, "{after} > {budget}");
}
