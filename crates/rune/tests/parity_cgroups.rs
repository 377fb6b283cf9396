//! cgroup placement as with runc: where a container without (or with a relative)
//! `cgroupsPath` lands in every hierarchy, seen from the caller's cgroups, and how the
//! lifecycle commands find it again from the same or another cgroup. Each case runs the
//! same bundle under rune and under Debian's runc; the expected values are runc's.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cgroups::*;
use common::parity::*;
use common::*;
use serde_json::json;

/// Without `cgroupsPath` runc puts the container at its id below the caller's own cgroup
/// of every hierarchy (a relative path likewise; libcontainer/cgroups/fs/paths.go),
/// joining `name=systemd` and a hybrid host's cgroup2 too; the container sees those paths
/// unless it has a cgroup namespace. `delete` removes the container's own cgroups (runc
/// leaves the parents a relative path made). rune must do the same.
#[test]
fn cgroups_nest_under_the_callers_cgroup_as_with_runc() {
    if skip("cgroup placement") {
        return;
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let out = out_dir();
    let b = Bundle::new(&["sh", "-c", "cat /proc/self/cgroup >/tmp/r; exec sleep 100"])
        .bind(out.path(), "/tmp");
    let tag = unique_id("nest");
    for (path, cgroupns) in [
        (None, false),
        (Some(format!("{tag}/leaf")), false),
        (None, true),
    ] {
        let mut b = Bundle {
            dir: tempfile::tempdir().unwrap(),
            spec: b.spec.clone(),
        };
        if let Some(p) = &path {
            b.spec["linux"]["cgroupsPath"] = json!(p);
        }
        let ns = b.spec["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "cgroup");
        if cgroupns {
            ns.push(json!({"type": "cgroup"}));
        }
        b.save();
        let mut seen = Vec::new();
        for rt in [RUNE, RUNC] {
            let _ = std::fs::remove_file(out.path().join("r"));
            let root = tempfile::tempdir().unwrap();
            let id = unique_id("nested");
            let pid_file = root.path().join("pid");
            let bundle = b.path().to_str().unwrap();
            let args = [
                "run",
                "-d",
                "--pid-file",
                pid_file.to_str().unwrap(),
                "--bundle",
                bundle,
                &id,
            ];
            let (code, _, err) = runtime(rt, root.path(), &args);
            assert_eq!(code, 0, "{rt} {path:?}: {err}");
            let pid = std::fs::read_to_string(&pid_file).unwrap();
            let r = out.path().join("r");
            let wrote = wait_until(Duration::from_secs(10), || {
                std::fs::metadata(&r).map(|m| m.len() > 0).unwrap_or(false)
            });
            let (host, dirs) = cgroups_of(pid.trim());
            let inside = std::fs::read_to_string(&r).unwrap_or_default();
            let (code, _, err) = runtime(rt, root.path(), &["delete", "--force", &id]);
            assert!(
                wrote,
                "{rt} {path:?}: the container wrote no /proc/self/cgroup (10 s)"
            );
            assert_eq!(code, 0, "{rt} delete: {err}");
            let kept: Vec<_> = dirs.iter().filter(|d| d.exists()).cloned().collect();
            let parents: Vec<_> = dirs.iter().map(|d| d.parent().unwrap().is_dir()).collect();
            if path.is_some() {
                // runc leaves the parents a relative path made; the test removes them.
                for d in &dirs {
                    let _ = std::fs::remove_dir(d.parent().unwrap());
                }
            }
            seen.push((
                host.replace(&id, "ID"),
                inside.replace(&id, "ID"),
                parents,
                kept,
            ));
        }
        // What runc did is what the spec and runc's source say: `ID` (or the relative
        // path) below the test's own cgroup in every hierarchy.
        let inner = path.clone().unwrap_or("ID".into());
        let expected: String = own
            .lines()
            .map(|l| {
                let (head, p) = l.rsplit_once(':').unwrap();
                format!("{head}:{}\n", Path::new(p).join(&inner).display())
            })
            .collect();
        assert_eq!(seen[1].0, expected, "runc's placement, {path:?}");
        assert_eq!(seen[0].0, seen[1].0, "rune's placement, {path:?}");
        assert_eq!(seen[0].1, seen[1].1, "inside, {path:?} cgroupns {cgroupns}");
        assert_eq!(seen[1].3, Vec::<std::path::PathBuf>::new(), "runc left");
        assert_eq!(seen[0].3, seen[1].3, "rune left, {path:?}");
        assert_eq!(seen[0].2, seen[1].2, "parents left, {path:?}");
        assert!(path.is_none_or(|p| p.starts_with(&tag)));
    }
}

/// A container created from a caller that sits in a sub-cgroup of every hierarchy (a
/// hybrid host's cgroup2 included) lands where runc puts it: below the caller in each v1
/// hierarchy, and from the root of the hybrid cgroup2, where runc's `GetOwnCgroupPath("")`
/// starts (libcontainer/cgroups/v1_utils.go).
#[test]
fn a_caller_in_sub_cgroups_places_the_container_as_runc_does() {
    if skip("cgroup placement from a sub-cgroup") {
        return;
    }
    let out = out_dir();
    let mut b =
        Bundle::new(&["sh", "-c", "cat /proc/self/cgroup >/tmp/r"]).bind(out.path(), "/tmp");
    b.spec["linux"]
        .as_object_mut()
        .unwrap()
        .remove("cgroupsPath");
    let ns = b.spec["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "cgroup");
    b.save();
    let caller = OtherCgroup::new();
    let caller_lines = {
        // what /proc/self/cgroup says inside the caller's cgroups
        let mut cat = Command::new("cat");
        cat.arg("/proc/self/cgroup");
        let (code, lines, err) = caller.run_command(cat);
        assert_eq!(code, 0, "{err}");
        lines
    };
    let mut seen = Vec::new();
    for rt in [RUNE, RUNC] {
        let _ = std::fs::remove_file(out.path().join("r"));
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("subcg");
        let bundle = b.path().to_str().unwrap();
        let (code, _, err) = caller.run(rt, root.path(), &["run", "--bundle", bundle, &id]);
        let inside = std::fs::read_to_string(out.path().join("r")).unwrap_or_default();
        let _ = runtime(rt, root.path(), &["delete", "--force", &id]);
        let dirs: Vec<_> = inside.lines().map(cgroup_dir).collect();
        let kept: Vec<_> = dirs.iter().filter(|d| d.exists()).cloned().collect();
        for d in &kept {
            let _ = std::fs::remove_dir(d);
        }
        seen.push((code, err, inside.replace(&id, "ID"), kept));
    }
    let hybrid = Path::new("/sys/fs/cgroup/unified").is_dir();
    let expected: String = caller_lines
        .lines()
        .map(|l| {
            let (head, p) = l.rsplit_once(':').unwrap();
            let from = if hybrid && head == "0:" { "/" } else { p };
            format!("{head}:{}\n", Path::new(from).join("ID").display())
        })
        .collect();
    assert_eq!(
        (seen[1].0, seen[1].2.as_str()),
        (0, expected.as_str()),
        "runc: {}",
        seen[1].1
    );
    assert_eq!(
        seen[1].3,
        Vec::<std::path::PathBuf>::new(),
        "runc left cgroups"
    );
    assert_eq!(seen[0], seen[1], "rune vs runc");
}

/// `ps`, `pause`/`resume` and `update` find the cgroups of a container without
/// `cgroupsPath` where runc would: below the caller's own cgroups.
#[test]
fn lifecycle_commands_find_the_nested_cgroups() {
    if skip("nested cgroup commands") {
        return;
    }
    let mut b = Bundle::new(&["sleep", "100"]);
    b.spec["linux"]
        .as_object_mut()
        .unwrap()
        .remove("cgroupsPath");
    b.save();
    let mut seen = Vec::new();
    for rt in [RUNE, RUNC] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("nestcmd");
        let pid_file = root.path().join("pid");
        let bundle = b.path().to_str().unwrap();
        let args = [
            "run",
            "-d",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--bundle",
            bundle,
            &id,
        ];
        let (code, _, err) = runtime(rt, root.path(), &args);
        assert_eq!(code, 0, "{rt}: {err}");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_string();
        let (_, dirs) = cgroups_of(&pid);
        let dir = |ctrl: &str| {
            dirs.iter()
                .find(|d| d.starts_with(Path::new("/sys/fs/cgroup").join(ctrl)))
                .cloned()
                .unwrap()
        };
        let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let ps = runtime(rt, root.path(), &["ps", "--format", "json", &id]);
        let paused = runtime(rt, root.path(), &["pause", &id]).0;
        let frozen = read(dir("freezer").join("freezer.state"));
        let resumed = runtime(rt, root.path(), &["resume", &id]).0;
        let thawed = read(dir("freezer").join("freezer.state"));
        let update = runtime(rt, root.path(), &["update", "--memory", "67108864", &id]);
        let limit = read(dir("memory").join("memory.limit_in_bytes"));
        let nested = dir("memory").parent() == memory_cgroup(std::process::id()).as_deref();
        seen.push((
            nested,
            ps.0,
            ps.1.trim() == format!("[{pid}]"),
            paused,
            frozen,
            resumed,
            thawed,
            update.0,
            limit,
        ));
        runtime(rt, root.path(), &["delete", "--force", &id]);
        assert!(dirs.iter().all(|d| !d.exists()), "{rt} left cgroups");
    }
    assert!(seen[1].0, "runc nests the memory cgroup below the caller's");
    assert_eq!(seen[1].1, 0, "runc ps");
    assert!(seen[1].2, "runc ps lists the init");
    assert_eq!(seen[1].4, "FROZEN\n", "runc pause");
    assert_eq!(seen[1].8, "67108864\n", "runc update");
    assert_eq!(seen[0], seen[1], "rune vs runc");
}

/// runc keeps the resolved path of every hierarchy in its state, so a container created
/// without `cgroupsPath` is found by `ps`, `pause`, `resume`, `update`, `exec` and
/// `delete` run from any other cgroup: rune must find it where `create` put it.
#[test]
fn commands_from_another_cgroup_find_the_containers_cgroups_as_with_runc() {
    if skip("cgroups from another cgroup") {
        return;
    }
    let mut b = Bundle::new(&["sleep", "100"]);
    b.spec["linux"]
        .as_object_mut()
        .unwrap()
        .remove("cgroupsPath");
    let ns = b.spec["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "cgroup");
    b.save();
    let other = OtherCgroup::new();
    let mut seen = Vec::new();
    for rt in [RUNE, RUNC] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("othercg");
        let pid_file = root.path().join("pid");
        let bundle = b.path().to_str().unwrap();
        let args = [
            "run",
            "-d",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--bundle",
            bundle,
            &id,
        ];
        let (code, _, err) = runtime(rt, root.path(), &args);
        assert_eq!(code, 0, "{rt}: {err}");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_string();
        let (init, dirs) = cgroups_of(&pid);
        let dir = |ctrl: &str| {
            dirs.iter()
                .find(|d| d.starts_with(Path::new("/sys/fs/cgroup").join(ctrl)))
                .cloned()
                .unwrap()
        };
        let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let from_other = |args: &[&str]| other.run(rt, root.path(), args);
        let ps = from_other(&["ps", "--format", "json", &id]);
        let paused = from_other(&["pause", &id]).0;
        let frozen = read(dir("freezer").join("freezer.state"));
        let resumed = from_other(&["resume", &id]).0;
        let thawed = read(dir("freezer").join("freezer.state"));
        let update = from_other(&["update", "--memory", "67108864", &id]).0;
        let limit = read(dir("memory").join("memory.limit_in_bytes"));
        let exec = from_other(&["exec", &id, "cat", "/proc/self/cgroup"]);
        let delete = from_other(&["delete", "--force", &id]).0;
        let kept: Vec<_> = dirs.iter().filter(|d| d.exists()).cloned().collect();
        let left = leftovers(root.path(), &id);
        // Whatever the outcome, nothing stays: the init, then its cgroups.
        let _ = runtime(rt, root.path(), &["delete", "--force", &id]);
        if let Ok(p) = pid.parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for d in &kept {
            wait_until(Duration::from_secs(5), || std::fs::remove_dir(d).is_ok());
        }
        seen.push((
            (ps.0, ps.1.trim() == format!("[{pid}]")),
            (paused, frozen),
            (resumed, thawed),
            (update, limit),
            (exec.0, exec.1 == init),
            (delete, kept, left),
        ));
    }
    let runc = &seen[1];
    assert_eq!(runc.0, (0, true), "runc ps lists the init");
    assert_eq!(runc.1, (0, "FROZEN\n".into()), "runc pause");
    assert_eq!(runc.2, (0, "THAWED\n".into()), "runc resume");
    assert_eq!(runc.3, (0, "67108864\n".into()), "runc update");
    assert_eq!(runc.4, (0, true), "runc exec joins the init's cgroups");
    assert_eq!(runc.5, (0, vec![], vec![]), "runc delete leaves nothing");
    assert_eq!(seen[0], seen[1], "rune vs runc, from another cgroup");
}

/// `leftovers` sees a container's cgroup however deep the caller's cgroup is (a session
/// scope puts it at /sys/fs/cgroup/<ctrl>/user.slice/user-0.slice/session-N.scope/<id>).
#[test]
fn leftovers_finds_a_cgroup_at_any_depth() {
    if skip("leftovers depth") {
        return;
    }
    let id = unique_id("deep");
    let top = Path::new("/sys/fs/cgroup/pids").join(unique_id("deep-parent"));
    let leaf = top
        .join("user.slice/user-0.slice/session-1.scope/x")
        .join(&id);
    std::fs::create_dir_all(&leaf).unwrap();
    let found = leftovers(Path::new("/nonexistent"), &id);
    for d in leaf.ancestors().take_while(|d| d.starts_with(&top)) {
        std::fs::remove_dir(d).unwrap();
    }
    assert_eq!(found, vec![format!("cgroup {}", leaf.display())]);
}
