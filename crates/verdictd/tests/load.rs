//! Sustained load against the real binary: full exchanges (auth, attest, GET) as fast
//! as the clients go, for `VERDICTD_LOAD_SECS` seconds (default 20). verdictd must
//! answer every one (no 429: full session tables evict their oldest entry) and its
//! memory must stay flat once the tables are full: the resident set of the last
//! quarter of the run is compared with the first quarter's. `VERDICTD_LOAD_TABLE`
//! (default 1000) sets both session tables' size: with the defaults (10000) a run must
//! be long enough for them to fill in its first quarter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

/// VmRSS of a process, in KiB (from /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn sustained_exchanges_never_see_429_and_memory_stays_flat() {
    let secs: u64 = std::env::var("VERDICTD_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    // Tables small enough to fill within the first quarter of the run, so the
    // comparison is of the steady state.
    let table: usize = std::env::var("VERDICTD_LOAD_TABLE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let v = Verdictd::start(&format!(
        "resource_policy = \"allow_all\"\n{ADMIN_OPEN}[session]\nmax_sessions = {table}\nmax_challenges = {table}\n"
    ));
    store(&v, "default/key/load", b"load");
    let pid = v.child.id();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(secs);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut samples = vec![];
            while Instant::now() < stop {
                samples.push((rss_kib(pid), done.load(Ordering::Relaxed)));
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        })
    };
    let errors: Vec<String> = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let url = v.url.clone();
            let done = done.clone();
            tasks.spawn(async move {
                let mut errors = vec![];
                while Instant::now() < stop {
                    let mut agent = sample_agent(&url, None);
                    match agent.get_resource("kbs:///default/key/load").await {
                        Ok(s) if s.as_slice() == b"load" => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        other => errors.push(format!("{:?}", other.map(|s| s.len()))),
                    }
                }
                errors
            });
        }
        let mut all = vec![];
        while let Some(r) = tasks.join_next().await {
            all.extend(r.unwrap());
        }
        all
    });
    let samples = sampler.join().unwrap();
    let total = done.load(Ordering::Relaxed);
    let q = samples.len() / 4;
    let first = samples[..q].iter().map(|s| s.0).max().unwrap();
    let last = samples[samples.len() - q..]
        .iter()
        .map(|s| s.0)
        .max()
        .unwrap();
    eprintln!(
        "{total} exchanges in {secs} s ({:.0}/s); RSS max first quarter {first} KiB, last quarter {last} KiB, {} samples",
        total as f64 / secs as f64,
        samples.len()
    );
    assert!(
        errors.is_empty(),
        "{} errors, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
    assert!(total > 0);
    // Flat: the last quarter within 4 MiB of the first (the tables are full by then).
    assert!(
        last <= first + 4096,
        "RSS grew from {first} KiB to {last} KiB over {total} exchanges"
    );
    v.stop();
}
