//! `config.json` settings runc refuses, runs or repeats, compared with runc (Debian's,
//! which `make test` installs): each case runs under both, and the expected outcome is
//! runc's. Refusals must be one error line naming the cause runc names, with nothing left.

mod common;

use std::path::Path;

use common::parity::*;
use common::*;
use serde_json::{json, Value};

/// Sets `value` at JSON pointer `at` of the bundle's spec, making the objects on the way.
fn set(b: &mut Bundle, at: &str, value: Value) {
    let mut node = &mut b.spec;
    for key in at.trim_start_matches('/').split('/') {
        if !node.is_object() {
            *node = json!({});
        }
        node = node
            .as_object_mut()
            .unwrap()
            .entry(key.to_string())
            .or_insert(Value::Null);
    }
    *node = value;
    b.save();
}

/// `run` of `b` under `rt` with a fresh state root: (exit code, stdout, stderr), and the
/// container deleted afterwards (nothing left of it under rune).
fn run_once(rt: &str, b: &Bundle, what: &str) -> (i32, String, String) {
    let root = tempfile::tempdir().unwrap();
    let id = unique_id("cfg");
    let r = runtime(
        rt,
        root.path(),
        &["run", "--bundle", b.path().to_str().unwrap(), &id],
    );
    runtime(rt, root.path(), &["delete", "--force", &id]);
    if rt == RUNE {
        assert!(
            leftovers(root.path(), &id).is_empty(),
            "{what}: {:?}",
            leftovers(root.path(), &id)
        );
    }
    r
}

/// Settings runc refuses: rune refuses them too, before anything runs, in one error line
/// carrying the words of runc's own message (`cause`, checked in runc's line first).
#[test]
fn settings_runc_refuses_are_refused_in_one_line_naming_the_cause() {
    if skip("config refusals") {
        return;
    }
    let plain_ns = json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]);
    let mut with_net = plain_ns.clone();
    with_net
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "network"}));
    let mut missing_net = plain_ns.clone();
    missing_net
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "network", "path": "/proc/999999999/ns/net"}));
    // (what, settings at JSON pointers, the words of runc's message)
    type Case<'a> = (&'a str, Vec<(&'a str, Value)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "namespace path that does not exist",
            vec![("/linux/namespaces", missing_net)],
            "lstat /proc/999999999/ns/net: no such file or directory",
        ),
        (
            "oomScoreAdj out of the kernel's range",
            vec![("/process/oomScoreAdj", json!(5000))],
            "/proc/self/oom_score_adj: invalid argument",
        ),
        (
            "additional gid above 2^31-1",
            vec![(
                "/process/user",
                json!({"uid": 0, "gid": 0, "additionalGids": [4294967295u32]}),
            )],
            "uids and gids must be in range 0-2147483647",
        ),
        (
            "uid above 2^31-1",
            vec![("/process/user", json!({"uid": 4294967295u32, "gid": 0}))],
            "uids and gids must be in range 0-2147483647",
        ),
        (
            "sysctl the kernel does not have",
            vec![
                ("/linux/namespaces", with_net),
                ("/linux/sysctl", json!({"net.nosuch.thing": "1"})),
            ],
            "open /proc/sys/net/nosuch/thing: no such file or directory",
        ),
    ];
    for (what, changes, cause) in cases {
        let mut b = Bundle::new(&["true"]);
        for (at, value) in changes {
            set(&mut b, at, value);
        }
        // runc may say it in an earlier line (nsexec's `level=fatal`) than its last.
        let runc = run_once(RUNC, &b, what);
        assert_ne!(runc.0, 0, "runc, {what}");
        assert!(
            runc.2.to_lowercase().contains(cause),
            "runc, {what}: {}",
            runc.2
        );
        let rune = failure(&run_once(RUNE, &b, what));
        assert_ne!(rune.0, 0, "rune, {what}");
        assert!(rune.1, "rune, {what}: one error line");
        assert!(
            rune.2.to_lowercase().contains(cause),
            "rune, {what}: {}",
            rune.2
        );
    }
}

/// LSM settings the host cannot apply (neither SELinux nor AppArmor enabled): runc
/// refuses a process label in its words, and fails a mount label or an AppArmor profile
/// part-way; rune refuses each before anything runs, naming the field, where it ignored
/// the labels and said only "No such file or directory" for the profile.
#[test]
fn lsm_settings_the_host_cannot_apply_are_refused() {
    if skip("lsm settings") {
        return;
    }
    let selinux = Path::new("/sys/fs/selinux/enforce").exists();
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    if selinux || apparmor {
        eprintln!("skipped lsm settings: this host has SELinux or AppArmor enabled");
        return;
    }
    let cases = [
        (
            "/process/selinuxLabel",
            "process.selinuxLabel",
            "system_u:system_r:container_t:s0",
            "selinux",
        ),
        (
            "/linux/mountLabel",
            "linux.mountLabel",
            "system_u:object_r:container_file_t:s0",
            "selinux",
        ),
        (
            "/process/apparmorProfile",
            "process.apparmorProfile",
            "nosuch",
            "apparmor",
        ),
    ];
    // An empty profile or label sets nothing: both runtimes run it.
    for at in ["/process/apparmorProfile", "/process/selinuxLabel"] {
        let mut b = Bundle::new(&["true"]);
        set(&mut b, at, json!(""));
        let runc = run_once(RUNC, &b, at);
        let rune = run_once(RUNE, &b, at);
        assert_eq!(runc.0, 0, "runc, empty {at}: {runc:?}");
        assert_eq!(rune.0, runc.0, "rune, empty {at}: {rune:?}");
    }
    for (at, field, value, lsm) in cases {
        let mut b = Bundle::new(&["true"]);
        set(&mut b, at, json!(value));
        let runc = failure(&run_once(RUNC, &b, field));
        assert_ne!(runc.0, 0, "runc applies no {field} here");
        let rune = failure(&run_once(RUNE, &b, field));
        assert_ne!(rune.0, 0, "rune, {field}");
        assert!(rune.1, "rune, {field}: one error line");
        assert!(
            rune.2.contains(field) && rune.2.contains(lsm),
            "rune, {field}: {}",
            rune.2
        );
        if field == "process.selinuxLabel" {
            // runc's sentence, cut from its own line.
            let sentence = runc.2.rsplit(": ").next().unwrap();
            assert!(
                rune.2.ends_with(sentence),
                "{} vs runc's {}",
                rune.2,
                runc.2
            );
        }
    }
    // The same in an `exec --process` file: refused by both, rune naming the field.
    let b = Bundle::new(&["sleep", "100"]);
    let mut p = b.spec["process"].clone();
    p["args"] = json!(["true"]);
    p["selinuxLabel"] = json!("system_u:system_r:container_t:s0");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), p.to_string()).unwrap();
    let mut seen = Vec::new();
    for rt in [RUNC, RUNE] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("lsmexec");
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &["run", "-d", "--bundle", b.path().to_str().unwrap(), &id],
        );
        assert_eq!(code, 0, "{rt}: {err}");
        let r = runtime(
            rt,
            root.path(),
            &["exec", "--process", file.path().to_str().unwrap(), &id],
        );
        runtime(rt, root.path(), &["delete", "--force", &id]);
        seen.push(failure(&r));
    }
    assert_ne!(
        seen[0].0, 0,
        "runc runs an exec with a label: {:?}",
        seen[0]
    );
    assert_eq!(
        (seen[1].0, seen[1].1),
        (seen[0].0, true),
        "rune: {:?}",
        seen[1]
    );
    assert!(seen[1].2.contains("selinuxLabel"), "{:?}", seen[1]);
}

/// Settings runc runs with, where rune refused or failed: a pids limit of 1 (runc sets
/// limits once its init exists), a relative mount destination (runtime-spec 1.1: relative
/// to `/`; runc warns), and a bundle without a /dev mount run twice (the device nodes
/// and links the first run made are kept).
#[test]
fn settings_runc_runs_with_run_as_with_runc() {
    if skip("config runs") {
        return;
    }
    // pids.limit 1: the program runs, and may not fork.
    let mut b = Bundle::new(&["sh", "-c", "echo ran; (true) && echo forked"]);
    set(&mut b, "/linux/resources/pids", json!({"limit": 1}));
    let runc = run_once(RUNC, &b, "pids 1");
    let rune = run_once(RUNE, &b, "pids 1");
    assert_eq!(runc.1, "ran\n", "runc, pids 1: {runc:?}");
    assert_eq!((rune.0, &rune.1), (runc.0, &runc.1), "pids 1: {rune:?}");

    // A relative destination lands at /DESTINATION.
    let out = out_dir();
    let mut b = Bundle::new(&["sh", "-c", "grep -c ' /mnt ' /proc/self/mounts > /tmp/mnt"])
        .bind(out.path(), "/tmp");
    b.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "mnt", "type": "tmpfs", "source": "tmpfs"}));
    b.save();
    let mut seen = Vec::new();
    for rt in [RUNC, RUNE] {
        let _ = std::fs::remove_file(out.path().join("mnt"));
        let r = run_once(rt, &b, "relative mount");
        let count = std::fs::read_to_string(out.path().join("mnt")).unwrap_or_default();
        seen.push((r.0, count, r.2.contains("is not absolute")));
    }
    assert_eq!(
        seen[0],
        (0, "1\n".to_string(), true),
        "runc, relative mount"
    );
    assert_eq!(seen[1], seen[0], "rune, relative mount");

    // No /dev mount: the second run finds the first run's nodes and links.
    let mut seen = Vec::new();
    for rt in [RUNC, RUNE] {
        let mut b = Bundle::new(&["ls", "/dev"]).private_rootfs();
        let rootfs = b.path().join("rootfs");
        for entry in std::fs::read_dir(rootfs.join("dev")).unwrap() {
            let path = entry.unwrap().path();
            let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
        }
        b.spec["root"]["readonly"] = json!(false);
        let mounts = b.spec["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| {
            m["destination"] != "/dev" && !m["destination"].as_str().unwrap().starts_with("/dev/")
        });
        b.save();
        let first = run_once(rt, &b, "no /dev, first");
        let second = run_once(rt, &b, "no /dev, second");
        seen.push((first.0, second.0, first.1 == second.1));
    }
    assert_eq!(seen[0], (0, 0, true), "runc, no /dev mount");
    assert_eq!(seen[1], seen[0], "rune, no /dev mount");
}

/// `exec` without flags runs as the container's process does (runc's exec.go
/// `getProcess` starts from `process`): its user and groups, cwd and rlimits; `--user`
/// replaces the ids, `--additional-gids` adds groups, `--cwd` moves it. rune ran every
/// exec as 0:0 in /.
#[test]
fn exec_starts_from_the_containers_process_as_with_runc() {
    if skip("exec process") {
        return;
    }
    let mut b = Bundle::new(&["sleep", "100"]);
    set(
        &mut b,
        "/process/user",
        json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 6]}),
    );
    set(&mut b, "/process/cwd", json!("/tmp"));
    set(
        &mut b,
        "/process/rlimits",
        json!([{"type": "RLIMIT_NOFILE", "hard": 777, "soft": 555}]),
    );
    // (flags, command)
    let execs: [(&[&str], &[&str]); 4] = [
        (&[], &["sh", "-c", "id; pwd"]),
        (&["--user", "0"], &["id"]),
        (&["--user", "1000", "--additional-gids", "7"], &["id"]),
        (&["--cwd", "/"], &["pwd"]),
    ];
    let mut seen = Vec::new();
    for rt in [RUNC, RUNE] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("execproc");
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &["run", "-d", "--bundle", b.path().to_str().unwrap(), &id],
        );
        assert_eq!(code, 0, "{rt}: {err}");
        let mut outs = Vec::new();
        for (flags, command) in execs {
            let mut all = vec!["exec"];
            all.extend(flags);
            all.push(&id);
            all.extend(command);
            outs.push(runtime(rt, root.path(), &all));
        }
        runtime(rt, root.path(), &["delete", "--force", &id]);
        seen.push(outs);
    }
    assert_eq!(
        seen[0][0].1, "uid=1000 gid=1000 groups=5,6\n/tmp\n",
        "runc: {:?}",
        seen[0]
    );
    assert_eq!(seen[1], seen[0], "rune's execs");
    // The container's rlimits: the soft limit the spec gives. (runc 1.1.5's exec hands
    // out the hard one: its Go runtime raised RLIMIT_NOFILE, fixed in runc 1.2; its
    // `run` gives the spec's.)
    let rune = Rune::new();
    let id = unique_id("execrlimit");
    rune.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let limits = rune.ok(&["exec", &id, "sh", "-c", "ulimit -n; ulimit -Hn"]);
    rune.ok(&["delete", "--force", &id]);
    assert_eq!(limits, "555\n777\n");
}

/// The state is root's alone, as runc keeps it: the state root 0700, a container's
/// directory 0711, its state 0600 (it names the bundle, the pid and the hooks).
#[test]
fn the_state_is_roots_alone_as_with_runc() {
    if skip("state modes") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let b = Bundle::new(&["sleep", "100"]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let mut seen = Vec::new();
    for rt in [RUNC, RUNE] {
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("state");
        let id = unique_id("modes");
        let (code, _, err) = runtime(
            rt,
            &root,
            &["create", "--bundle", b.path().to_str().unwrap(), &id],
        );
        assert_eq!(code, 0, "{rt}: {err}");
        let files: Vec<u32> = std::fs::read_dir(root.join(&id))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| mode(&p))
            .collect();
        seen.push((mode(&root), mode(&root.join(&id)), files));
        runtime(rt, &root, &["delete", "--force", &id]);
    }
    assert_eq!(seen[0], (0o700, 0o711, vec![0o600]), "runc");
    let rune = &seen[1];
    assert_eq!((rune.0, rune.1), (seen[0].0, seen[0].1), "rune: {rune:?}");
    assert!(
        !rune.2.is_empty() && rune.2.iter().all(|m| *m == 0o600),
        "rune's state files: {rune:?}"
    );
}

/// A `--console-socket` nobody listens on: runc names the path and the cause ("dial unix
/// PATH: connect: no such file or directory"); rune said "failed to create console
/// socket: ENOENT", naming nothing.
#[test]
fn a_console_socket_that_is_not_there_is_named_as_by_runc() {
    if skip("console socket") {
        return;
    }
    let mut b = Bundle::new(&["true"]);
    set(&mut b, "/process/terminal", json!(true));
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock");
    let mut seen = Vec::new();
    for rt in [RUNC, RUNE] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("consock");
        let r = runtime(
            rt,
            root.path(),
            &[
                "create",
                "--console-socket",
                socket.to_str().unwrap(),
                "--bundle",
                b.path().to_str().unwrap(),
                &id,
            ],
        );
        runtime(rt, root.path(), &["delete", "--force", &id]);
        if rt == RUNE {
            assert!(leftovers(root.path(), &id).is_empty());
        }
        seen.push(failure(&r));
    }
    for fact in [
        socket.to_str().unwrap(),
        "no such file or directory",
        "connect",
    ] {
        assert!(seen[0].2.contains(fact), "runc: {:?}", seen[0]);
        assert!(
            seen[1].2.to_lowercase().contains(&fact.to_lowercase()),
            "rune lacks {fact:?}: {:?}",
            seen[1]
        );
    }
    assert_eq!((seen[1].0, seen[1].1), (seen[0].0, seen[0].1), "{seen:?}");
}

/// Runs `args` from a child subreaper that does not reap (as containerd's shims and
/// docker are): returns (the command's exit code, how many processes it left as the
/// subreaper's children, living or zombie).
fn left_to_a_subreaper(args: &[&str]) -> (i32, usize) {
    const SUBREAPER: &str = r#"
import ctypes, os, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
rc = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL).returncode
time.sleep(0.3)
me, left = str(os.getpid()), 0
for p in filter(str.isdigit, os.listdir("/proc")):
    try:
        fields = open(f"/proc/{p}/stat").read().rsplit(") ", 1)[1].split()
    except OSError:
        continue
    left += fields[1] == me
print(rc, left)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", SUBREAPER])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace().map(|w| w.parse::<i64>().unwrap());
    let (rc, left) = (words.next().unwrap(), words.next().unwrap());
    (rc as i32, left as usize)
}

/// A failed create, run or exec leaves no process behind for its caller's subreaper
/// (runc leaves none), and a container whose exec failed is killed and deleted at once.
#[test]
fn failed_create_and_exec_leave_no_processes_as_with_runc() {
    if skip("failed create and exec leave no processes") {
        return;
    }
    let bad = Bundle::new(&["/etc/passwd"]);
    let good = Bundle::new(&["sleep", "100"]);
    let mut seen = Vec::new();
    for rt in [RUNC, RUNE] {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().to_str().unwrap();
        let mut got = Vec::new();
        for command in ["create", "run"] {
            let id = unique_id("reapbad");
            let b = bad.path().to_str().unwrap();
            got.push(left_to_a_subreaper(&[
                rt, "--root", r, command, "--bundle", b, &id,
            ]));
            runtime(rt, root.path(), &["delete", "--force", &id]);
        }
        let id = unique_id("reapexec");
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &["run", "-d", "--bundle", good.path().to_str().unwrap(), &id],
        );
        assert_eq!(code, 0, "{rt}: {err}");
        got.push(left_to_a_subreaper(&[
            rt,
            "--root",
            r,
            "exec",
            &id,
            "/nonexist",
        ]));
        got.push(left_to_a_subreaper(&[
            rt, "--root", r, "exec", "--cwd", "/nodir", &id, "true",
        ]));
        // Killed, the container is stopped and can be deleted within a second.
        runtime(rt, root.path(), &["kill", &id, "KILL"]);
        let deleted = wait_until(std::time::Duration::from_secs(1), || {
            runtime(rt, root.path(), &["delete", &id]).0 == 0
        });
        if !deleted {
            runtime(rt, root.path(), &["delete", "--force", &id]);
        }
        seen.push((got, deleted));
    }
    let (runc, rune) = (&seen[0], &seen[1]);
    assert!(
        runc.0.iter().all(|(rc, left)| *rc != 0 && *left == 0),
        "runc: {runc:?}"
    );
    assert!(runc.1, "runc: the container was not deleted");
    assert_eq!(
        rune, runc,
        "rune (create, run, exec /nonexist, exec --cwd /nodir)"
    );
}

/// `exec` of a program that cannot start, into a sim enclave container, fails at once,
/// foreground and detached, with exit status 255 and one error line naming the program
/// and the cause, as runc's exec into a plain container.
#[test]
fn enclave_exec_of_a_program_that_cannot_start_fails_as_runcs() {
    if skip("enclave exec of a program that cannot start") {
        return;
    }
    let (pal, _) = sim_artifacts();
    let plain = Bundle::new(&["sleep", "100"]);
    let enclave = Bundle::new(&["sleep", "100"]).enclave(&pal, "debug");
    let cases = [
        ("/nonexist", "no such file or directory"),
        ("/etc/passwd", "permission denied"),
    ];
    for (rt, b) in [(RUNC, &plain), (RUNE, &enclave)] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("encexecbad");
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &["run", "-d", "--bundle", b.path().to_str().unwrap(), &id],
        );
        assert_eq!(code, 0, "{rt}: {err}");
        for (program, cause) in cases {
            for detach in [false, true] {
                let mut args = vec!["exec"];
                if detach {
                    args.push("-d");
                }
                args.extend([id.as_str(), program]);
                let r = runtime(rt, root.path(), &args);
                let (code, one_line, msg) = failure(&r);
                let what = format!("{rt} exec -d={detach} {program}: {r:?}");
                assert_eq!(code, 255, "{what}");
                assert!(one_line, "{what}");
                assert!(msg.contains(&format!("exec: \"{program}\"")), "{what}");
                assert!(msg.to_lowercase().contains(cause), "{what}");
            }
        }
        // Still running, and nothing of the failed processes left.
        let (_, state, _) = runtime(rt, root.path(), &["state", &id]);
        assert!(state.contains("\"running\""), "{rt}: {state}");
        runtime(rt, root.path(), &["delete", "--force", &id]);
        assert_eq!(leftovers(root.path(), &id), Vec::<String>::new());
    }
}
