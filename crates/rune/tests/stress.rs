//! Lifecycle cycles under CPU load (issue 15, section 7: an enclave `rune run -d` once
//! hung for 300 s under load). Both cores are kept busy while plain and sim-enclave
//! containers go through `run -d`, `exec -d`, foreground `exec`, `kill` and
//! `delete --force`; every rune call has a hard timeout, and a call that exceeds it
//! fails the test naming the operation, with the stuck process tree's `wchan`,
//! `/proc/<pid>/stack` and state for diagnosis.
//!
//! Bounded for `make test` (about 20 s of cycles); `RUNE_STRESS_SECS=N` runs for N
//! seconds instead.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// The hard limit for one rune call.
const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// Busy-loop threads, one per core, stopped when dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Load {
    fn start(n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                    x
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Pids of `pid` and all its descendants (from /proc/*/stat's ppid field).
fn tree(pid: i32) -> Vec<i32> {
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // Fields after the last ')': state ppid ...
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            parent_of.push((p, ppid));
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == cur)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

/// wchan, state, command line and kernel stack of every process in `pid`'s tree.
fn diagnose(pid: i32) -> String {
    let mut s = String::new();
    for p in tree(pid) {
        let read = |f: &str| std::fs::read_to_string(format!("/proc/{p}/{f}")).unwrap_or_default();
        let cmdline = read("cmdline").replace('\0', " ");
        let state = read("status")
            .lines()
            .filter(|l| l.starts_with("State:") || l.starts_with("PPid:"))
            .collect::<Vec<_>>()
            .join(" ");
        s.push_str(&format!(
            "--- pid {p}: {cmdline}\n    {state} wchan={}\n{}",
            read("wchan"),
            read("stack")
        ));
    }
    s
}

/// Runs rune with a hard timeout; on timeout, panics naming `what` with the diagnosis
/// of the stuck process tree (which is then killed).
fn rune_op(rune: &Rune, platform: &Path, what: &str, args: &[&str]) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let mut child = Command::new(RUNE)
        .env("INCLAVARE_SIM_PLATFORM_DIR", platform)
        .arg("--root")
        .arg(rune.root.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > OP_TIMEOUT {
            let pid = child.id() as i32;
            let diag = diagnose(pid);
            for p in tree(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait();
            panic!("{what} (rune {args:?}) did not finish in {OP_TIMEOUT:?}:\n{diag}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: read_back(out),
        stderr: read_back(err),
    }
}

fn ok(rune: &Rune, platform: &Path, what: &str, args: &[&str]) -> String {
    let out = rune_op(rune, platform, what, args);
    assert!(
        out.status.success(),
        "{what} (rune {args:?}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[derive(Default, Debug)]
struct Counts {
    run_d: u32,
    exec_d: u32,
    exec: u32,
    kill: u32,
    delete_force: u32,
}

/// One cycle: `run -d`, `exec -d`, foreground `exec` (whose exit code comes back), then
/// either `kill 9` + wait for stopped + `delete`, or `delete --force` of the running
/// container; nothing may be left behind.
fn cycle(rune: &Rune, platform: &Path, b: &Bundle, kind: &str, force: bool, n: &mut Counts) {
    let id = unique_id(&format!("stress-{kind}"));
    let bundle = b.path().to_str().unwrap();
    let pid_file = platform.join(format!("{id}.pid"));
    ok(
        rune,
        platform,
        &format!("{kind} run -d"),
        &["run", "-d", "--bundle", bundle, &id],
    );
    n.run_d += 1;
    ok(
        rune,
        platform,
        &format!("{kind} exec -d"),
        &[
            "exec",
            "-d",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
            // The signed program (a signed enclave runs nothing else: `exec -d` of another
            // fails, as it now says).
            "/bin/sh",
            "-c",
            "sleep 600",
        ],
    );
    n.exec_d += 1;
    let out = rune_op(
        rune,
        platform,
        &format!("{kind} exec"),
        &["exec", &id, "/bin/sh", "-c", "echo in; exit 7"],
    );
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(7), "in\n"),
        "{kind} exec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    n.exec += 1;
    if force {
        ok(
            rune,
            platform,
            &format!("{kind} delete --force"),
            &["delete", "--force", &id],
        );
        n.delete_force += 1;
    } else {
        ok(rune, platform, &format!("{kind} kill"), &["kill", &id, "9"]);
        n.kill += 1;
        let stopped = wait_until(OP_TIMEOUT, || {
            let out = rune_op(rune, platform, &format!("{kind} state"), &["state", &id]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .map(|v| v["status"] == "stopped")
                .unwrap_or(false)
        });
        assert!(
            stopped,
            "{kind} {id} not stopped {OP_TIMEOUT:?} after kill 9"
        );
        ok(rune, platform, &format!("{kind} delete"), &["delete", &id]);
    }
    let _ = std::fs::remove_file(&pid_file);
    // The detached exec's process goes with the container; give the kernel a moment.
    let clean = wait_until(Duration::from_secs(10), || {
        leftovers(rune.root.path(), &id).is_empty()
    });
    assert!(clean, "{kind}: {:?}", leftovers(rune.root.path(), &id));
}

#[test]
fn lifecycle_cycles_under_cpu_load_finish_in_time_and_leave_nothing() {
    if !root_or_skip("lifecycle_cycles_under_cpu_load_finish_in_time_and_leave_nothing") {
        return;
    }
    let secs: u64 = std::env::var("RUNE_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let (pal, _) = sim_artifacts();
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    std::fs::create_dir(&platform).unwrap();

    let plain = Bundle::new(&["/bin/sleep", "600"]);
    // A signed enclave: its entrypoint's digest goes through the sim PAL's digest cache.
    let mut enclave = Bundle::new(&["/bin/sh", "-c", "sleep 600"])
        .private_rootfs()
        .enclave(&pal, "");
    sim_sign_rootfs(work.path(), &enclave.path().join("rootfs"), "/bin/sh");
    enclave.spec["process"]["args"] = json!(["/bin/sh", "-c", "sleep 600"]);
    enclave.save();

    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let load = Load::start(cores);
    let start = Instant::now();
    let mut n = Counts::default();
    let mut i = 0u32;
    // Two rounds at least: `delete --force` is taken on odd ones.
    while start.elapsed() < Duration::from_secs(secs) || i < 2 {
        let force = i % 2 == 1;
        cycle(&rune, &platform, &plain, "plain", force, &mut n);
        cycle(&rune, &platform, &enclave, "enclave", force, &mut n);
        i += 1;
    }
    drop(load);
    println!(
        "stress: {i} rounds (plain + enclave) in {:.1} s with {cores} busy threads: {n:?}",
        start.elapsed().as_secs_f64()
    );
    assert!(i > 0);
}
