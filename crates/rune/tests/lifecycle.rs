//! rune driven directly, as containerd's shim drives runc: lifecycle, state, exec,
//! signals, hooks, rlimits, and bad input that must leave nothing behind.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[test]
fn run_returns_the_program_exit_code_and_cleans_up() {
    if !root_or_skip("run_returns_the_program_exit_code_and_cleans_up") {
        return;
    }
    let rune = Rune::new();
    let b = Bundle::new(&["sh", "-c", "echo hello; exit 3"]);
    let id = unique_id("run");
    let out = rune.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

#[test]
fn create_start_state_kill_delete() {
    if !root_or_skip("create_start_state_kill_delete") {
        return;
    }
    let rune = Rune::new();
    let b = Bundle::new(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; while true; do sleep 0.05; done",
    ]);
    let id = unique_id("life");
    let pidfile = b.path().join("init.pid");
    rune.ok(&[
        "--log",
        b.path().join("log.json").to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    let state = rune.state(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], json!(id));
    let pid: i64 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    assert_eq!(state["pid"], json!(pid));
    assert_eq!(state["bundle"], json!(b.path().canonicalize().unwrap()));
    assert_eq!(state["rootfs"], json!(images().join("rootfs")));

    // A non-fatal signal must not change the reported status.
    rune.ok(&["kill", &id, "SIGCONT"]);
    assert_eq!(rune.status(&id), "created");

    rune.ok(&["start", &id]);
    assert_eq!(rune.status(&id), "running");
    let start_again = rune.cmd(&["start", &id]);
    assert!(!start_again.status.success());

    let list: serde_json::Value = serde_json::from_str(&rune.ok(&["list", "-f", "json"])).unwrap();
    assert_eq!(list[0]["id"], json!(id));
    assert_eq!(rune.ok(&["list", "-q"]).trim(), id);

    let del = rune.cmd(&["delete", &id]);
    assert!(
        !del.status.success(),
        "deleting a running container must fail"
    );
    let err = String::from_utf8_lossy(&del.stderr);
    assert!(err.contains("not stopped"), "{err}");
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");

    rune.ok(&["kill", &id, "15"]);
    assert!(wait_until(Duration::from_secs(5), || rune.status(&id) == "stopped"));
    assert_eq!(rune.state(&id)["pid"], 0);
    let kill_stopped = rune.cmd(&["kill", &id, "KILL"]);
    assert!(!kill_stopped.status.success());
    assert!(String::from_utf8_lossy(&kill_stopped.stderr).contains("container not running"));

    rune.ok(&["delete", &id]);
    assert!(!rune.cmd(&["state", &id]).status.success());
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    // --force on a missing container succeeds, as runc's does.
    rune.ok(&["delete", "--force", &id]);
}

#[test]
fn exec_pause_resume_ps_update() {
    if !root_or_skip("exec_pause_resume_ps_update") {
        return;
    }
    let rune = Rune::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("exec");
    rune.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(rune.status(&id), "running");

    let out = rune.cmd(&[
        "exec",
        "-e",
        "GREETING=hi there",
        &id,
        "sh",
        "-c",
        "echo \"$GREETING\"; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi there\n");

    let process = json!({"cwd": "/tmp", "args": ["sh", "-c", "pwd"], "env": ["PATH=/bin"],
                         "user": {"uid": 0, "gid": 0}});
    let pfile = b.path().join("process.json");
    std::fs::write(&pfile, process.to_string()).unwrap();
    let out = rune.ok(&["exec", "--process", pfile.to_str().unwrap(), &id]);
    assert_eq!(out, "/tmp\n");

    let pids: Vec<i32> = serde_json::from_str(&rune.ok(&["ps", "-f", "json", &id])).unwrap();
    assert_eq!(pids, vec![rune.state(&id)["pid"].as_i64().unwrap() as i32]);

    rune.ok(&["pause", &id]);
    assert_eq!(rune.status(&id), "paused");
    rune.ok(&["resume", &id]);
    assert_eq!(rune.status(&id), "running");

    rune.ok(&["update", "--pids-limit", "77", &id]);
    let cg = leftovers(rune.root.path(), &id)
        .into_iter()
        .filter_map(|l| l.strip_prefix("cgroup ").map(String::from))
        // The pids hierarchy on v1 (a hybrid host's cgroup2 has no controllers), the one
        // cgroup on v2.
        .find(|p| std::path::Path::new(p).join("pids.max").exists())
        .expect("the container has a pids cgroup");
    assert_eq!(
        std::fs::read_to_string(format!("{cg}/pids.max"))
            .unwrap()
            .trim(),
        "77"
    );
    let bad = rune.cmd(&["update", "--memory", "lots", &id]);
    // runc's words (update.go): "invalid value for memory: invalid size: 'lots'".
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid value for memory"));

    rune.ok(&["delete", "--force", &id]);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

#[test]
fn missing_path_env_uses_the_default_search_path() {
    if !root_or_skip("missing_path_env_uses_the_default_search_path") {
        return;
    }
    let rune = Rune::new();
    let mut b = Bundle::new(&["echo", "no-path"]);
    b.spec["process"]["env"] = json!(["TERM=xterm"]);
    b.save();
    let id = unique_id("path");
    let out = rune.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no-path\n");
}

#[test]
fn rlimits_and_oom_score_adj_are_applied() {
    if !root_or_skip("rlimits_and_oom_score_adj_are_applied") {
        return;
    }
    let rune = Rune::new();
    let mut b = Bundle::new(&["sh", "-c", "ulimit -n; cat /proc/self/oom_score_adj"]);
    b.spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]);
    b.spec["process"]["oomScoreAdj"] = json!(123);
    b.save();
    let id = unique_id("rlim");
    let out = rune.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "256\n123\n");
}

#[test]
fn hooks_run_at_their_points_and_a_failing_hook_fails_create() {
    if !root_or_skip("hooks_run_at_their_points_and_a_failing_hook_fails_create") {
        return;
    }
    let rune = Rune::new();
    let b = Bundle::new(&["true"]);
    let trace = b.path().join("trace");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} >> {}", trace.display())]});
    let mut b = b;
    b.spec["hooks"] = json!({
        "prestart": [hook("prestart")],
        "createRuntime": [hook("createRuntime")],
        "createContainer": [hook("createContainer")],
        "poststart": [hook("poststart")],
        "poststop": [hook("poststop")],
    });
    b.save();
    let id = unique_id("hooks");
    let bundle = b.path().to_str().unwrap();
    rune.ok(&["create", "--bundle", bundle, &id]);
    let read = || std::fs::read_to_string(&trace).unwrap_or_default();
    assert_eq!(read(), "prestart\ncreateRuntime\ncreateContainer\n");
    rune.ok(&["start", &id]);
    assert_eq!(
        read(),
        "prestart\ncreateRuntime\ncreateContainer\npoststart\n"
    );
    assert!(wait_until(Duration::from_secs(5), || rune.status(&id) == "stopped"));
    rune.ok(&["delete", &id]);
    assert_eq!(
        read(),
        "prestart\ncreateRuntime\ncreateContainer\npoststart\npoststop\n"
    );

    let out = {
        let mut b2 = Bundle::new(&["sh", "-c", "echo program"]);
        // startContainer runs inside the container (its path is the container's /bin/sh)
        // before the program: it leaves a file in the container's /dev/shm that the
        // program then prints.
        b2.spec["process"]["args"] = json!(["sh", "-c", "cat /dev/shm/hook; echo program"]);
        b2.spec["hooks"] = json!({"startContainer": [
            {"path": "/bin/sh", "args": ["sh", "-c", "echo startContainer > /dev/shm/hook"]}]});
        b2.save();
        let id2 = unique_id("hooks-sc");
        let out = rune.cmd(&["run", "--bundle", b2.path().to_str().unwrap(), &id2]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(out, "startContainer\nprogram\n");

    for point in ["prestart", "createRuntime", "createContainer"] {
        let mut bad = Bundle::new(&["true"]);
        bad.spec["hooks"] = json!({ point: [{"path": "/bin/false", "args": ["false"]}] });
        bad.save();
        let id = unique_id("badhook");
        let out = rune.cmd(&["create", "--bundle", bad.path().to_str().unwrap(), &id]);
        assert!(
            !out.status.success(),
            "a failing {point} hook must fail create"
        );
        assert_eq!(
            leftovers(rune.root.path(), &id),
            Vec::<String>::new(),
            "{point}"
        );
    }
}

/// Each bad input: a one-line error naming the problem, non-zero exit, nothing left.
#[test]
fn bad_input_fails_cleanly_and_leaves_nothing() {
    if !root_or_skip("bad_input_fails_cleanly_and_leaves_nothing") {
        return;
    }
    let rune = Rune::new();
    type Edit = fn(&mut Bundle);
    let cases: &[(&str, Edit, &str)] = &[
        (
            "bad json",
            |b| std::fs::write(b.path().join("config.json"), "{\"ociVersion\":").unwrap(),
            "config.json",
        ),
        (
            "missing process.args",
            |b| {
                b.spec["process"].as_object_mut().unwrap().remove("args");
                b.save()
            },
            "process.args",
        ),
        (
            "unknown namespace",
            |b| {
                b.spec["linux"]["namespaces"][0]["type"] = json!("bogus");
                b.save()
            },
            "linux.namespaces[0].type",
        ),
        (
            "missing relative rootfs",
            |b| {
                b.spec["root"] = json!({"path": "nothere"});
                b.save()
            },
            "root.path",
        ),
        (
            "no program",
            |b| {
                b.spec["process"]["args"] = json!(["/no/such/program"]);
                b.save()
            },
            "/no/such/program",
        ),
        (
            "no config.json",
            |b| std::fs::remove_file(b.path().join("config.json")).unwrap(),
            "config.json",
        ),
    ];
    for (name, edit, needle) in cases {
        let mut b = Bundle::new(&["true"]);
        edit(&mut b);
        let id = unique_id("bad");
        let out = rune.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: create succeeded");
        assert!(
            err.contains(needle),
            "{name}: error does not name {needle:?}: {err}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{name}: not one line: {err}"
        );
        assert_eq!(
            leftovers(rune.root.path(), &id),
            Vec::<String>::new(),
            "{name}"
        );
    }

    let b = Bundle::new(&["sleep", "100"]);
    let bundle = b.path().to_str().unwrap();
    let err = rune.cmd(&["create", "--bundle", bundle, "bad/id"]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("invalid container id"));
    let id = unique_id("dup");
    rune.ok(&["create", "--bundle", bundle, &id]);
    let dup = rune.cmd(&["create", "--bundle", bundle, &id]);
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    assert_eq!(
        rune.status(&id),
        "created",
        "a duplicate create must not touch the first"
    );
    rune.ok(&["delete", "--force", &id]);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    for cmd in ["state", "start", "kill", "delete", "pause", "ps"] {
        let out = rune.cmd(&[cmd, "no-such-container"]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("does not exist"),
            "{cmd}"
        );
    }
}

#[test]
fn json_log_carries_the_error_for_containerd() {
    if !root_or_skip("json_log_carries_the_error_for_containerd") {
        return;
    }
    let rune = Rune::new();
    let log = rune.root.path().join("log.json");
    let out = rune.cmd(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "kill",
        "ghost",
        "9",
    ]);
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains("ghost"));
    assert!(last["time"].as_str().unwrap().ends_with('Z'));
}

/// CVE-2019-5736: a process in the container holds `/proc/<init>/exe` (rune itself while
/// the init waits for `start`) and reopens it for writing once it is free. The binary
/// rune runs from must refuse that.
#[test]
fn the_host_binary_cannot_be_reopened_for_writing_through_proc_exe() {
    if !root_or_skip("the_host_binary_cannot_be_reopened_for_writing_through_proc_exe") {
        return;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let rune = Rune::new();
    let b = Bundle::new(&["true"]);
    let id = unique_id("exe");
    rune.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let pid = rune.state(&id)["pid"].as_i64().unwrap();
    let held = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(format!("/proc/{pid}/exe"))
        .expect("open the init's exe with O_PATH");
    rune.ok(&["delete", "--force", &id]);
    use std::os::fd::AsRawFd;
    let reopen = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{}", held.as_raw_fd()));
    let err = reopen.expect_err("rune's executable was writable from the container");
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::EROFS) | Some(libc::EPERM) | Some(libc::ETXTBSY)
        ),
        "unexpected error {err}"
    );
}

#[test]
fn a_closed_stdout_ends_rune_quietly() {
    // The reader is gone before rune writes: `rune features | true`.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(RUNE)
        .arg("features")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    // As runc (Go) and C programs end: killed by SIGPIPE, which a shell shows as 141.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// `config.json` of `args` written into a fresh directory, as a JSON value with the
/// parts the spec treats as sets (capabilities, mount options) sorted and the
/// runtime's own name (hostname) left out.
fn written_spec(program: &str, args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(program)
        .args(args)
        .arg("--bundle")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    let obj = spec.as_object_mut().unwrap();
    obj.remove("hostname");
    if obj.get("annotations") == Some(&json!({})) {
        obj.remove("annotations");
    }
    if let Some(caps) = spec["process"]["capabilities"].as_object_mut() {
        for set in caps.values_mut() {
            set.as_array_mut().unwrap().sort_by_key(|c| c.to_string());
        }
    }
    for m in spec["mounts"].as_array_mut().unwrap() {
        if let Some(o) = m["options"].as_array_mut() {
            o.sort_by_key(|c| c.to_string());
        }
    }
    spec
}

/// `rune spec` writes runc's default spec (and `--rootless`, runc's rootless one): a
/// terminal, the deny-all device rule, no cgroup namespace, and no inheritable
/// capabilities (runc dropped them for CVE-2022-29162). Expected: what runc writes.
#[test]
fn spec_writes_runcs_default() {
    if !tool_or_skip("spec_writes_runcs_default", "/usr/sbin/runc") {
        return;
    }
    for args in [&["spec"][..], &["spec", "--rootless"][..]] {
        let theirs = written_spec("/usr/sbin/runc", args);
        let ours = written_spec(RUNE, args);
        assert_eq!(ours, theirs, "{args:?}");
    }
}

/// `run -d` of runc's default spec (a terminal) without `--console-socket` is refused
/// before anything exists, with runc's message naming the runtime that refuses.
#[test]
fn a_detached_terminal_without_console_socket_is_refused_as_by_runc() {
    let test = "a_detached_terminal_without_console_socket_is_refused_as_by_runc";
    if !root_or_skip(test) || !tool_or_skip(test, "/usr/sbin/runc") {
        return;
    }
    let mut b = Bundle::new(&["true"]);
    b.spec["process"]["terminal"] = json!(true);
    b.save();
    let runc_root = tempfile::tempdir().unwrap();
    let id = unique_id("tty");
    let theirs = std::process::Command::new("/usr/sbin/runc")
        .arg("--root")
        .arg(runc_root.path())
        .args(["run", "-d", "--bundle", b.path().to_str().unwrap(), &id])
        .output()
        .unwrap();
    let rune = Rune::new();
    let ours = rune.cmd(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(ours.status.code(), theirs.status.code());
    let expected = error_messages(&String::from_utf8_lossy(&theirs.stderr));
    let expected = expected
        .last()
        .and_then(|m| m.rsplit(": ").next())
        .unwrap()
        .replace("runc", "rune");
    let got = error_messages(&String::from_utf8_lossy(&ours.stderr));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].ends_with(&expected), "{got:?} vs {expected}");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}
