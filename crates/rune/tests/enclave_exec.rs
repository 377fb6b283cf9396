//! `rune exec -d` in an enclave container, as containerd's shim uses it: the pid in the
//! pid file is what the caller waits on and signals. This test process becomes a child
//! subreaper (as a shim is), so it runs in a test binary of its own.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// Host pids of processes whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> Vec<i32> {
    let want = argv.join("\0") + "\0";
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes())
        })
        .collect()
}

fn exec_detached(rune: &Rune, id: &str, pid_file: &std::path::Path, argv: &[&str]) -> Pid {
    let mut args = vec!["exec", "-d", "--pid-file", pid_file.to_str().unwrap(), id];
    args.extend_from_slice(argv);
    rune.ok(&args);
    let pid: i32 = std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    Pid::from_raw(pid)
}

#[test]
fn detached_exec_gives_a_pid_that_stands_for_the_enclave_process() {
    if !root_or_skip("detached_exec_gives_a_pid_that_stands_for_the_enclave_process") {
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let (pal, _) = sim_artifacts();
    let rune = Rune::new();
    let b = Bundle::new(&["/bin/sleep", "60"]).enclave(&pal, "debug");
    let id = unique_id("execd");
    let platform = tempfile::tempdir().unwrap();
    std::env::set_var("INCLAVARE_SIM_PLATFORM_DIR", platform.path());
    rune.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let pid_file = platform.path().join("exec.pid");

    // The exit code comes back as the waiter's exit status.
    let pid = exec_detached(&rune, &id, &pid_file, &["/bin/sh", "-c", "exit 3"]);
    assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 3));

    // A signal to the pid reaches the enclave process.
    let pid = exec_detached(&rune, &id, &pid_file, &["/bin/sleep", "1234"]);
    assert!(wait_until(Duration::from_secs(5), || !processes(&[
        "/bin/sleep",
        "1234"
    ])
    .is_empty()));
    kill(pid, Signal::SIGTERM).unwrap();
    match waitpid(pid, None).unwrap() {
        WaitStatus::Exited(_, code) => assert_eq!(code, 128 + 15),
        other => panic!("waiter: {other:?}"),
    }
    assert!(processes(&["/bin/sleep", "1234"]).is_empty());

    // SIGKILL cannot be forwarded; the enclave process must not outlive its pid.
    let pid = exec_detached(&rune, &id, &pid_file, &["/bin/sleep", "4321"]);
    assert!(wait_until(Duration::from_secs(5), || !processes(&[
        "/bin/sleep",
        "4321"
    ])
    .is_empty()));
    kill(pid, Signal::SIGKILL).unwrap();
    assert_eq!(
        waitpid(pid, None).unwrap(),
        WaitStatus::Signaled(pid, Signal::SIGKILL, false)
    );
    assert!(
        wait_until(Duration::from_secs(5), || processes(&[
            "/bin/sleep",
            "4321"
        ])
        .is_empty()),
        "the enclave process outlived its killed waiter"
    );

    // A bad command fails the exec itself, with nothing started.
    let out = rune.cmd(&["exec", "-d", &id]);
    assert!(!out.status.success());

    rune.ok(&["kill", &id, "9"]);
    assert!(wait_until(Duration::from_secs(10), || rune.status(&id) == "stopped"));
    rune.ok(&["delete", &id]);
    // Reap the container's init, reparented to this subreaper when rune exited.
    while let Ok(status) = waitpid(
        Pid::from_raw(-1),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    ) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}
