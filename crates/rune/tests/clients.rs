//! rune under the real clients: a private containerd, dockerd and podman, each with
//! its own root, state and unix socket in a temporary directory, stopped at the end.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::podman::*;
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
    let pm = Podman::new();
    let podman = |args: &[&str]| pm.cmd(RUNE, args);
    pm.import(&images().join("rootfs.tar"), "localhost/busybox:rune");
    let base = RUN_BASE;

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
}

/// `podman run --read-only --tmpfs /x`: the root is read-only, `/x` a writable tmpfs that
/// starts with the image's `/x` (podman asks for `tmpcopyup`), and every mount the
/// container sees is as with `--runtime /usr/sbin/runc`.
#[test]
fn podman_read_only_and_tmpfs_as_with_runc() {
    const RUNC: &str = "/usr/sbin/runc";
    let test = "podman_read_only_and_tmpfs_as_with_runc";
    if !root_or_skip(test) || !tool_or_skip(test, "/usr/bin/podman") || !tool_or_skip(test, RUNC) {
        return;
    }
    // The busybox image with a /x holding a file, its mode not tmpfs's default.
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("image.tar");
    std::fs::copy(images().join("rootfs.tar"), &tar).unwrap();
    let x = dir.path().join("layer/x");
    std::fs::create_dir_all(&x).unwrap();
    std::fs::write(x.join("f"), "from the image\n").unwrap();
    std::fs::set_permissions(&x, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    let (code, _, err) = run(Command::new("tar")
        .arg("-rf")
        .arg(&tar)
        .arg("-C")
        .arg(dir.path().join("layer"))
        .arg("./x"));
    assert_eq!(code, 0, "tar: {err}");
    let pm = Podman::new();
    pm.import(&tar, "localhost/busybox-x:rune");

    let script = "cat /x/f; touch /x/new && echo x-writable; ls -a /x; stat -c '%a %U' /x; \
        touch /new 2>/dev/null && echo root-writable || echo root-read-only; \
        awk '{print $2, $3, $4}' /proc/mounts | sort";
    let mut seen = Vec::new();
    for runtime in [RUNC, RUNE] {
        let mut args = vec!["run", "--rm", "--read-only", "--tmpfs", "/x"];
        args.extend(RUN_BASE);
        args.extend(["localhost/busybox-x:rune", "sh", "-c", script]);
        let (code, out, err) = pm.cmd(runtime, &args);
        seen.push((code, out, err));
    }
    let (runc, rune) = (&seen[0], &seen[1]);
    let expected = "from the image\nx-writable\n.\n..\nf\nnew\n750 root\nroot-read-only\n";
    assert!(
        runc.0 == 0 && runc.1.starts_with(expected),
        "runc: {runc:?}"
    );
    assert!(runc.1.contains("\n/x tmpfs rw,"), "runc: {runc:?}");
    assert_eq!((rune.0, &rune.1), (runc.0, &runc.1), "rune: {}", rune.2);
}

/// podman's passthrough log driver gives the container podman's own stdio: with
/// /dev/null on 0, 1 and 2, a program writing to each of them fares as under runc (the
/// issue's example: libcontainer reopened /dev/null read-only over them).
#[test]
fn podman_passthrough_stdio_as_with_runc() {
    const RUNC: &str = "/usr/sbin/runc";
    let test = "podman_passthrough_stdio_as_with_runc";
    if !root_or_skip(test) || !tool_or_skip(test, "/usr/bin/podman") || !tool_or_skip(test, RUNC) {
        return;
    }
    let pm = Podman::new();
    pm.import(&images().join("rootfs.tar"), "localhost/busybox:rune");
    let out = tempfile::tempdir().unwrap();
    let script = "exec 3>>/out/r; for fd in 0 1 2; do if echo x >&$fd; then echo \"$fd ok\" >&3; \
        else echo \"$fd fail\" >&3; fi; done";
    let mount = format!("{}:/out", out.path().display());
    let mut seen = Vec::new();
    for runtime in [RUNC, RUNE] {
        let _ = std::fs::remove_file(out.path().join("r"));
        let mut args = vec!["run", "--rm", "--log-driver", "passthrough", "-v", &mount];
        args.extend(RUN_BASE);
        args.extend(["localhost/busybox:rune", "sh", "-c", script]);
        let status = pm
            .command(runtime, &args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        let record = std::fs::read_to_string(out.path().join("r")).unwrap_or_default();
        seen.push((status.code(), record));
    }
    let (runc, rune) = (&seen[0], &seen[1]);
    assert_eq!(runc.0, Some(0), "runc: {runc:?}");
    assert_eq!(runc.1.lines().count(), 3, "runc: {runc:?}");
    assert_eq!(rune, runc);
}
