//! Process set-up, exec and signals as with runc: each case runs the same bundle under
//! rune and under Debian's runc (`make test` installs it) and expects rune to do what
//! runc does. Hooks are held to the runtime spec, where runc 1.1 departs from it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cgroups::*;
use common::parity::*;
use common::*;
use serde_json::json;

/// What one runtime did with a bundle: exit code (or None when create failed), stderr,
/// and the findings file.
#[derive(Debug, PartialEq)]
struct Outcome {
    code: i32,
    stderr: String,
    found: String,
}

/// `runtime --root ROOT ARGS…` with stdio in files.
fn runtime(runtime: &str, root: &Path, args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(runtime);
    c.arg("--root").arg(root).args(args);
    run(&mut c)
}

/// `run` of `b` under `rt` (foreground), then its findings in `out/r`.
fn run_bundle(rt: &str, b: &Bundle, out: &Path) -> Outcome {
    let _ = std::fs::remove_file(out.join("r"));
    let root = tempfile::tempdir().unwrap();
    let id = unique_id("parity");
    let (code, _, stderr) = runtime(
        rt,
        root.path(),
        &["run", "--bundle", b.path().to_str().unwrap(), &id],
    );
    let _ = runtime(rt, root.path(), &["delete", "--force", &id]);
    Outcome {
        code,
        stderr,
        found: std::fs::read_to_string(out.join("r")).unwrap_or_default(),
    }
}

/// Runs `b` under rune and runc; returns both outcomes (rune's first).
fn both(b: &Bundle, out: &Path) -> (Outcome, Outcome) {
    (run_bundle(RUNE, b, out), run_bundle(RUNC, b, out))
}

/// `signo` ignored through the kernel's rt_sigaction: glibc's `signal` refuses 32 and
/// 33, which containerd and its Go shims ignore.
fn ignore_raw(signo: i32) {
    // handler SIG_IGN (1), no flags, no restorer, an empty mask.
    let action = [1u64, 0, 0, 0];
    // SAFETY: the kernel reads 32 bytes of `action` and writes nothing; no handler runs.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signo as libc::c_long,
            action.as_ptr(),
            std::ptr::null_mut::<u8>(),
            8 as libc::c_long,
        );
    }
}

/// The program starts with no signal ignored or blocked, as under runc, even when the
/// caller ignores some (containerd, a Go program, ignores 32 and 33; rune, a Rust one,
/// SIGPIPE; here also SIGTTIN): `yes | head -1` ends quietly. The same for a sim
/// enclave's program, which its PAL starts.
#[test]
fn the_program_starts_with_default_signal_dispositions_as_with_runc() {
    if skip("signal dispositions") {
        return;
    }
    let out = out_dir();
    let probe = [
        "/bin/sh",
        "-c",
        "grep -E '^Sig(Ign|Blk)' /proc/self/status >/tmp/r; yes | head -1 >/dev/null 2>>/tmp/r",
    ];
    let b = Bundle::new(&probe).bind(out.path(), "/tmp");
    let (pal, _) = sim_artifacts();
    let enclave = Bundle::new(&probe)
        .bind(out.path(), "/tmp")
        .enclave(&pal, "debug");
    let platform = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for (rt, b) in [(RUNE, &b), (RUNC, &b), (RUNE, &enclave)] {
        let _ = std::fs::remove_file(out.path().join("r"));
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("sigdfl");
        let mut c = Command::new(rt);
        c.env("INCLAVARE_SIM_PLATFORM_DIR", platform.path())
            .arg("--root")
            .arg(root.path())
            .args(["run", "--bundle", b.path().to_str().unwrap(), &id]);
        // SAFETY: only rt_sigaction(2) between fork and exec, which is
        // async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                for signo in [libc::SIGPIPE, libc::SIGTTIN, 32, 33] {
                    ignore_raw(signo);
                }
                Ok(())
            });
        }
        let (code, _, err) = run(&mut c);
        let _ = runtime(rt, root.path(), &["delete", "--force", &id]);
        seen.push((
            code,
            err,
            std::fs::read_to_string(out.path().join("r")).unwrap_or_default(),
        ));
    }
    // (exit code, ignored mask, blocked mask, what else the program wrote: "Broken pipe")
    let parse = |(code, err, found): &(i32, String, String)| {
        let mask = |key: &str| {
            found
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        };
        let rest: Vec<&str> = found.lines().filter(|l| !l.starts_with("Sig")).collect();
        (
            *code,
            err.clone(),
            mask("SigIgn:"),
            mask("SigBlk:"),
            rest.join("\n"),
        )
    };
    let (rune, runc, in_enclave) = (parse(&seen[0]), parse(&seen[1]), parse(&seen[2]));
    // runc's init (Go) may leave signal 32 ignored (bit 31); SIGPIPE (bit 12), SIGTTIN
    // (bit 20) and the caller's 33 (bit 32) are not.
    let ign = runc.2.expect("runc: no SigIgn line");
    assert_eq!(
        ign & (1 << 12 | 1 << 20 | 1 << 32),
        0,
        "runc ignores {ign:x}"
    );
    for (what, found) in [("rune", &rune), ("enclave", &in_enclave)] {
        let found_ign = found.2.unwrap_or_else(|| panic!("{what}: no SigIgn line"));
        assert_eq!(
            found_ign & !ign,
            0,
            "{what} ignores {found_ign:x} where runc ignores {ign:x}: {}",
            found.1
        );
    }
    assert_eq!(
        (runc.0, runc.3, runc.4.as_str()),
        (0, Some(0), ""),
        "runc: {}",
        runc.1
    );
    assert_eq!(
        (rune.0, rune.3, rune.4.as_str()),
        (0, Some(0), ""),
        "rune: {}",
        rune.1
    );
    let rune_ign = rune.2.expect("rune: no SigIgn line");
    assert_eq!(
        rune_ign & !ign,
        0,
        "rune ignores {rune_ign:x} where runc ignores {ign:x}"
    );
}

/// A `process.env` entry runc's init refuses (no `=`, an empty name, a NUL byte) fails
/// create in one error line carrying runc's own sentence and the entry; nothing is left.
/// `exec --env` with such an entry fails as runc's does.
#[test]
fn a_bad_environment_entry_is_refused_in_runcs_words() {
    if skip("bad process.env") {
        return;
    }
    for entry in ["=x", "NOEQUALS", "A=b\0c"] {
        let mut b = Bundle::new(&["true"]);
        b.spec["process"]["env"] = json!(["PATH=/bin", entry]);
        b.save();
        let mut seen = Vec::new();
        for rt in [RUNE, RUNC] {
            let root = tempfile::tempdir().unwrap();
            let id = unique_id("badenv");
            let r = runtime(
                rt,
                root.path(),
                &["run", "--bundle", b.path().to_str().unwrap(), &id],
            );
            let left = leftovers(root.path(), &id);
            let _ = runtime(rt, root.path(), &["delete", "--force", &id]);
            seen.push((r, left));
        }
        let ((rune, rune_left), (runc, _)) = (&seen[0], &seen[1]);
        assert_eq!(runc.0, 1, "runc {entry:?}: {}", runc.2);
        // runc: `… error during container init: <sentence>: "<entry>"`
        let said = error_messages(&runc.2).pop().unwrap_or_default();
        let sentence = said
            .split_once("error during container init: ")
            .map(|(_, s)| s.to_string())
            .unwrap_or_else(|| panic!("runc {entry:?}: {}", runc.2));
        let (code, one, msg) = failure(rune);
        assert_eq!((code, one), (1, true), "rune {entry:?}: {}", rune.2);
        assert!(
            msg.ends_with(&sentence),
            "rune {entry:?}: {msg} / runc: {sentence}"
        );
        assert_eq!(rune_left, &Vec::<String>::new(), "rune {entry:?}");
    }

    // exec --env, or ids above runc's range: both refuse, in runc's words; the container
    // keeps running.
    let b = Bundle::new(&["sleep", "100"]);
    let flags: [&[&str]; 3] = [
        &["--env", "=x"],
        &["--user", "4294967295"],
        &["--additional-gids", "4294967295"],
    ];
    for flag in flags {
        let mut seen = Vec::new();
        for rt in [RUNE, RUNC] {
            let root = tempfile::tempdir().unwrap();
            let id = unique_id("badexecenv");
            let (code, _, err) = runtime(
                rt,
                root.path(),
                &["run", "-d", "--bundle", b.path().to_str().unwrap(), &id],
            );
            assert_eq!(code, 0, "{rt}: {err}");
            let args: Vec<&str> = ["exec"]
                .iter()
                .chain(flag)
                .chain([id.as_str(), "true"].iter())
                .copied()
                .collect();
            let r = runtime(rt, root.path(), &args);
            let (_, state, _) = runtime(rt, root.path(), &["state", &id]);
            let _ = runtime(rt, root.path(), &["delete", "--force", &id]);
            let running = state.contains("\"running\"");
            seen.push((r.0 != 0, running, failure(&r).1, failure(&r).2));
        }
        assert_eq!((seen[1].0, seen[1].1), (true, true), "runc: {}", seen[1].3);
        assert_eq!(
            (seen[0].0, seen[0].1, seen[0].2),
            (true, true, true),
            "rune {flag:?}: {}",
            seen[0].3
        );
        // runc's words: the part after its last ": " that names the cause.
        let runc_words = seen[1].3.rsplit("unable to setup user: ").next().unwrap();
        let runc_words = runc_words.rsplit("process: ").next().unwrap();
        assert!(
            seen[0].3.contains(runc_words),
            "rune {flag:?}: {} (runc: {})",
            seen[0].3,
            seen[1].3
        );
    }
}

/// execve refused after `start` (a seccomp profile that denies it): the program's
/// failure is said on the container's stderr in runc's words and the run ends with 1,
/// as under runc. Before, rune ended with 255 and said nothing.
#[test]
fn an_execve_refused_after_start_is_said_as_by_runc() {
    if skip("execve refused") {
        return;
    }
    let mut b = Bundle::new(&["/bin/true"]);
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["execve"], "action": "SCMP_ACT_ERRNO"}]
    });
    b.save();
    let mut seen = Vec::new();
    for rt in [RUNE, RUNC] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("noexecve");
        let r = runtime(
            rt,
            root.path(),
            &["run", "--bundle", b.path().to_str().unwrap(), &id],
        );
        let _ = runtime(rt, root.path(), &["delete", "--force", &id]);
        seen.push(((r.0, r.2.clone()), leftovers(root.path(), &id)));
    }
    let runc = &seen[1].0;
    assert_eq!(runc.0, 1, "runc: {}", runc.1);
    assert!(
        runc.1.contains("operation not permitted"),
        "runc: {}",
        runc.1
    );
    assert_eq!(seen[0].0, seen[1].0, "rune vs runc (exit code, stderr)");
    assert_eq!(seen[0].1, Vec::<String>::new(), "rune left");
}

#[test]
fn a_missing_cwd_is_created_as_runc_does() {
    if skip("missing cwd") {
        return;
    }
    let out = out_dir();
    // A private image: runc creates the directory in it.
    let mut b = Bundle::new(&["sh", "-c", "pwd > /tmp/r"])
        .private_rootfs()
        .bind(out.path(), "/tmp");
    b.spec["process"]["cwd"] = json!("/work/sub");
    b.save();
    let (rune, runc) = both(&b, out.path());
    assert_eq!(runc.found, "/work/sub\n", "runc: {runc:?}");
    assert_eq!(
        (rune.code, rune.found),
        (runc.code, runc.found),
        "{}",
        rune.stderr
    );
}

#[test]
fn a_user_without_a_passwd_entry_gets_home_slash_as_with_runc() {
    if skip("HOME for uid 4242") {
        return;
    }
    let out = out_dir();
    let mut b = Bundle::new(&["sh", "-c", "echo \"HOME=$HOME\" > /tmp/r"]).bind(out.path(), "/tmp");
    b.spec["process"]["user"] = json!({"uid": 4242, "gid": 4242});
    b.spec["process"]["env"] = json!(["PATH=/bin"]);
    b.save();
    let (rune, runc) = both(&b, out.path());
    assert_eq!(runc.found, "HOME=/\n", "runc: {runc:?}");
    assert_eq!(rune.found, runc.found, "{}", rune.stderr);

    // exec --user: the same rule.
    let sleeper = Bundle::new(&["sleep", "100"]).bind(out.path(), "/tmp");
    let mut found = Vec::new();
    for rt in [RUNE, RUNC] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("home");
        let _ = std::fs::remove_file(out.path().join("r"));
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &[
                "run",
                "-d",
                "--bundle",
                sleeper.path().to_str().unwrap(),
                &id,
            ],
        );
        assert_eq!(code, 0, "{rt} run -d: {err}");
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &[
                "exec",
                "--user",
                "4242",
                "--env",
                "PATH=/bin",
                &id,
                "sh",
                "-c",
                "echo \"HOME=$HOME\" > /tmp/r",
            ],
        );
        found.push((
            code,
            std::fs::read_to_string(out.path().join("r")).unwrap_or(err),
        ));
        runtime(rt, root.path(), &["delete", "--force", &id]);
    }
    assert_eq!(found[1], (0, "HOME=/\n".to_string()), "runc exec");
    assert_eq!(found[0], found[1], "rune exec");
}

#[test]
fn a_program_that_is_not_executable_fails_create_as_with_runc() {
    if skip("non-executable program") {
        return;
    }
    // The same program in a sim enclave (liberpal-sim runs it from the container's
    // file system, debug mode: measured at create) must fail the same way, at create; a
    // missing one is the PAL's to judge (it may live in the enclave's file system).
    let (pal, _) = sim_artifacts();
    for (program, why, enclave) in [
        ("/etc/passwd", "permission denied", false),
        ("/etc", "permission denied", false),
        ("/nothing/here", "no such file or directory", false),
        ("/etc/passwd", "permission denied", true),
        ("/etc", "permission denied", true),
    ] {
        let b = Bundle::new(&[program]);
        let b = if enclave { b.enclave(&pal, "debug") } else { b };
        b.save();
        let mut failures = Vec::new();
        for rt in [RUNE, RUNC] {
            let root = tempfile::tempdir().unwrap();
            let id = unique_id("noexec");
            let (code, _, stderr) = runtime(
                rt,
                root.path(),
                &["create", "--bundle", b.path().to_str().unwrap(), &id],
            );
            failures.push((code != 0, stderr.contains(why)));
            if rt == RUNE {
                assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
                assert!(stderr.contains(program), "{stderr}");
                assert!(
                    leftovers(root.path(), &id).is_empty(),
                    "{:?}",
                    leftovers(root.path(), &id)
                );
            }
            runtime(rt, root.path(), &["delete", "--force", &id]);
        }
        assert_eq!(failures[1], (true, true), "runc on {program}");
        assert_eq!(
            failures[0], failures[1],
            "rune on {program} (enclave: {enclave})"
        );
    }
}

#[test]
fn seccomp_without_no_new_privileges_runs_as_with_runc() {
    if skip("seccomp with noNewPrivileges false") {
        return;
    }
    let out = out_dir();
    let mut b = Bundle::new(&["sh", "-c", "mkdir /tmp/d 2>/dev/null; echo $? > /tmp/r"])
        .bind(out.path(), "/tmp");
    b.spec["process"]["noNewPrivileges"] = json!(false);
    b.spec["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    b.save();
    let (rune, runc) = both(&b, out.path());
    // mkdir refused by the profile: busybox exits 1.
    assert_eq!(
        (runc.code, runc.found.as_str()),
        (0, "1\n"),
        "runc: {runc:?}"
    );
    assert_eq!(
        (rune.code, rune.found.as_str()),
        (0, "1\n"),
        "{}",
        rune.stderr
    );
}

#[test]
fn tmpcopyup_starts_the_tmpfs_with_the_image_directory_as_runc_does() {
    if skip("tmpcopyup") {
        return;
    }
    let out = out_dir();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "cat /etc/passwd > /tmp/r; touch /etc/new && echo writable >> /tmp/r",
    ])
    .bind(out.path(), "/tmp");
    b.spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/etc", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "tmpcopyup"]
    }));
    b.save();
    let (rune, runc) = both(&b, out.path());
    let passwd = std::fs::read_to_string(images().join("rootfs/etc/passwd")).unwrap();
    assert_eq!(runc.found, format!("{passwd}writable\n"), "runc: {runc:?}");
    assert_eq!(
        (rune.code, rune.found),
        (runc.code, runc.found),
        "{}",
        rune.stderr
    );

    // Over the image's /etc the tmpfs takes /etc's mode; over a directory the image
    // lacks (podman's `--tmpfs /scratch`), made for the mount, it keeps tmpfs's own
    // 1777, so any user may write there. Each runtime on its own copy of the image
    // (the first would otherwise make /scratch for the second).
    let mut seen = Vec::new();
    for rt in [RUNC, RUNE] {
        let out = out_dir();
        let mut b = Bundle::new(&["sh", "-c", "stat -c '%a %U' /etc /scratch > /tmp/r"])
            .bind(out.path(), "/tmp")
            .private_rootfs();
        for dest in ["/etc", "/scratch"] {
            b.spec["mounts"].as_array_mut().unwrap().push(json!({
                "destination": dest, "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "tmpcopyup"]
            }));
        }
        b.save();
        let o = run_bundle(rt, &b, out.path());
        seen.push((o.code, o.found));
    }
    assert_eq!(seen[0], (0, "755 root\n1777 root\n".to_string()), "runc");
    assert_eq!(seen[1], seen[0], "rune");
}

#[test]
fn disable_oom_killer_is_applied_as_by_runc() {
    if skip("disableOOMKiller") {
        return;
    }
    if memory_cgroup(std::process::id()).is_none() {
        println!("skipped: disableOOMKiller needs a cgroup v1 memory hierarchy");
        return;
    }
    let mut b = Bundle::new(&["sleep", "100"]);
    b.spec["linux"]["resources"]["memory"] =
        json!({"limit": 64 * 1024 * 1024, "disableOOMKiller": true});
    b.save();
    let mut seen = Vec::new();
    for rt in [RUNE, RUNC] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("oom");
        let pid_file = root.path().join("pid");
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &[
                "run",
                "-d",
                "--pid-file",
                pid_file.to_str().unwrap(),
                "--bundle",
                b.path().to_str().unwrap(),
                &id,
            ],
        );
        assert_eq!(code, 0, "{rt}: {err}");
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let control = memory_cgroup(pid)
            .map(|p| std::fs::read_to_string(p.join("memory.oom_control")).unwrap_or_default())
            .unwrap_or_default();
        seen.push(
            control
                .lines()
                .find(|l| l.starts_with("oom_kill_disable"))
                .map(str::to_string),
        );
        runtime(rt, root.path(), &["delete", "--force", &id]);
    }
    assert_eq!(seen[1].as_deref(), Some("oom_kill_disable 1"), "runc");
    assert_eq!(seen[0], seen[1], "rune");
}

#[test]
fn exec_into_a_created_container_as_runc_does() {
    if skip("exec into a created container") {
        return;
    }
    let b = Bundle::new(&["sleep", "100"]);
    let mut seen = Vec::new();
    for rt in [RUNE, RUNC] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("created");
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &["create", "--bundle", b.path().to_str().unwrap(), &id],
        );
        assert_eq!(code, 0, "{rt} create: {err}");
        let (code, out, err) = runtime(rt, root.path(), &["exec", &id, "echo", "hi"]);
        let (_, state, _) = runtime(rt, root.path(), &["state", &id]);
        let status = serde_json::from_str::<serde_json::Value>(&state).unwrap()["status"].clone();
        seen.push((code, out, status, err.is_empty()));
        runtime(rt, root.path(), &["delete", "--force", &id]);
        assert!(leftovers(root.path(), &id).is_empty() || rt == RUNC);
    }
    assert_eq!(seen[1], (0, "hi\n".into(), json!("created"), true), "runc");
    assert_eq!(seen[0].0, seen[1].0, "rune: {:?}", seen[0]);
    assert_eq!(seen[0].1, seen[1].1);
    assert_eq!(seen[0].2, seen[1].2);
}

#[test]
fn signals_by_number_and_realtime_name_reach_the_container_as_with_runc() {
    if skip("realtime signals") {
        return;
    }
    let out = out_dir();
    let b = Bundle::new(&[
        "sh",
        "-c",
        "trap 'echo 37 >> /tmp/r' 37; trap 'echo 40 >> /tmp/r' 40; trap 'echo 10 >> /tmp/r' USR1; \
         echo ready > /tmp/ready; while :; do sleep 0.05; done",
    ])
    .bind(out.path(), "/tmp");
    let mut seen = Vec::new();
    for rt in [RUNE, RUNC] {
        let _ = std::fs::remove_file(out.path().join("r"));
        let _ = std::fs::remove_file(out.path().join("ready"));
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("sig");
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &["run", "-d", "--bundle", b.path().to_str().unwrap(), &id],
        );
        assert_eq!(code, 0, "{rt}: {err}");
        let mut late = Vec::new();
        if !wait_until(Duration::from_secs(10), || {
            out.path().join("ready").exists()
        }) {
            late.push(format!("{rt}: the container never said ready (10 s)"));
        }
        let mut codes = Vec::new();
        // Debian's runc (1.1) takes realtime signals by number only; rune by name too.
        // signal(7): SIGRTMIN is 34 with glibc, so RTMIN+6 is 40.
        let signals = if rt == RUNE {
            ["37", "RTMIN+6", "usr1"]
        } else {
            ["37", "40", "usr1"]
        };
        for sig in signals {
            codes.push(runtime(rt, root.path(), &["kill", &id, sig]).0);
            // Handled one at a time: traps run between the loop's commands.
            let n = codes.len();
            let handled = wait_until(Duration::from_secs(5), || {
                std::fs::read_to_string(out.path().join("r")).is_ok_and(|r| r.lines().count() >= n)
            });
            if !handled {
                late.push(format!("{rt} kill {sig}: no trap ran within 5 s"));
            }
        }
        // Signal 0 checks that the container's init exists (kill(2)), as runc's does.
        let probe = runtime(rt, root.path(), &["kill", &id, "0"]);
        seen.push((
            codes,
            std::fs::read_to_string(out.path().join("r")).unwrap_or_default(),
            (probe.0, error_messages(&probe.2).len()),
        ));
        runtime(rt, root.path(), &["delete", "--force", &id]);
        assert!(late.is_empty(), "{late:?}");
    }
    assert_eq!(
        (&seen[1].0, seen[1].1.as_str()),
        (&vec![0, 0, 0], "37\n40\n10\n"),
        "runc"
    );
    assert_eq!(seen[0], seen[1], "rune");
}

/// A host-side hook that saves the state document it is given on stdin to `out/NAME`.
fn recording_hook(out: &Path, name: &str) -> serde_json::Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{name}", out.display())]})
}

fn status_of(out: &Path, name: &str) -> String {
    let doc = std::fs::read_to_string(out.join(name)).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&doc)
        .map(|v| v["status"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|_| format!("no state document ({doc:?})"))
}

/// The runtime spec (config.md "POSIX-platform Hooks", runtime.md "Lifecycle"): each hook
/// gets the state on stdin with the status of that point; a failing poststart or poststop
/// hook is a warning and the remaining hooks and the lifecycle continue.
#[test]
fn hooks_follow_the_runtime_spec() {
    if !root_or_skip("hooks") {
        return;
    }
    let out = out_dir();
    let o = out.path();
    let mut b = Bundle::new(&["sh", "-c", "exit 0"]).bind(o, "/tmp");
    b.spec["hooks"] = json!({
        "prestart": [recording_hook(o, "prestart")],
        "createRuntime": [recording_hook(o, "createRuntime")],
        "createContainer": [recording_hook(o, "createContainer")],
        // Runs in the container: busybox writes to the bound /tmp.
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/startContainer"]}],
        "poststart": [{"path": "/bin/false"}, recording_hook(o, "poststart")],
        "poststop": [{"path": "/bin/false"}, recording_hook(o, "poststop")],
    });
    b.save();
    let rune = Rune::new();
    let id = unique_id("hooks");
    rune.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    for name in ["prestart", "createRuntime", "createContainer"] {
        assert_eq!(status_of(o, name), "creating", "{name}");
    }
    let start = rune.cmd(&["start", &id]);
    assert!(
        start.status.success(),
        "a failing poststart hook fails start: {start:?}"
    );
    // The spec's "the runtime MUST log a warning": on stderr, in runc's logrus form.
    let warned = String::from_utf8_lossy(&start.stderr);
    assert!(
        warned
            .lines()
            .any(|l| l.contains("level=warning") && l.contains("poststart hook #0")),
        "no warning for the failing poststart hook: {warned:?}"
    );
    // startContainer runs in the container's init after `start` has let it go (as in
    // runc): its document may still be being written when `start` returns.
    wait_until(Duration::from_secs(5), || {
        !status_of(o, "startContainer").starts_with("no state document")
    });
    assert_eq!(status_of(o, "startContainer"), "created");
    assert_eq!(
        status_of(o, "poststart"),
        "running",
        "the next poststart hook ran"
    );
    assert!(
        wait_until(Duration::from_secs(10), || rune.status(&id) == "stopped"),
        "the container did not stop within 10 s"
    );
    // runc 1.1 deletes the container, logs the hook's failure as an error and exits 0
    // (parity_flags.rs compares the line with runc's).
    let delete = rune.cmd(&["delete", &id]);
    let stderr = String::from_utf8_lossy(&delete.stderr);
    assert!(delete.status.success(), "{stderr}");
    assert!(
        error_messages(&stderr)
            .iter()
            .any(|m| m.contains("poststop hook #0")),
        "the poststop failure is reported: {stderr}"
    );
    assert_eq!(
        status_of(o, "poststop"),
        "stopped",
        "the next poststop hook ran"
    );
    assert!(
        leftovers(rune.root.path(), &id).is_empty(),
        "{:?}",
        leftovers(rune.root.path(), &id)
    );
    let list = rune.ok(&["list", "-q"]);
    assert!(!list.contains(&id), "deleted despite the hook: {list}");

    // delete --force of a running container with a failing poststop hook: gone too.
    let mut b2 = Bundle::new(&["sleep", "100"]);
    b2.spec["hooks"] = json!({"poststop": [{"path": "/bin/false"}]});
    b2.save();
    let id2 = unique_id("hooks");
    rune.ok(&["run", "-d", "--bundle", b2.path().to_str().unwrap(), &id2]);
    let _ = rune.cmd(&["delete", "--force", &id2]);
    assert!(
        leftovers(rune.root.path(), &id2).is_empty(),
        "{:?}",
        leftovers(rune.root.path(), &id2)
    );
}

/// A failing create says its cause in one line that tools recognise as an error: runc's
/// logrus form without `--log`; with `--log`, one `error` entry in the log (where
/// containerd, docker and podman read it). runc also prints the bare message on stderr
/// (main.go `fatalWithCode`), as rune does for a command whose stderr is the caller's
/// (checked against runc with `kill` and `delete`); during create, run and exec stderr is
/// the container's own (the shim hands rune the container's stdio), where the line would
/// show as the task's output (or be lost), so rune leaves it out there unless stderr is a
/// terminal.
#[test]
fn create_failures_name_their_cause_in_one_error_line() {
    if skip("create failures") {
        return;
    }
    // A command whose stderr stays the caller's.
    for command in [&["kill", "ghost", "9"][..], &["delete", "ghost"][..]] {
        let mut shapes = Vec::new();
        for rt in [RUNC, RUNE] {
            let root = tempfile::tempdir().unwrap();
            let log = root.path().join("kill-log.json");
            let args = ["--log", log.to_str().unwrap(), "--log-format", "json"];
            let (code, _, err) = runtime(rt, root.path(), &[&args[..], command].concat());
            let text = std::fs::read_to_string(&log).unwrap();
            let entries: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(entries.len(), 1, "{rt}'s log: {text}");
            let msg = entries[0]["msg"].as_str().unwrap().to_string();
            shapes.push((
                code != 0,
                entries[0]["level"].clone(),
                msg == err.trim(),
                err.lines().count(),
            ));
        }
        assert_eq!(
            shapes[0],
            (true, json!("error"), true, 1),
            "runc with --log {command:?}"
        );
        assert_eq!(shapes[1], shapes[0], "rune with --log {command:?}");
    }
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "not executable",
            json!({"args": ["/etc/passwd"]}),
            "exec: \"/etc/passwd\": permission denied",
        ),
        (
            "not on PATH",
            json!({"args": ["nothing-here"]}),
            "\"nothing-here\": executable file not found in $PATH",
        ),
        (
            "cwd is a file",
            json!({"cwd": "/etc/passwd"}),
            "chdir /etc/passwd: Not a directory",
        ),
        (
            "proc on a file",
            json!({"proc": "/etc/passwd"}),
            // The mount named as runc names it is checked in parity_flags.rs.
            "must be mounted on ordinary directory",
        ),
    ];
    let rune = Rune::new();
    for (what, change, cause) in cases {
        let mut b = Bundle::new(&["true"]);
        if let Some(args) = change.get("args") {
            b.spec["process"]["args"] = args.clone();
        }
        if let Some(cwd) = change.get("cwd") {
            b.spec["process"]["cwd"] = cwd.clone();
        }
        if let Some(dest) = change.get("proc") {
            b.spec["mounts"]
                .as_array_mut()
                .unwrap()
                .push(json!({"destination": dest, "type": "proc", "source": "proc"}));
        }
        b.save();
        let id = unique_id("err");
        let out = rune.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: created");
        assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
        assert_eq!(
            error_lines(&stderr).len(),
            1,
            "{what}: runc's form: {stderr}"
        );
        let msg: String =
            serde_json::from_str(stderr.trim().split_once(" msg=").unwrap().1).unwrap();
        assert!(msg.contains(cause), "{what}: {msg}");
        assert!(!msg.contains("error in executing process"), "{what}: {msg}");
        assert!(leftovers(rune.root.path(), &id).is_empty(), "{what}");

        let log = rune.root.path().join("log.json");
        let out = rune.cmd(&[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            b.path().to_str().unwrap(),
            &id,
        ]);
        assert!(!out.status.success());
        // One entry, the error, in the log; stderr (the container's) is left alone.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr, "", "{what}: with --log");
        let text = std::fs::read_to_string(&log).unwrap();
        let entries: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect();
        assert_eq!(entries.len(), 1, "{what}: {text}");
        assert_eq!(entries[0]["level"], "error", "{what}: {text}");
        assert!(
            entries[0]["msg"].as_str().unwrap().contains(cause),
            "{what}: {text}"
        );

        assert!(leftovers(rune.root.path(), &id).is_empty(), "{what}");
        let _ = std::fs::remove_file(&log);

        // With a text log (a person's, not a shim's) the bare message is on stderr too,
        // as runc prints it (`fatalWithCode`).
        let mut bare = Vec::new();
        for rt in [RUNC, RUNE] {
            let root = tempfile::tempdir().unwrap();
            let log = root.path().join("log.txt");
            let args = ["--log", log.to_str().unwrap(), "create", "--bundle"];
            let (code, _, err) = runtime(
                rt,
                root.path(),
                &[&args[..], &[b.path().to_str().unwrap(), &id]].concat(),
            );
            runtime(rt, root.path(), &["delete", "--force", &id]);
            bare.push((
                code != 0,
                err.lines().count(),
                err.starts_with("time=") || err.contains("level="),
            ));
            if rt == RUNE {
                assert!(err.contains(cause), "{what}: rune with a text --log: {err}");
            }
        }
        assert_eq!(bare[0], (true, 1, false), "{what}: runc with a text --log");
        assert_eq!(bare[1], bare[0], "{what}: rune with a text --log");
    }
}
