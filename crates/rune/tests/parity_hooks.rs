//! Hooks that stop the lifecycle, signals to and deletion of a created container, and
//! capabilities the runtime does not know, compared with runc (Debian's, which `make test` installs):
//! each scenario runs under both, and the expected values are runc's.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::parity::*;
use common::*;
use serde_json::json;

fn status(rt: &str, root: &Path, id: &str) -> String {
    let (_, out, _) = runtime(rt, root, &["state", id]);
    serde_json::from_str::<serde_json::Value>(&out)
        .map(|v| v["status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// `create` of `b` as `id` with the container's stderr in a file the test keeps (the
/// init writes there after `create` has returned).
fn create_keeping_stderr(rt: &str, root: &Path, b: &Bundle, id: &str) -> (i32, std::fs::File) {
    let err = tempfile::tempfile().unwrap();
    let status = Command::new(rt)
        .arg("--root")
        .arg(root)
        .args(["create", "--bundle", b.path().to_str().unwrap(), id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err.try_clone().unwrap())
        .status()
        .unwrap();
    (status.code().unwrap_or(-1), err)
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// A failing `prestart`, `createRuntime` or `createContainer` hook fails create; one
/// that is missing or runs past its timeout too. runc's line names the hook (`#0`) and
/// the cause (`exit status 1`, `fork/exec /no/such/hook: no such file or directory`,
/// `hook ran past specified timeout of 1.0s`): rune's must carry the same facts, in one
/// error line, leaving nothing behind.
#[test]
fn failing_create_hooks_are_named_with_their_cause_as_by_runc() {
    if skip("create hook failures") {
        return;
    }
    // (hooks, facts of runc's line that rune's must hold too)
    let cases = [
        (
            json!({"prestart": [{"path": "/bin/true"}, {"path": "/bin/false"}]}),
            vec!["#1", "exit status 1"],
        ),
        (
            json!({"createRuntime": [{"path": "/no/such/hook"}]}),
            vec!["#0", "/no/such/hook", "no such file or directory"],
        ),
        (
            json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}),
            vec!["#0", "hook ran past specified timeout of 1.0s"],
        ),
        (
            json!({"createContainer": [{"path": "/bin/false"}]}),
            vec!["#0", "exit status 1"],
        ),
        // runc's line carries what the hook wrote (a driver's complaint, say).
        (
            json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo to-out; echo nvidia: driver missing >&2; exit 2"]}]}),
            vec![
                "#0",
                "exit status 2",
                "stdout: to-out",
                "stderr: nvidia: driver missing",
            ],
        ),
    ];
    for (hooks, facts) in cases {
        let mut b = Bundle::new(&["true"]);
        b.spec["hooks"] = hooks.clone();
        b.save();
        let mut seen = Vec::new();
        for rt in [RUNC, RUNE] {
            let root = tempfile::tempdir().unwrap();
            let id = unique_id("hookfail");
            let (code, _, err) = runtime(
                rt,
                root.path(),
                &["create", "--bundle", b.path().to_str().unwrap(), &id],
            );
            seen.push((code, err.clone()));
            if rt == RUNE {
                assert_eq!(error_lines(&err).len(), 1, "{hooks}: {err}");
                assert_eq!(err.lines().count(), 1, "{hooks}: {err}");
                assert!(leftovers(root.path(), &id).is_empty(), "{hooks}");
            }
            runtime(rt, root.path(), &["delete", "--force", &id]);
        }
        let (runc, rune) = (&seen[0], &seen[1]);
        assert_ne!(runc.0, 0, "{hooks}: runc created it");
        assert_eq!(rune.0, runc.0, "{hooks}: rune {rune:?} runc {runc:?}");
        for fact in facts {
            assert!(lower(&runc.1).contains(&lower(fact)), "runc: {runc:?}");
            assert!(
                lower(&rune.1).contains(&lower(fact)),
                "{hooks}: rune's line lacks {fact:?}: {}",
                rune.1
            );
        }
    }
}

/// A failing `startContainer` hook runs after `start` has returned: the runtime spec
/// says the runtime must stop the container. runc's `start` exits 0, the container
/// stops, and its init prints the failure (hook `#0`, `exit status 5`) on the
/// container's stderr. The same for a hook that does not exist.
#[test]
fn a_failing_start_container_hook_stops_the_container_as_with_runc() {
    if skip("startContainer failure") {
        return;
    }
    let cases = [
        (
            json!({"path": "/bin/sh", "args": ["sh", "-c", "exit 5"]}),
            vec!["#0", "exit status 5"],
        ),
        (
            json!({"path": "/no/such/hook"}),
            vec!["#0", "/no/such/hook", "no such file or directory"],
        ),
        (
            json!({"path": "/bin/sh", "args": ["sh", "-c", "echo to-out; echo driver missing >&2; exit 5"]}),
            vec![
                "#0",
                "exit status 5",
                "stdout: to-out",
                "stderr: driver missing",
            ],
        ),
    ];
    for (hook, facts) in cases {
        let mut b = Bundle::new(&["sleep", "100"]);
        b.spec["hooks"] = json!({ "startContainer": [hook] });
        b.save();
        let mut seen = Vec::new();
        for rt in [RUNC, RUNE] {
            let root = tempfile::tempdir().unwrap();
            let id = unique_id("schook");
            let (code, err) = create_keeping_stderr(rt, root.path(), &b, &id);
            assert_eq!(code, 0, "{rt} create");
            let (start, _, _) = runtime(rt, root.path(), &["start", &id]);
            let stopped = wait_until(Duration::from_secs(10), || {
                status(rt, root.path(), &id) == "stopped"
            });
            let said = String::from_utf8_lossy(&read_back(err)).into_owned();
            seen.push((start, stopped, said));
            runtime(rt, root.path(), &["delete", "--force", &id]);
            if rt == RUNE {
                assert!(leftovers(root.path(), &id).is_empty(), "{hook}");
            }
        }
        let (runc, rune) = (&seen[0], &seen[1]);
        assert!(runc.1, "{hook}: runc's container did not stop: {runc:?}");
        assert_eq!((rune.0, rune.1), (runc.0, runc.1), "{hook}: rune {rune:?}");
        for fact in facts {
            assert!(lower(&runc.2).contains(&lower(fact)), "runc: {runc:?}");
            assert!(
                lower(&rune.2).contains(&lower(fact)),
                "{hook}: rune said {:?}, lacking {fact:?}",
                rune.2
            );
        }
    }
}

/// The state document hooks read on stdin carries a `pid` while the container is
/// created or running (the runtime spec requires it then): the container's own pid, 1,
/// for `createContainer` and `startContainer`, which run in its pid namespace; none
/// for `poststop`, when the init is gone. Compared with runc's documents.
#[test]
fn hook_state_documents_carry_the_pids_runcs_carry() {
    if skip("hook state pids") {
        return;
    }
    let mut seen = Vec::new();
    for rt in [RUNC, RUNE] {
        let out = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            out.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        // startContainer runs after pivot_root (the bind at /tmp); createContainer
        // before it, in the container's mount namespace, where the host's path is seen.
        let record = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > /tmp/{name}")]});
        let host = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{name}", out.path().display())]});
        let mut b = Bundle::new(&["true"]).bind(out.path(), "/tmp");
        b.spec["hooks"] = json!({
            "createContainer": [host("createContainer")],
            "startContainer": [record("startContainer")],
            "poststop": [host("poststop")],
        });
        b.save();
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("hookpid");
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &["run", "--bundle", b.path().to_str().unwrap(), &id],
        );
        assert_eq!(code, 0, "{rt}: {err}");
        runtime(rt, root.path(), &["delete", &id]);
        let pid = |name: &str| {
            let doc = std::fs::read_to_string(out.path().join(name)).unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&doc).unwrap_or_default();
            (v["status"].clone(), v["pid"].clone())
        };
        seen.push([
            pid("createContainer"),
            pid("startContainer"),
            pid("poststop"),
        ]);
    }
    let (runc, rune) = (&seen[0], &seen[1]);
    // Every document was read (none compared as absent with absent).
    assert_eq!(runc[0].1, json!(1), "runc: {runc:?}");
    assert_eq!(runc[1].1, json!(1), "runc: {runc:?}");
    assert_eq!(runc[2].0, json!("stopped"), "runc: {runc:?}");
    assert_eq!(rune, runc, "rune's hook documents (status, pid)");
}

/// What a successful hook writes is discarded, as by runc (it keeps a hook's output for
/// its error only); `run` of a container whose startContainer hook fails exits as runc's
/// (its init exits 1).
#[test]
fn hook_output_and_run_status_as_with_runc() {
    if skip("hook output") {
        return;
    }
    let mut seen = Vec::new();
    for hooks in [
        json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-noise; echo hook-noise >&2"]}]}),
        json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]}),
    ] {
        let mut b = Bundle::new(&["echo", "program"]);
        b.spec["hooks"] = hooks;
        b.save();
        for rt in [RUNC, RUNE] {
            let root = tempfile::tempdir().unwrap();
            let id = unique_id("hookout");
            let (code, out, err) = runtime(
                rt,
                root.path(),
                &["run", "--bundle", b.path().to_str().unwrap(), &id],
            );
            runtime(rt, root.path(), &["delete", "--force", &id]);
            seen.push((code, out, err.contains("hook-noise")));
        }
    }
    assert_eq!(
        seen[0],
        (0, "program\n".to_string(), false),
        "runc, quiet hook"
    );
    assert_eq!(seen[1], seen[0], "rune, quiet hook");
    assert_ne!(seen[2].0, 0, "runc, failing startContainer hook");
    assert_eq!(
        (seen[3].0, &seen[3].1),
        (seen[2].0, &seen[2].1),
        "rune, failing startContainer hook"
    );
}

/// `kill ID TERM` on a created container ends it (its init is waiting for `start`): runc's
/// init, a Go program, handles the signal; a pid 1 without a handler would not see it.
/// Go catches the other signals and does nothing: USR1, ALRM, PIPE or a realtime signal
/// leaves the container created. Which one does what is runc's answer, not ours.
#[test]
fn a_created_container_ends_on_a_terminating_signal_as_with_runc() {
    if skip("kill created") {
        return;
    }
    let b = Bundle::new(&["sleep", "100"]);
    let signals = [
        "TERM", "HUP", "INT", "QUIT", "SEGV", "SYS", "USR1", "USR2", "ALRM", "PIPE", "40",
    ];
    let mut ended = 0;
    for signal in signals {
        let mut seen = Vec::new();
        for rt in [RUNC, RUNE] {
            let root = tempfile::tempdir().unwrap();
            let id = unique_id("killcreated");
            let (code, _, err) = runtime(
                rt,
                root.path(),
                &["create", "--bundle", b.path().to_str().unwrap(), &id],
            );
            assert_eq!(code, 0, "{rt}: {err}");
            let (kill, _, _) = runtime(rt, root.path(), &["kill", &id, signal]);
            // runc's init ends within milliseconds when it ends at all.
            let stopped = wait_until(Duration::from_millis(1500), || {
                status(rt, root.path(), &id) == "stopped"
            });
            seen.push((kill, stopped));
            runtime(rt, root.path(), &["delete", "--force", &id]);
            if rt == RUNE {
                assert!(leftovers(root.path(), &id).is_empty());
            }
        }
        assert_eq!(seen[0].0, 0, "runc kill {signal}");
        assert_eq!(seen[1], seen[0], "rune with SIG{signal}");
        ended += seen[0].1 as usize;
    }
    // Both kinds were exercised: some signals end runc's created container, some not.
    assert!(ended > 0 && ended < signals.len(), "runc ended {ended}");
}

/// A capability this runtime does not know (a newer kernel's, or a typo): runc warns
/// (`ignoring unknown or unavailable capabilities: [CAP_BOGUS]`) and runs the container
/// without it; rune refused the whole config.
#[test]
fn unknown_capabilities_are_left_out_with_a_warning_as_by_runc() {
    if skip("unknown capabilities") {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        out.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mut b = Bundle::new(&["sh", "-c", "grep CapBnd /proc/self/status > /tmp/r"])
        .bind(out.path(), "/tmp");
    for set in ["bounding", "effective", "permitted"] {
        b.spec["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_BOGUS"));
    }
    b.save();
    let mut seen = Vec::new();
    for rt in [RUNC, RUNE] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("bogus");
        let _ = std::fs::remove_file(out.path().join("r"));
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &["run", "--bundle", b.path().to_str().unwrap(), &id],
        );
        runtime(rt, root.path(), &["delete", "--force", &id]);
        let warnings: Vec<String> = err
            .lines()
            .filter(|l| l.contains("level=warning") && l.contains("CAP_BOGUS"))
            .map(str::to_string)
            .collect();
        let found = std::fs::read_to_string(out.path().join("r")).unwrap_or_default();
        seen.push((code, warnings.len(), found, err));
    }
    let (runc, rune) = (&seen[0], &seen[1]);
    assert_eq!((runc.0, runc.1), (0, 1), "runc: {runc:?}");
    assert!(runc.2.starts_with("CapBnd:"), "runc: {runc:?}");
    assert_eq!(
        (rune.0, rune.1, &rune.2),
        (runc.0, runc.1, &runc.2),
        "rune: {rune:?}"
    );
    // The user's bundle is left as written.
    let written = std::fs::read_to_string(b.path().join("config.json")).unwrap();
    assert!(written.contains("CAP_BOGUS"));
}

/// `exec --cap CAP_BOGUS` and an `exec --process` file naming it run as with runc: one
/// warning, the process runs, the container keeps running.
#[test]
fn exec_with_unknown_capabilities_warns_and_runs_as_with_runc() {
    if skip("exec unknown capabilities") {
        return;
    }
    let b = Bundle::new(&["sleep", "100"]);
    let process = tempfile::NamedTempFile::new().unwrap();
    let mut p = b.spec["process"].clone();
    p["args"] = json!(["true"]);
    for set in ["bounding", "effective", "permitted"] {
        p["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_BOGUS"));
    }
    std::fs::write(process.path(), p.to_string()).unwrap();
    // `rt run -d` of `b`, then both execs: (each exec's code, warnings, stderr), and
    // whether the container was still running after them.
    let execs = |rt: &str, b: &Bundle| {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("execbogus");
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &["run", "-d", "--bundle", b.path().to_str().unwrap(), &id],
        );
        assert_eq!(code, 0, "{rt}: {err}");
        let mut got = Vec::new();
        for args in [
            vec!["exec", "--cap", "CAP_BOGUS", id.as_str(), "true"],
            vec![
                "exec",
                "--process",
                process.path().to_str().unwrap(),
                id.as_str(),
            ],
        ] {
            let (code, _, err) = runtime(rt, root.path(), &args);
            let warned = err
                .lines()
                .filter(|l| l.contains("level=warning") && l.contains("CAP_BOGUS"))
                .count();
            got.push((code, warned, err));
        }
        let (_, state, _) = runtime(rt, root.path(), &["state", &id]);
        runtime(rt, root.path(), &["delete", "--force", &id]);
        (got, state.contains("\"running\""))
    };
    let (runc, rune) = (&execs(RUNC, &b), &execs(RUNE, &b));
    let outcome = |s: &(Vec<(i32, usize, String)>, bool)| {
        (
            s.0.iter().map(|(c, w, _)| (*c, *w)).collect::<Vec<_>>(),
            s.1,
        )
    };
    assert_eq!(
        outcome(runc),
        (vec![(0, 1), (0, 1)], true),
        "runc: {runc:?}"
    );
    assert_eq!(outcome(rune), outcome(runc), "rune: {rune:?}");

    // The same execs into a sim enclave container: ignored with the same warning (the
    // enclave runtime's processes have no capabilities of their own to set).
    let (pal, _) = sim_artifacts();
    let enclave = execs(RUNE, &Bundle::new(&["sleep", "100"]).enclave(&pal, "debug"));
    assert_eq!(outcome(&enclave), outcome(runc), "enclave: {enclave:?}");

    // A container whose own config names it (`ctr run --cap-add CAP_BOGUS`; containerd
    // then passes those capabilities to every exec): exec runs as with runc; and an
    // exec --process file with it and a bad env entry is refused in one line, no panic.
    let mut b = Bundle::new(&["sleep", "100"]);
    for set in ["bounding", "effective", "permitted"] {
        b.spec["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_BOGUS"));
    }
    b.save();
    let mut bad = p.clone();
    bad["env"] = json!(["PATH=/bin", "=x"]);
    let bad_process = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad_process.path(), bad.to_string()).unwrap();
    let mut seen = Vec::new();
    for rt in [RUNC, RUNE] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("ctrbogus");
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &["run", "-d", "--bundle", b.path().to_str().unwrap(), &id],
        );
        assert_eq!(code, 0, "{rt}: {err}");
        let (code, out, err) = runtime(rt, root.path(), &["exec", &id, "echo", "exec-ok"]);
        let refused = runtime(
            rt,
            root.path(),
            &[
                "exec",
                "--process",
                bad_process.path().to_str().unwrap(),
                &id,
            ],
        );
        runtime(rt, root.path(), &["delete", "--force", &id]);
        seen.push((
            code,
            out,
            err,
            refused.0 != 0,
            error_lines(&refused.2).len(),
            refused.2,
        ));
    }
    let (runc, rune) = (&seen[0], &seen[1]);
    assert_eq!(
        (runc.0, runc.1.as_str(), runc.3),
        (0, "exec-ok\n", true),
        "runc: {runc:?}"
    );
    assert_eq!(
        (rune.0, &rune.1, rune.3),
        (runc.0, &runc.1, runc.3),
        "rune: {rune:?}"
    );
    assert_eq!(rune.4, 1, "rune: one error line: {}", rune.5);
    assert!(!rune.5.contains("panicked"), "{}", rune.5);
}

/// `delete` without `--force` kills and removes a *created* container, as runc's does
/// (delete.go); a running one is still refused without `--force`.
#[test]
fn delete_removes_a_created_container_as_runc_does() {
    if skip("delete created") {
        return;
    }
    let b = Bundle::new(&["sleep", "100"]);
    let mut seen = Vec::new();
    for rt in [RUNC, RUNE] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("delcreated");
        let pid_file = root.path().join("pid");
        let bundle = b.path().to_str().unwrap();
        let args = [
            "create",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--bundle",
            bundle,
            &id,
        ];
        let (code, _, err) = runtime(rt, root.path(), &args);
        assert_eq!(code, 0, "{rt}: {err}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let deleted = runtime(rt, root.path(), &["delete", &id]).0;
        let gone = wait_until(Duration::from_secs(10), || {
            !Path::new(&format!("/proc/{}", pid.trim())).exists()
        });
        let left = leftovers(root.path(), &id);
        // A running one: refused without --force.
        let id2 = unique_id("delrunning");
        runtime(rt, root.path(), &["run", "-d", "--bundle", bundle, &id2]);
        let refused = runtime(rt, root.path(), &["delete", &id2]).0;
        runtime(rt, root.path(), &["delete", "--force", &id2]);
        seen.push((deleted, gone, left, refused != 0));
    }
    assert_eq!(seen[0], (0, true, vec![], true), "runc");
    assert_eq!(seen[1], seen[0], "rune vs runc");
}
