//! `rune update` as runc 1.1.5's (Debian's, which `make test` installs): the same
//! busybox bundle runs under both, each with its own state root and cgroupsPath, takes
//! the same updates one after another, and after each the cgroup v1 files the two
//! containers have must be the same, and so must success or refusal. runc's writes stop
//! at the first failing file, in its order of subsystems and files, and it leaves what it
//! wrote; what runc's refusal line names, rune's one line names too.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cgroups::*;
use common::parity::RUNC;
use common::*;
use serde_json::json;

fn skip(test: &str) -> bool {
    if !(root_or_skip(test) && tool_or_skip(test, RUNC)) {
        return true;
    }
    let v1 = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(":memory:"));
    if !v1 {
        println!("skipped: {test} compares cgroup v1 files; this host has no v1 hierarchies");
    }
    !v1
}

/// `rt --root ROOT ARGS…` with `stdin` on its standard input; (code, stdout, stderr).
fn runtime_with(
    rt: &str,
    root: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (i32, String, String) {
    let mut c = Command::new(rt);
    c.arg("--root").arg(root).args(args);
    let Some(input) = stdin else {
        return run(&mut c);
    };
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let status = child.wait().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&read_back(out)).into_owned(),
        String::from_utf8_lossy(&read_back(err)).into_owned(),
    )
}

fn runtime(rt: &str, root: &Path, args: &[&str]) -> (i32, String, String) {
    runtime_with(rt, root, args, None)
}

/// A container of `rt` started from `b` with its own root and cgroupsPath.
struct Running {
    rt: &'static str,
    root: tempfile::TempDir,
    id: String,
    pid: String,
}

impl Running {
    /// Runs `b` detached under `rt` (`create` only, when `start` is false).
    fn new(rt: &'static str, b: &mut Bundle, start: bool) -> Self {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("update");
        b.spec["linux"]["cgroupsPath"] = json!(format!("{id}-cg"));
        b.save();
        let pid_file = root.path().join("pid");
        let verb = if start { "run" } else { "create" };
        let mut args = vec![verb];
        if start {
            args.push("-d");
        }
        let bundle = b.path().to_str().unwrap().to_string();
        args.extend([
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--bundle",
            &bundle,
            &id,
        ]);
        let (code, _, err) = runtime(rt, root.path(), &args);
        assert_eq!(code, 0, "{rt} {verb}: {err}");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_string();
        Running { rt, root, id, pid }
    }

    fn update(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let mut all = vec!["update"];
        all.extend(args);
        all.push(&self.id);
        runtime_with(self.rt, self.root.path(), &all, stdin)
    }

    fn status(&self) -> String {
        let (_, out, _) = runtime(self.rt, self.root.path(), &["state", &self.id]);
        serde_json::from_str::<serde_json::Value>(&out)
            .map(|v| v["status"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }

    /// The settings of the container's cgroups: every file of every hierarchy that is
    /// readable and writable (a setting), and `devices.list`; counters, process lists
    /// and pressure files left out. Keyed `controllers/file` as /proc/PID/cgroup names
    /// the hierarchy.
    fn cgroup_files(&self) -> BTreeMap<String, String> {
        let (lines, dirs) = cgroups_of(&self.pid);
        assert!(
            !lines.is_empty(),
            "{}: the container's init is gone",
            self.rt
        );
        let mut files = BTreeMap::new();
        for (line, dir) in lines.lines().zip(&dirs) {
            let key = line.split(':').nth(1).unwrap();
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(meta) = entry.metadata() else { continue };
                let setting = meta.is_file() && meta.permissions().mode() & 0o600 == 0o600;
                let skipped = ["tasks", "cgroup.procs", "cgroup.threads", "cpuacct.usage"]
                    .contains(&name.as_str())
                    || name.ends_with("failcnt")
                    || name.ends_with("max_usage_in_bytes")
                    || name.ends_with(".pressure");
                if (setting && !skipped) || name == "devices.list" {
                    let mut value = std::fs::read_to_string(entry.path())
                        .unwrap_or_else(|e| format!("<unreadable: {e}>"));
                    if name == "devices.list" {
                        // The kernel lists rules in the order they were added; the
                        // set is the setting.
                        let mut rules: Vec<&str> = value.lines().collect();
                        rules.sort_unstable();
                        value = rules.join("\n");
                    }
                    files.insert(format!("{key}/{name}"), value);
                }
            }
        }
        files
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        runtime(self.rt, self.root.path(), &["delete", "--force", &self.id]);
        if self.rt == RUNE && !std::thread::panicking() {
            let clean = wait_until(Duration::from_secs(5), || {
                leftovers(self.root.path(), &self.id).is_empty()
            });
            assert!(clean, "{:?}", leftovers(self.root.path(), &self.id));
        }
    }
}

/// The lines of `stderr` at `level` (logrus text), their messages unquoted.
fn messages(stderr: &str, level: &str) -> Vec<String> {
    let marker = format!(" level={level} msg=");
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l.split_once(marker.as_str())?.1).ok())
        .collect()
}

/// What runc's refusal `msg` states, which rune's line must state too: its first clause
/// (up to `: ` or ` (`) without quotes, and the names of the cgroup files it names.
fn facts(msg: &str) -> Vec<String> {
    let head = msg.split(": ").next().unwrap();
    let head = head.split(" (").next().unwrap().replace(['"', '\''], "");
    let files = msg
        .split([' ', ':'])
        .filter(|w| w.starts_with("/sys/fs/cgroup/"))
        .map(|w| {
            Path::new(w)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        });
    std::iter::once(head).chain(files).collect()
}

/// One update: its arguments (before the id), standard input, and whether runc's line
/// states facts rune's must share (not for messages of Go's own parsers).
struct Step {
    args: Vec<String>,
    stdin: Option<String>,
    facts: bool,
}

fn step(args: &[&str]) -> Step {
    Step {
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: None,
        facts: true,
    }
}

/// Applies `steps` to a runc and a rune container of `b` (created only when `start` is
/// false); returns every difference found, each naming its step. Panics unless runc
/// both took and refused some of the steps (else the comparison would prove little).
fn compare(b: &mut Bundle, start: bool, steps: &[Step]) -> Vec<String> {
    let runc = Running::new(RUNC, b, start);
    let rune = Running::new(RUNE, b, start);
    let mut found = Vec::new();
    let mut refused = 0;
    let (before_c, before_r) = (runc.cgroup_files(), rune.cgroup_files());
    diff("(after create)", &before_c, &before_r, &mut found);
    for s in steps {
        let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
        let what = format!("update {args:?}");
        let c = runc.update(&args, s.stdin.as_deref());
        let r = rune.update(&args, s.stdin.as_deref());
        let (files_c, files_r) = (runc.cgroup_files(), rune.cgroup_files());
        if (c.0 == 0) != (r.0 == 0) {
            found.push(format!(
                "{what}: runc exit {} ({}), rune exit {} ({})",
                c.0,
                c.2.trim(),
                r.0,
                r.2.trim()
            ));
        }
        diff(&what, &files_c, &files_r, &mut found);
        if c.0 == 0 {
            let (wc, wr) = (messages(&c.2, "warning"), messages(&r.2, "warning"));
            if wc != wr {
                found.push(format!("{what}: warnings runc {wc:?}, rune {wr:?}"));
            }
            continue;
        }
        refused += 1;
        let lines: Vec<&str> = r.2.lines().collect();
        let rune_msg = messages(&r.2, "error");
        if lines.len() != 1 || rune_msg.len() != 1 {
            found.push(format!(
                "{what}: rune's refusal is not one error line: {:?}",
                r.2
            ));
            continue;
        }
        let runc_msg = messages(&c.2, "error");
        let runc_msg = runc_msg.last().expect("runc's error line");
        if s.facts {
            for fact in facts(runc_msg) {
                if !rune_msg[0].contains(&fact) {
                    found.push(format!(
                        "{what}: rune's line {:?} lacks {fact:?} (runc: {runc_msg:?})",
                        rune_msg[0]
                    ));
                }
            }
        }
    }
    println!("{} updates, {refused} refused by runc", steps.len());
    assert!(
        refused > 0 && refused < steps.len(),
        "runc refused {refused} of {} updates",
        steps.len()
    );
    found
}

fn diff(
    what: &str,
    runc: &BTreeMap<String, String>,
    rune: &BTreeMap<String, String>,
    found: &mut Vec<String>,
) {
    for key in runc
        .keys()
        .chain(rune.keys().filter(|k| !runc.contains_key(*k)))
    {
        let (c, r) = (runc.get(key), rune.get(key));
        if c != r {
            found.push(format!("{what}: {key}: runc {c:?}, rune {r:?}"));
        }
    }
}

/// A bundle whose spec sets limits the updates must keep or change as runc does.
fn limited_bundle() -> Bundle {
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.spec["linux"]["resources"]["memory"] =
        json!({"limit": 256 << 20, "reservation": 128 << 20, "disableOOMKiller": true});
    b.spec["linux"]["resources"]["cpu"] = json!({"shares": 512});
    b.spec["linux"]["resources"]["pids"] = json!({"limit": 200});
    b.save();
    b
}

/// Every flag of `runc update`, with values the kernel takes and values it refuses,
/// singly and together across subsystems.
#[test]
fn update_flags_write_what_runc_writes() {
    if skip("update flags") {
        return;
    }
    let steps: Vec<Step> = [
        &["--memory", "64m"][..],
        &["--memory-swap", "32m"],
        &["--memory", "1k"],
        &["--memory-swap", "128m"],
        &["--memory", "96m", "--memory-swap", "-1"],
        &["--memory", "-1"],
        &["--memory", "48MiB", "--memory-swap", "1.5g"],
        &["--memory", "100 MB"],
        &["--memory-reservation", "16m"],
        &["--memory-reservation", "-1"],
        &["--kernel-memory", "10m"],
        &["--kernel-memory-tcp", "10m"],
        &["--memory", "0"],
        &["--cpu-share", "1"],
        &["--cpu-share", "999999999"],
        &["--cpu-share", "300"],
        &["--cpu-period", "50000"],
        &["--cpu-quota", "20000"],
        &["--cpu-quota", "-1"],
        &["--cpu-period", "500", "--cpu-quota", "30000"],
        &["--cpu-period", "80000", "--cpu-quota", "40000"],
        &["--cpu-quota", "0", "--cpu-period", "0"],
        &["--cpu-rt-period", "500000"],
        &["--cpu-rt-runtime", "1000"],
        &["--cpu-rt-period", "400000", "--cpu-rt-runtime", "999999999"],
        &["--cpuset-cpus", "0"],
        &["--cpuset-cpus", "4095"],
        &["--cpuset-mems", "0"],
        &["--cpuset-mems", "63"],
        &["--cpuset-cpus", "0", "--cpuset-mems", "63"],
        &["--pids-limit", "10"],
        &["--pids-limit", "0"],
        &["--pids-limit", "-1"],
        &["--blkio-weight", "500"],
        &["--blkio-weight", "5000"],
        &["--memory", "2k", "--pids-limit", "20", "--cpu-share", "700"],
        &[
            "--cpuset-cpus",
            "0",
            "--memory",
            "2k",
            "--blkio-weight",
            "600",
        ],
        &[
            "--pids-limit",
            "30",
            "--blkio-weight",
            "5000",
            "--cpu-share",
            "800",
        ],
        &["--memory", "x"],
        &["--memory", "-5"],
        &["--memory-swap", "1.2.3m"],
        &["--cpu-period", "x"],
        &["--cpu-quota", "1.5"],
        &["--cpu-share", "-3"],
    ]
    .iter()
    .map(|a| step(a))
    .collect();
    let mut b = limited_bundle();
    let found = compare(&mut b, true, &steps);
    assert!(
        found.is_empty(),
        "{} differences:\n{}",
        found.len(),
        found.join("\n")
    );
}

/// `-r FILE` and `-r -`: runc takes a `LinuxResources` document's memory, cpu, blockIO
/// weight and pids limit, ignores its other fields and every other flag, and refuses
/// `unified` on cgroup v1 and a document that is not JSON.
#[test]
fn update_resources_documents_are_read_as_by_runc() {
    if skip("update -r") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, doc: serde_json::Value| -> String {
        let p: PathBuf = dir.path().join(name);
        std::fs::write(&p, doc.to_string()).unwrap();
        p.to_str().unwrap().to_string()
    };
    let full = file(
        "full.json",
        json!({"memory": {"limit": 100 << 20, "swap": 200 << 20, "reservation": 50 << 20},
               "cpu": {"shares": 256, "period": 60000, "quota": 30000, "cpus": "0", "mems": "0"},
               "blockIO": {"weight": 300}, "pids": {"limit": 50}}),
    );
    let ignored = file(
        "ignored.json",
        json!({"devices": [{"allow": false, "access": "rwm"}],
               "memory": {"swappiness": 10, "disableOOMKiller": false, "kernel": 1 << 20},
               "cpu": {"idle": 1, "realtimeRuntime": 0},
               "network": {"classID": 5},
               "blockIO": {"throttleReadBpsDevice": [{"major": 1, "minor": 3, "rate": 1000}]},
               "pids": {"limit": 40}}),
    );
    let zeros = file(
        "zeros.json",
        json!({"memory": {"limit": 0, "swap": 0, "reservation": 0},
               "cpu": {"shares": 0, "period": 0, "quota": 0, "cpus": "", "mems": ""},
               "blockIO": {"weight": 0}, "pids": {"limit": 0}}),
    );
    let minus = file(
        "minus.json",
        json!({"memory": {"limit": -1}, "pids": {"limit": -1}}),
    );
    let unified = file(
        "unified.json",
        json!({"unified": {"pids.max": "7"}, "pids": {"limit": 9}}),
    );
    let refused = file(
        "refused.json",
        json!({"memory": {"limit": 1024}, "pids": {"limit": 8}}),
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let mut steps: Vec<Step> = vec![
        step(&["-r", &full]),
        step(&[
            "-r",
            &full,
            "--pids-limit",
            "7",
            "--memory",
            "80m",
            "--cpu-share",
            "900",
        ]),
        step(&["-r", &ignored]),
        step(&["-r", &zeros]),
        step(&["-r", &minus]),
        step(&["-r", &unified]),
        step(&["-r", &refused]),
        step(&["-r", dir.path().join("missing.json").to_str().unwrap()]),
    ];
    let mut not_json = step(&["-r", bad.to_str().unwrap()]);
    not_json.facts = false;
    steps.push(not_json);
    let mut stdin = step(&["-r", "-", "--pids-limit", "3"]);
    stdin.stdin = Some(json!({"pids": {"limit": 60}, "cpu": {"shares": 128}}).to_string());
    steps.push(stdin);
    let mut b = limited_bundle();
    let found = compare(&mut b, true, &steps);
    assert!(
        found.is_empty(),
        "{} differences:\n{}",
        found.len(),
        found.join("\n")
    );
}

/// A created container takes updates as a running one; a paused one too and stays
/// paused; a stopped one is refused.
#[test]
fn update_of_created_paused_and_stopped_containers_as_runc() {
    if skip("update states") {
        return;
    }
    let steps = [
        step(&["--memory", "64m", "--pids-limit", "10"]),
        step(&["--cpu-share", "1"]),
    ];
    let mut b = limited_bundle();
    let found = compare(&mut b, false, &steps);
    assert!(found.is_empty(), "created: {}", found.join("\n"));

    let mut seen = Vec::new();
    for rt in [RUNC, RUNE] {
        let c = Running::new(rt, &mut b, true);
        assert_eq!(runtime(rt, c.root.path(), &["pause", &c.id]).0, 0);
        let paused = c.update(&["--pids-limit", "12"], None).0;
        let after = (c.status(), c.cgroup_files().get("pids/pids.max").cloned());
        assert_eq!(runtime(rt, c.root.path(), &["resume", &c.id]).0, 0);
        let pid: i32 = c.pid.parse().unwrap();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let stopped = wait_until(Duration::from_secs(10), || c.status() == "stopped");
        assert!(stopped, "{rt}: the container did not stop");
        let (code, _, err) = c.update(&["--pids-limit", "13"], None);
        seen.push((paused, after, code == 0, messages(&err, "error")));
    }
    let (runc, rune) = (&seen[0], &seen[1]);
    assert_eq!(
        runc.1,
        ("paused".to_string(), Some("12\n".to_string())),
        "runc"
    );
    assert!(!runc.2, "runc refuses a stopped container");
    assert_eq!(
        (rune.0, &rune.1, rune.2),
        (runc.0, &runc.1, runc.2),
        "rune: {rune:?}"
    );
    assert_eq!(rune.3, runc.3, "the refusal of a stopped container");
}

/// `update` takes runc's spelling and flags: `--cpu-share`, the realtime pair, and the
/// Intel RDT schemata, refused in one line where the host has no resctrl, as by runc.
#[test]
fn update_takes_runcs_flags() {
    if skip("update flags") {
        return;
    }
    let b = Bundle::new(&["sleep", "100"]);
    let mut seen = Vec::new();
    for rt in [RUNE, RUNC] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("update");
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &["run", "-d", "--bundle", b.path().to_str().unwrap(), &id],
        );
        assert_eq!(code, 0, "{rt}: {err}");
        let share = runtime(rt, root.path(), &["update", "--cpu-share", "512", &id]);
        let realtime = runtime(
            rt,
            root.path(),
            &[
                "update",
                "--cpu-rt-period",
                "1000000",
                "--cpu-rt-runtime",
                "0",
                &id,
            ],
        );
        let l3 = runtime(
            rt,
            root.path(),
            &["update", "--l3-cache-schema", "L3:0=f", &id],
        );
        let mba = runtime(
            rt,
            root.path(),
            &["update", "--mem-bw-schema", "MB:0=70", &id],
        );
        seen.push([share.0 == 0, realtime.0 == 0, l3.0 == 0, mba.0 == 0]);
        if rt == RUNE && !Path::new("/sys/fs/resctrl/schemata").exists() {
            assert_eq!(l3.2.lines().count(), 1, "{}", l3.2);
            assert!(l3.2.contains("resctrl"), "{}", l3.2);
        }
        runtime(rt, root.path(), &["delete", "--force", &id]);
    }
    assert!(seen[1][0], "runc update --cpu-share");
    assert_eq!(seen[0], seen[1], "rune vs runc: share, realtime, l3, mba");
}
