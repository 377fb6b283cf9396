//! runc's flags and lines, compared with runc: `exec --ignore-paused`, `exec --cgroup`,
//! `exec --apparmor/--process-label`, `run --no-subreaper`, the command line of a created
//! container's init, and the facts runc's error lines carry. Each case runs the same
//! scenario under Debian's runc (`make test` installs it) and under rune; the expected
//! values are runc's.

mod common;

use std::path::{Path, PathBuf};

use std::time::Duration;

use common::cgroups::*;
use common::parity::*;
use common::*;
use serde_json::json;

/// Both refuse `exec` into a paused container without `--ignore-paused`; with it,
/// `exec -d` waits while the container is frozen and returns once it is resumed, and the
/// process runs then.
#[test]
fn exec_ignore_paused_as_runc() {
    if skip("exec --ignore-paused") {
        return;
    }
    let out = out_dir();
    let b = Bundle::new(&["sleep", "100"]).bind(out.path(), "/tmp");
    let r = out.path().join("r");
    let mut seen = Vec::new();
    for rt in [RUNE, RUNC] {
        let _ = std::fs::remove_file(&r);
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("paused");
        run_detached(rt, root.path(), &b, &id);
        assert_eq!(runtime(rt, root.path(), &["pause", &id]).0, 0, "{rt} pause");
        let write = ["sh", "-c", "echo ran >> /tmp/r"];
        let refused = failure(&runtime(
            rt,
            root.path(),
            &[&["exec", &id][..], &write].concat(),
        ));
        let refused_d = failure(&runtime(
            rt,
            root.path(),
            &[&["exec", "-d", &id][..], &write].concat(),
        ));
        let args = [&["exec", "-d", "--ignore-paused", &id][..], &write].concat();
        let (mut exec, _, err) = spawn(rt, root.path(), &args);
        // Frozen, the process cannot run; the exec returns only once it has started.
        std::thread::sleep(Duration::from_secs(1));
        let returned_while_paused = exec.try_wait().unwrap().is_some();
        let ran_while_paused = r.exists();
        let resumed = runtime(rt, root.path(), &["resume", &id]).0;
        let code = wait_or_kill(&mut exec, 20);
        let ran = wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&r).is_ok_and(|s| s == "ran\n")
        });
        let (_, state, _) = runtime(rt, root.path(), &["state", &id]);
        let status = serde_json::from_str::<serde_json::Value>(&state).unwrap()["status"].clone();
        let deleted = runtime(rt, root.path(), &["delete", "--force", &id]).0;
        if rt == RUNE {
            assert!(
                leftovers(root.path(), &id).is_empty(),
                "{:?}",
                leftovers(root.path(), &id)
            );
        }
        let mentions = |m: &str| m.contains("paused") && m.contains("--ignore-paused");
        seen.push((
            (refused.0, refused.1, mentions(&refused.2)),
            (refused_d.0, refused_d.1, mentions(&refused_d.2)),
            (returned_while_paused, ran_while_paused, resumed),
            (code, ran, status, deleted),
        ));
        assert!(
            code.is_some(),
            "{rt}: exec did not return after resume: {:?}",
            { String::from_utf8(read_back(err)).unwrap() }
        );
    }
    let runc = &seen[1];
    assert_eq!(runc.0, (255, true, true), "runc refuses, naming the flag");
    assert_eq!(runc.1, (255, true, true), "runc refuses exec -d");
    assert_eq!(runc.2, (false, false, 0), "runc's exec waits while frozen");
    assert_eq!(
        runc.3,
        (Some(0), true, json!("running"), 0),
        "runc after resume"
    );
    assert_eq!(seen[0], seen[1], "rune vs runc");
}

/// `exec --ignore-paused` waits while the container is frozen; when its init ends on
/// thaw (killed while frozen), the exec races the init's end. Under both runtimes it
/// either runs (0) or fails with 255; rune's failure says the container stopped, in one
/// line, where the kernel's errno (ENOMEM from a clone into a dead pid namespace) would
/// mislead (runc says "read init-p: connection reset by peer").
#[test]
fn exec_ignore_paused_into_a_container_that_ends_on_thaw() {
    if skip("exec --ignore-paused, init ends on thaw") {
        return;
    }
    let b = Bundle::new(&["sleep", "100"]);
    let attempt = |rt: &str| {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("thawend");
        let pid = run_detached(rt, root.path(), &b, &id);
        assert_eq!(runtime(rt, root.path(), &["pause", &id]).0, 0, "{rt} pause");
        // A frozen v1 task keeps SIGKILL pending until thawed.
        let init = nix::unistd::Pid::from_raw(pid.parse().unwrap());
        nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL).unwrap();
        let args = ["exec", "-d", "--ignore-paused", &id, "true"];
        let (mut exec, _, err) = spawn(rt, root.path(), &args);
        std::thread::sleep(Duration::from_millis(500));
        let waited = exec.try_wait().unwrap().is_none();
        let _ = runtime(rt, root.path(), &["resume", &id]);
        let code = wait_or_kill(&mut exec, 20).unwrap_or(-1);
        let err = String::from_utf8(read_back(err)).unwrap();
        let deleted = runtime(rt, root.path(), &["delete", "--force", &id]).0;
        assert!(leftovers(root.path(), &id).is_empty(), "{rt} left state");
        assert!(waited, "{rt}: exec returned while the container was paused");
        assert!([0, 255].contains(&code), "{rt}: exit {code}: {err}");
        assert_eq!(deleted, 0, "{rt} delete");
        (code, failure(&(code, String::new(), err.clone())), err)
    };
    attempt(RUNC);
    // The race mostly ends the init first; a few attempts make the failure path run.
    for _ in 0..5 {
        let (code, (_, one, msg), err) = attempt(RUNE);
        if code == 255 {
            assert!(one, "rune: one error line: {err}");
            assert!(
                msg.contains("stopped") && !msg.contains("ENOMEM"),
                "rune: {err}"
            );
            return;
        }
    }
}

/// The directory of `ctrl`'s hierarchy among `dirs` (`""`: a hybrid host's cgroup2).
fn dir_of(dirs: &[PathBuf], mount: &str) -> Option<PathBuf> {
    let base = Path::new("/sys/fs/cgroup").join(mount);
    dirs.iter().find(|d| d.starts_with(&base)).cloned()
}

/// Makes `dir/sub` as a usable cgroup (a v1 cpuset child needs its parent's cpus and
/// mems before it takes a process).
fn make_sub(dir: &Path, sub: &str) -> PathBuf {
    let d = dir.join(sub);
    std::fs::create_dir(&d).unwrap();
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if let Ok(v) = std::fs::read_to_string(dir.join(f)) {
            std::fs::write(d.join(f), v).unwrap();
        }
    }
    d
}

/// The sub-directories of each of `dirs`, sorted, with `id` normalised.
fn children(dirs: &[PathBuf], id: &str) -> Vec<String> {
    let mut found: Vec<String> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path().display().to_string().replace(id, "ID"))
        .collect();
    found.sort();
    found
}

/// `exec --cgroup`: the process joins existing sub-cgroups of the container, per
/// controller or in every hierarchy, as /proc/self/cgroup shows (no cgroup namespace,
/// so the host's paths); a missing sub-cgroup, an unknown controller, a path leaving the
/// container's cgroup and a malformed argument fail, creating nothing.
#[test]
fn exec_cgroup_as_runc() {
    if skip("exec --cgroup") {
        return;
    }
    let mut b = Bundle::new(&["sleep", "100"]);
    let ns = b.spec["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "cgroup");
    b.save();
    let mut seen = Vec::new();
    for rt in [RUNE, RUNC] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("subcg");
        let pid = run_detached(rt, root.path(), &b, &id);
        let (_, dirs) = cgroups_of(&pid);
        let memory = dir_of(&dirs, "memory").expect("a memory hierarchy");
        // In every hierarchy for the bare path; memory and pids for the named ones.
        let made: Vec<PathBuf> = dirs.iter().map(|d| make_sub(d, "sub")).collect();
        let cat = |flags: &[&str]| {
            let args = [&["exec"][..], flags, &[&id, "cat", "/proc/self/cgroup"]].concat();
            let r = runtime(rt, root.path(), &args);
            (r.0, r.1.replace(&id, "ID"), r.2)
        };
        let named = cat(&["--cgroup", "memory,pids:sub"]);
        let repeated = cat(&["--cgroup", "memory:sub", "--cgroup", "pids:/sub"]);
        let every = cat(&["--cgroup", "sub"]);
        let missing = failure(&cat(&["--cgroup", "memory:missing"]));
        let unknown = failure(&cat(&["--cgroup", "bogus:sub"]));
        let escape = failure(&cat(&["--cgroup", "memory:../x"]));
        let malformed = failure(&cat(&["--cgroup", "a:b:c"]));
        // Nothing was created below the container's cgroups but what the test made.
        let created = children(&dirs, &id);
        let removed = made
            .iter()
            .all(|d| wait_until(Duration::from_secs(5), || std::fs::remove_dir(d).is_ok()));
        let deleted = runtime(rt, root.path(), &["delete", "--force", &id]).0;
        if rt == RUNE {
            assert!(
                leftovers(root.path(), &id).is_empty(),
                "{:?}",
                leftovers(root.path(), &id)
            );
        }
        let missing_dir = memory.join("missing").display().to_string();
        seen.push((
            [named.clone(), repeated, every],
            (
                missing.0,
                missing.1,
                missing.2.contains(&format!("{missing_dir}/cgroup.procs")),
            ),
            (
                unknown.0,
                unknown.1,
                unknown.2.contains("unknown controller bogus"),
            ),
            (
                escape.0,
                escape.1,
                escape.2.contains("../x is not a sub cgroup path"),
            ),
            (
                malformed.0,
                malformed.1,
                malformed.2.contains("invalid --cgroup argument: a:b:c"),
            ),
            (created, removed, deleted),
        ));
    }
    let runc = &seen[1];
    let named = &runc.0[0].1;
    for line in named.lines() {
        let moved = line.contains(":memory:") || line.contains(":pids:");
        assert_eq!(
            line.ends_with("/ID/sub"),
            moved,
            "runc --cgroup memory,pids: {line}"
        );
    }
    assert_eq!(runc.0[0].0, 0, "runc --cgroup memory,pids:sub");
    assert_eq!(runc.0[1], runc.0[0], "runc, one flag per controller");
    assert!(
        runc.0[2].1.lines().all(|l| l.ends_with("/ID/sub")),
        "runc --cgroup sub"
    );
    assert_eq!(runc.1, (255, true, true), "runc: a missing sub-cgroup");
    assert_eq!(runc.2, (255, true, true), "runc: an unknown controller");
    assert_eq!(
        runc.3,
        (255, true, true),
        "runc: a path out of the container's cgroup"
    );
    assert_eq!(runc.4, (255, true, true), "runc: a malformed argument");
    assert!(
        runc.5 .1 && runc.5 .2 == 0,
        "runc: the sub-cgroups were left empty"
    );
    assert_eq!(
        seen[0].0, seen[1].0,
        "rune vs runc: /proc/self/cgroup of the process"
    );
    assert_eq!(seen[0].1, seen[1].1, "rune vs runc: a missing sub-cgroup");
    assert_eq!(seen[0].2, seen[1].2, "rune vs runc: an unknown controller");
    assert_eq!(seen[0].3, seen[1].3, "rune vs runc: ..");
    assert_eq!(seen[0].4, seen[1].4, "rune vs runc: a:b:c");
    assert_eq!(
        seen[0].5, seen[1].5,
        "rune vs runc: cgroups created, removal, delete"
    );
}

/// Without AppArmor and SELinux on the host, both refuse `--apparmor P` and
/// `--process-label L` in one error line naming the LSM, before the process runs; an
/// empty value sets nothing and the exec runs.
#[test]
fn exec_apparmor_and_process_label_as_runc() {
    if skip("exec --apparmor/--process-label") {
        return;
    }
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    if apparmor || Path::new("/sys/fs/selinux/enforce").exists() {
        println!(
            "skipped: exec --apparmor/--process-label expects a host without AppArmor and SELinux"
        );
        return;
    }
    let out = out_dir();
    let b = Bundle::new(&["sleep", "100"]).bind(out.path(), "/tmp");
    let r = out.path().join("r");
    let mut seen = Vec::new();
    for rt in [RUNE, RUNC] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("lsm");
        run_detached(rt, root.path(), &b, &id);
        let mut outcome = Vec::new();
        for (flag, value, lsm) in [
            ("--apparmor", "rune-test-profile", "apparmor"),
            (
                "--process-label",
                "system_u:system_r:container_t:s0",
                "selinux",
            ),
            ("--apparmor", "", ""),
            ("--process-label", "", ""),
        ] {
            let _ = std::fs::remove_file(&r);
            let args = [flag, value, &id, "sh", "-c", "echo ran > /tmp/r"];
            let res = runtime(rt, root.path(), &[&["exec"][..], &args].concat());
            let (code, one, msg) = failure(&res);
            let named = lsm.is_empty() || msg.to_lowercase().contains(lsm);
            outcome.push((
                flag,
                value.is_empty(),
                code,
                one || code == 0,
                named,
                r.exists(),
            ));
        }
        runtime(rt, root.path(), &["delete", "--force", &id]);
        seen.push(outcome);
    }
    // (flag, empty value, exit code, one error line or success, LSM named, ran)
    let runc = &seen[1];
    let refused = |i: usize| (runc[i].2, runc[i].3, runc[i].4, runc[i].5);
    assert_eq!(
        refused(0),
        (255, true, true, false),
        "runc --apparmor: {runc:?}"
    );
    assert_eq!(
        refused(1),
        (255, true, true, false),
        "runc --process-label: {runc:?}"
    );
    assert_eq!(refused(2), (0, true, true, true), "runc --apparmor \"\"");
    assert_eq!(
        refused(3),
        (0, true, true, true),
        "runc --process-label \"\""
    );
    assert_eq!(seen[0], seen[1], "rune vs runc");
}

/// A foreground `run` is the child subreaper unless `--no-subreaper`: an orphan of a
/// container sharing the host's pid namespace is reparented to the runtime, or past it.
/// The exit status is the container's either way.
#[test]
fn run_no_subreaper_as_runc() {
    if skip("run --no-subreaper") {
        return;
    }
    let out = out_dir();
    // The orphan (its parent `sh -c` ends at once) waits until it is reparented, away
    // from that `sh`, and writes its new parent's pid; the init waits for that (at most
    // 30 s) and exits 3.
    std::fs::write(
        out.path().join("orphan.sh"),
        "ppid() { grep PPid /proc/$$/status | cut -f2; }\n\
         while [ \"$(cat /proc/$(ppid)/comm)\" = sh ]; do sleep 0.05; done\n\
         ppid > /tmp/r.new; mv /tmp/r.new /tmp/r\n",
    )
    .unwrap();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "sh -c 'sh /tmp/orphan.sh &'; i=0; while [ ! -s /tmp/r ] && [ $i -lt 600 ]; \
         do sleep 0.05; i=$((i+1)); done; exit 3",
    ])
    .bind(out.path(), "/tmp");
    let ns = b.spec["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "pid");
    b.save();
    let mut seen = Vec::new();
    for rt in [RUNE, RUNC] {
        for flags in [&[][..], &["--no-subreaper"][..]] {
            let _ = std::fs::remove_file(out.path().join("r"));
            let root = tempfile::tempdir().unwrap();
            let id = unique_id("reaper");
            let bundle = b.path().to_str().unwrap();
            let args = [&["run"][..], flags, &["--bundle", bundle, &id]].concat();
            let (mut child, _, err) = spawn(rt, root.path(), &args);
            let code = wait_or_kill(&mut child, 60);
            let ppid = std::fs::read_to_string(out.path().join("r")).unwrap_or_default();
            let to_runtime = ppid.trim() == child.id().to_string();
            runtime(rt, root.path(), &["delete", "--force", &id]);
            let err = String::from_utf8(read_back(err)).unwrap();
            // (runc may warn that a cgroup is still busy while the orphan ends.)
            let errors = error_lines(&err).len();
            seen.push((flags.len(), code, !ppid.is_empty(), to_runtime, errors));
        }
    }
    assert_eq!(
        &seen[2..],
        [(0, Some(3), true, true, 0), (1, Some(3), true, false, 0)],
        "runc: reparented to runc unless --no-subreaper"
    );
    assert_eq!(seen[..2], seen[2..], "rune vs runc");
}

/// A container with neither a pid nor a cgroup namespace, created from a nested cgroup,
/// finds its own cgroups at /sys/fs/cgroup/<hierarchy> as with runc, which binds each
/// hierarchy's directory of the container (relative to the host mount's root). Each
/// hierarchy is mounted with the cgroup mount's options (read-only, nosuid, nodev,
/// noexec), as by runc, with or without a cgroup namespace.
#[test]
fn cgroup_mounts_without_namespaces_show_the_containers_cgroups_as_with_runc() {
    if skip("cgroup v1 mounts without namespaces") {
        return;
    }
    if !Path::new("/sys/fs/cgroup/memory").is_dir() {
        println!("skipped: cgroup v1 mounts need a cgroup v1 host");
        return;
    }
    let out = out_dir();
    let b = Bundle::new(&[
        "sh",
        "-c",
        "for h in /sys/fs/cgroup/*/; do grep -qx $$ $h/cgroup.procs && echo $h; done > /tmp/r; \
         awk '$2 ~ \"^/sys/fs/cgroup\" {print $2, $3, $4}' /proc/mounts | sort >> /tmp/r",
    ])
    .bind(out.path(), "/tmp");
    let other = OtherCgroup::new();
    let mut seen = Vec::new();
    for (pidns, cgroupns) in [(false, false), (true, false), (true, true)] {
        let mut b = Bundle {
            dir: tempfile::tempdir().unwrap(),
            spec: b.spec.clone(),
        };
        let ns = b.spec["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "cgroup" && (pidns || n["type"] != "pid"));
        if cgroupns {
            ns.push(json!({"type": "cgroup"}));
        }
        b.save();
        for rt in [RUNE, RUNC] {
            let _ = std::fs::remove_file(out.path().join("r"));
            let root = tempfile::tempdir().unwrap();
            let id = unique_id("cgmount");
            let bundle = b.path().to_str().unwrap();
            let (code, _, err) = other.run(rt, root.path(), &["run", "--bundle", bundle, &id]);
            runtime(rt, root.path(), &["delete", "--force", &id]);
            let found = std::fs::read_to_string(out.path().join("r")).unwrap_or_default();
            seen.push((pidns, code, found, error_messages(&err)));
        }
    }
    for pair in seen.chunks(2) {
        let (rune, runc) = (&pair[0], &pair[1]);
        assert_eq!(runc.1, 0, "runc: {runc:?}");
        assert!(runc.2.contains("/sys/fs/cgroup/memory/"), "runc: {runc:?}");
        assert!(
            runc.2.contains("/sys/fs/cgroup/memory cgroup ro,"),
            "runc: {runc:?}"
        );
        assert_eq!(rune, runc, "rune vs runc (pid namespace: {})", runc.0);
    }
}

/// The words of `/proc/<pid>/cmdline` (setproctitle pads with NULs).
fn cmdline_words(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

/// A created container's init shows no host path of the container in its command line,
/// to the host (`ps`, `docker top`) or to the container (`/proc/1/cmdline`): runc's
/// reads `<runc as invoked> init`; rune's must name the runtime and `init` the same way.
#[test]
fn a_created_containers_init_shows_no_host_paths_as_with_runc() {
    if skip("created init title") {
        return;
    }
    let b = Bundle::new(&["sleep", "100"]);
    let mut seen = Vec::new();
    for rt in [RUNE, RUNC] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("title");
        let pid_file = root.path().join("init.pid");
        let log = root.path().join("log.json");
        let bundle = b.path().to_str().unwrap();
        let args = [
            "--log",
            log.to_str().unwrap(),
            "create",
            "--bundle",
            bundle,
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
        ];
        let (code, _, err) = runtime(rt, root.path(), &args);
        assert_eq!(code, 0, "{rt} create: {err}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let host = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap();
        let (code, inside, err) =
            runtime(rt, root.path(), &["exec", &id, "cat", "/proc/1/cmdline"]);
        assert_eq!(code, 0, "{rt} exec: {err}");
        runtime(rt, root.path(), &["delete", "--force", &id]);
        let normalise = |raw: &[u8]| -> Vec<String> {
            cmdline_words(raw)
                .into_iter()
                .map(|w| if w == rt { "RUNTIME".into() } else { w })
                .collect()
        };
        let text = String::from_utf8_lossy(&host).into_owned() + &inside;
        let paths = [bundle, root.path().to_str().unwrap(), &id];
        let leaks: Vec<String> = paths
            .into_iter()
            .filter(|p| text.contains(p))
            .map(|p| p.replace(&id, "ID"))
            .collect();
        seen.push((normalise(&host), normalise(inside.as_bytes()), leaks));
    }
    assert_eq!(seen[1].0, ["RUNTIME", "init"], "runc's init on the host");
    assert_eq!(seen[1].1, seen[1].0, "runc's init seen from the container");
    assert!(seen[1].2.is_empty(), "runc shows {:?}", seen[1].2);
    assert_eq!(seen[0], seen[1], "rune vs runc");
}

/// The quoted words of a message (`"proc"`, `"/etc/passwd"`).
fn quoted(msg: &str) -> Vec<String> {
    msg.split('"')
        .skip(1)
        .step_by(2)
        .map(|w| format!("\"{w}\""))
        .collect()
}

/// Two failures whose error lines say more with runc than rune said: runc's line names
/// the mount of a /proc on a file, and the failing poststop hook (`#index` and its exit
/// status). rune's lines must carry those facts, taken from runc's line.
#[test]
fn error_lines_carry_the_facts_runcs_lines_carry() {
    if skip("error line facts") {
        return;
    }
    // /proc on a file: create fails.
    let mut b = Bundle::new(&["true"]);
    b.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/etc/passwd", "type": "proc", "source": "proc"}));
    b.save();
    let mut lines = Vec::new();
    for rt in [RUNC, RUNE] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("procfile");
        let res = runtime(
            rt,
            root.path(),
            &["create", "--bundle", b.path().to_str().unwrap(), &id],
        );
        lines.push(failure(&res));
        if rt == RUNE {
            assert!(leftovers(root.path(), &id).is_empty());
        }
        runtime(rt, root.path(), &["delete", "--force", &id]);
    }
    let (runc, rune) = (&lines[0], &lines[1]);
    let rule = "must be mounted on ordinary directory";
    let facts = quoted(&runc.2);
    assert!(
        facts.contains(&"\"/etc/passwd\"".to_string()),
        "runc: {runc:?}"
    );
    assert!(runc.2.contains(rule), "runc: {runc:?}");
    assert_eq!((rune.0, rune.1), (runc.0, runc.1), "rune: {rune:?}");
    for fact in facts.iter().map(String::as_str).chain([rule]) {
        assert!(
            rune.2.contains(fact),
            "rune's line lacks {fact}: {:?}",
            rune.2
        );
    }

    // A failing poststop hook (the second) on delete: the container is gone and the
    // delete exits as runc's does, its error line naming the hook and its status.
    let mut b = Bundle::new(&["true"]);
    b.spec["hooks"] = json!({"poststop": [{"path": "/bin/true"}, {"path": "/bin/false"}]});
    b.save();
    let mut seen = Vec::new();
    for rt in [RUNC, RUNE] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("poststop");
        let bundle = b.path().to_str().unwrap();
        assert_eq!(
            runtime(rt, root.path(), &["create", "--bundle", bundle, &id]).0,
            0
        );
        assert_eq!(runtime(rt, root.path(), &["start", &id]).0, 0);
        let stopped = wait_until(Duration::from_secs(10), || {
            let (_, state, _) = runtime(rt, root.path(), &["state", &id]);
            state.contains("\"stopped\"")
        });
        assert!(stopped, "{rt}: the container did not stop");
        let (code, _, err) = runtime(rt, root.path(), &["delete", &id]);
        let (_, list, _) = runtime(rt, root.path(), &["list", "-q"]);
        seen.push((code, error_messages(&err), list.contains(&id)));
        if rt == RUNE {
            assert!(leftovers(root.path(), &id).is_empty());
        }
    }
    let (runc, rune) = (&seen[0], &seen[1]);
    assert_eq!(runc.0, 0, "runc delete: {runc:?}");
    assert!(!runc.2, "runc deleted it");
    assert_eq!(runc.1.len(), 1, "runc: one error line: {runc:?}");
    let facts = ["hook #1", "exit status 1"];
    for fact in facts {
        assert!(runc.1[0].contains(fact), "runc's line: {runc:?}");
    }
    assert_eq!(
        (rune.0, rune.1.len(), rune.2),
        (runc.0, 1, runc.2),
        "rune: {rune:?}"
    );
    for fact in facts {
        assert!(
            rune.1[0].contains(fact),
            "rune's line lacks {fact}: {rune:?}"
        );
    }
}

/// Mount and rlimit failures at create: runc's line names the mount (`error mounting
/// "<source>" to rootfs at "<destination>"`) or the limit (`error setting rlimit type
/// N`); rune's must carry the same facts, taken from runc's line, in one error line, and
/// leave nothing behind.
#[test]
fn mount_and_rlimit_failures_name_what_runcs_lines_name() {
    if skip("mount and rlimit error lines") {
        return;
    }
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cases: Vec<(&str, serde_json::Value)> = vec![
        (
            "bind source missing",
            json!({"mounts": [{"destination": "/tmp", "type": "bind",
                               "source": "/nonexistent/src", "options": ["rbind"]}]}),
        ),
        (
            "tmpfs option refused",
            json!({"mounts": [{"destination": "/tmp", "type": "tmpfs",
                               "source": "tmpfs", "options": ["size=abc"]}]}),
        ),
        (
            "directory onto a file",
            json!({"mounts": [{"destination": "/etc/passwd", "type": "bind",
                               "source": "/etc", "options": ["rbind"]}]}),
        ),
        (
            "tmpfs onto a file",
            json!({"mounts": [{"destination": "/etc/passwd", "type": "tmpfs",
                               "source": "tmpfs"}]}),
        ),
        (
            "tmpfs under a file",
            json!({"mounts": [{"destination": "/etc/passwd/sub", "type": "tmpfs",
                               "source": "tmpfs"}]}),
        ),
        (
            // podman's case in the runtime reference: above the kernel's nr_open.
            "rlimit above the hard limit",
            json!({"rlimits": [{"type": "RLIMIT_NOFILE",
                                "hard": nr_open + 1, "soft": nr_open + 1}]}),
        ),
    ];
    for (what, change) in cases {
        let mut b = Bundle::new(&["true"]);
        if let Some(mounts) = change.get("mounts") {
            b.spec["mounts"]
                .as_array_mut()
                .unwrap()
                .extend(mounts.as_array().unwrap().iter().cloned());
        }
        if let Some(rlimits) = change.get("rlimits") {
            b.spec["process"]["rlimits"] = rlimits.clone();
        }
        b.save();
        let mut lines = Vec::new();
        for rt in [RUNC, RUNE] {
            let root = tempfile::tempdir().unwrap();
            let id = unique_id("mnterr");
            let res = runtime(
                rt,
                root.path(),
                &["create", "--bundle", b.path().to_str().unwrap(), &id],
            );
            lines.push(failure(&res));
            if rt == RUNE {
                assert!(leftovers(root.path(), &id).is_empty(), "{what}");
            }
            runtime(rt, root.path(), &["delete", "--force", &id]);
        }
        let (runc, rune) = (&lines[0], &lines[1]);
        assert_ne!(runc.0, 0, "{what}: runc created it: {runc:?}");
        // The fact runc states: the mount with its quoted source and destination, or
        // the limit's number.
        let fact = if let Some(at) = runc.2.find("error mounting ") {
            let rest = &runc.2[at..];
            let end = rest.find("\": ").map_or(rest.len(), |e| e + 1);
            rest[..end].to_string()
        } else {
            let at = runc.2.find("error setting rlimit type ");
            let at = at.unwrap_or_else(|| panic!("{what}: runc's line: {runc:?}"));
            runc.2[at..].split(':').next().unwrap().to_string()
        };
        assert!(rune.0 != 0 && rune.1, "{what}: one error line: {rune:?}");
        // The cause runc ends with ("not a directory"), and no path-resolution dump.
        let cause = runc.2.rsplit(": ").next().unwrap().to_lowercase();
        assert!(
            rune.2.to_lowercase().contains(&cause)
                && !rune.2.contains("openat(")
                && !rune.2.contains("openat2("),
            "{what}: rune's line lacks {cause:?} or dumps: {:?}",
            rune.2
        );
        assert!(
            rune.2.contains(&fact),
            "{what}: rune's line lacks {fact:?}: {:?} (runc: {:?})",
            rune.2,
            runc.2
        );
    }
}

/// Usage errors end as runc's do: status 1 and a `level=error` line naming what was
/// wrong (runc prints its help text around it; rune's stderr is the one line). With no
/// command at all both print their help on stdout and exit 0.
#[test]
fn usage_errors_end_as_runcs_in_one_error_line() {
    if skip("usage errors") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    // (arguments, a word runc's error line holds that rune's must hold too)
    let cases: [(&[&str], &str); 4] = [
        (&["--bogus", "list"], "bogus"),
        (&["run", "--bogus", "c1"], "bogus"),
        (&["kill"], "kill"),
        (&["state", "a", "b"], "state"),
    ];
    for (args, word) in cases {
        let runc = runtime(RUNC, root.path(), args);
        let rune = runtime(RUNE, root.path(), args);
        let runc_msg = error_messages(&runc.2).pop().unwrap_or_default();
        assert!(runc_msg.contains(word), "runc {args:?}: {runc:?}");
        let (code, one, msg) = failure(&rune);
        assert_eq!(code, runc.0, "rune {args:?}: {rune:?}");
        assert!(one, "rune {args:?}: not one error line: {:?}", rune.2);
        assert!(msg.contains(word), "rune {args:?}: {msg}");
        assert!(rune.1.is_empty(), "rune {args:?} printed {:?}", rune.1);
    }
    for rt in [RUNC, RUNE] {
        let (code, out, err) = runtime(rt, root.path(), &[]);
        assert_eq!(code, 0, "{rt}: {err}");
        assert!(
            out.contains("USAGE") || out.contains("Usage"),
            "{rt}: {out}"
        );
        assert!(err.is_empty(), "{rt}: {err}");
    }
}
