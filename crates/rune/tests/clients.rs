//! rune under the real clients: a private containerd, dockerd and podman, each with
//! its own root, state and unix socket in a temporary directory, stopped at the end.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A container that exits 143 on SIGTERM, so stopping it proves the signal arrived.
const TRAP_TERM: &str = "trap 'exit 143' TERM; while true; do sleep 0.05; done";

#[test]
fn containerd_runs_containers_through_rune() {
    if !root_or_skip("containerd_runs_containers_through_rune")
        || !tool_or_skip(
            "containerd_runs_containers_through_rune",
            "/usr/bin/containerd",
        )
    {
        return;
    }
    let c = Containerd::start();
    let image = "docker.io/library/busybox:rune";

    let id = unique_id("ctr-echo");
    let (code, out, err) = c.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        RUNE,
        image,
        &id,
        "sh",
        "-c",
        "echo hello from containerd; exit 7",
    ]);
    assert_eq!(code, 7, "{err}");
    assert_eq!(out, "hello from containerd\n");

    let id = unique_id("ctr-long");
    let (code, _, err) = c.ctr(&[
        "run",
        "-d",
        "--runc-binary",
        RUNE,
        image,
        &id,
        "sh",
        "-c",
        TRAP_TERM,
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo exec-out; exit 5",
    ]);
    assert_eq!((code, out.as_str()), (5, "exec-out\n"), "{err}");

    c.ctr(&["task", "pause", &id]);
    let (_, ls, _) = c.ctr(&["task", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with(&id) && l.contains("PAUSED")),
        "{ls}"
    );
    c.ctr(&["task", "resume", &id]);
    let (_, ls, _) = c.ctr(&["task", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with(&id) && l.contains("RUNNING")),
        "{ls}"
    );
    let (_, ps, _) = c.ctr(&["task", "ps", &id]);
    assert!(ps.lines().count() >= 2, "{ps}");

    let (code, _, err) = c.ctr(&["task", "kill", "-s", "SIGTERM", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(wait_until(Duration::from_secs(10), || {
        c.ctr(&["task", "ls"])
            .1
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("STOPPED"))
    }));
    c.ctr(&["task", "delete", &id]);
    c.ctr(&["containers", "rm", &id]);

    // SIGKILL ends a program that ignores SIGTERM.
    let id = unique_id("ctr-kill");
    assert_eq!(
        c.ctr(&[
            "run",
            "-d",
            "--runc-binary",
            RUNE,
            image,
            &id,
            "sleep",
            "1000"
        ])
        .0,
        0
    );
    assert_eq!(c.ctr(&["task", "kill", "-s", "SIGKILL", &id]).0, 0);
    assert!(wait_until(Duration::from_secs(10), || {
        c.ctr(&["task", "ls"])
            .1
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("STOPPED"))
    }));
    assert_eq!(c.ctr(&["task", "delete", &id]).0, 0);
    assert_eq!(c.ctr(&["containers", "rm", &id]).0, 0);
    assert_eq!(
        leftovers(Path::new("/run/containerd/runc/default"), &id),
        Vec::<String>::new()
    );
}

#[test]
fn docker_runs_containers_with_runtime_rune() {
    if !root_or_skip("docker_runs_containers_with_runtime_rune")
        || !tool_or_skip(
            "docker_runs_containers_with_runtime_rune",
            "/usr/sbin/dockerd",
        )
    {
        return;
    }
    let d = Dockerd::start();
    let base = ["--runtime", "rune", "--network", "none", "--pull=never"];

    let mut args = vec!["run", "--rm"];
    args.extend(base);
    args.extend(["busybox:rune", "sh", "-c", "echo hello from docker; exit 6"]);
    let (code, out, err) = d.docker(&args);
    assert_eq!((code, out.as_str()), (6, "hello from docker\n"), "{err}");

    let name = unique_id("dk");
    let mut args = vec!["run", "-d", "--name", &name];
    args.extend(base);
    args.extend(["busybox:rune", "sh", "-c", TRAP_TERM]);
    assert_eq!(d.docker(&args).0, 0);
    let (code, out, err) = d.docker(&["exec", &name, "sh", "-c", "echo exec-docker; exit 9"]);
    assert_eq!((code, out.as_str()), (9, "exec-docker\n"), "{err}");
    let (code, _, err) = d.docker(&["stop", "-t", "10", &name]);
    assert_eq!(code, 0, "{err}");
    let (_, exit, _) = d.docker(&["inspect", "-f", "{{.State.ExitCode}}", &name]);
    assert_eq!(exit.trim(), "143", "SIGTERM reached the container's trap");
    assert_eq!(d.docker(&["rm", &name]).0, 0);
}

#[test]
fn podman_runs_containers_with_runtime_rune() {
    if !root_or_skip("podman_runs_containers_with_runtime_rune")
        || !tool_or_skip(
            "podman_runs_containers_with_runtime_rune",
            "/usr/bin/podman",
        )
    {
        return;
    }
    let dir = tempfile::Builder::new().prefix("podman").tempdir().unwrap();
    let podman = |args: &[&str]| {
        let p = |name: &str| dir.path().join(name);
        run(Command::new("/usr/bin/podman")
            .arg("--root")
            .arg(p("root"))
            .arg("--runroot")
            .arg(p("runroot"))
            .arg("--tmpdir")
            .arg(p("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
                "--runtime",
                RUNE,
            ])
            .args(args))
    };
    let tar = images().join("rootfs.tar");
    let (code, _, err) = podman(&["import", tar.to_str().unwrap(), "localhost/busybox:rune"]);
    assert_eq!(code, 0, "import: {err}");
    // podman asks for rlimits above what some sandboxes allow; stay within them.
    let base = [
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ];

    let mut args = vec!["run", "--rm"];
    args.extend(base);
    args.extend([
        "localhost/busybox:rune",
        "sh",
        "-c",
        "echo hello from podman; exit 8",
    ]);
    let (code, out, err) = podman(&args);
    assert_eq!((code, out.as_str()), (8, "hello from podman\n"), "{err}");

    let name = unique_id("pm");
    let mut args = vec!["run", "-d", "--name", &name];
    args.extend(base);
    args.extend(["localhost/busybox:rune", "sh", "-c", TRAP_TERM]);
    let (code, _, err) = podman(&args);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = podman(&["exec", &name, "sh", "-c", "echo exec-podman; exit 4"]);
    assert_eq!((code, out.as_str()), (4, "exec-podman\n"), "{err}");
    let (code, _, err) = podman(&["stop", "-t", "10", &name]);
    assert_eq!(code, 0, "{err}");
    let (_, exit, _) = podman(&["inspect", "-f", "{{.State.ExitCode}}", &name]);
    assert_eq!(exit.trim(), "143");
    assert_eq!(podman(&["rm", &name]).0, 0);
    unmount_under(dir.path());
}
