//! The JSON that tools decode from runc's output, compared with runc 1.1.5's (Debian's,
//! which `make test` installs): `events` (containerd's go-runc `Events`/`Stats`, one
//! `{"type","id","data"}` document per line) and `list -f json`. The same busybox bundle
//! runs under both runtimes, each with its own state root; the expected shape is what
//! runc prints on this host, never rune's own output.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::parity::*;
use common::*;
use serde_json::{json, Value};

const MEMORY_LIMIT: u64 = 256 << 20;
const PIDS_LIMIT: u64 = 200;

/// A long-running container with memory and pids limits, as the example.
fn limited_bundle(args: &[&str], memory: u64) -> Bundle {
    let mut b = Bundle::new(args);
    b.spec["linux"]["resources"]["memory"] = json!({ "limit": memory });
    b.spec["linux"]["resources"]["pids"] = json!({ "limit": PIDS_LIMIT });
    b.save();
    b
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_u64() => "unsigned",
        Value::Number(n) if n.is_i64() => "integer",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What Go's `omitempty` leaves out: the zero value.
fn zero_like(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(_) => false,
    }
}

/// Where `ours` differs in shape from `theirs`: a key on one side only (allowed only for
/// a zero value, which runc's `omitempty` drops and a busier cgroup may not have), or a
/// value of another JSON type. Objects are compared at every level.
fn shape_diff(path: &str, theirs: &Value, ours: &Value, out: &mut Vec<String>) {
    if kind(theirs) != kind(ours) && !(theirs.is_number() && ours.is_number()) {
        out.push(format!("{path}: runc has {theirs}, rune {ours}"));
        return;
    }
    if let (Value::Array(t), Value::Array(o)) = (theirs, ours) {
        if let (Some(t), Some(o)) = (t.first(), o.first()) {
            shape_diff(&format!("{path}[0]"), t, o, out);
        }
        return;
    }
    let (Value::Object(t), Value::Object(o)) = (theirs, ours) else {
        return;
    };
    let keys: BTreeSet<&String> = t.keys().chain(o.keys()).collect();
    for k in keys {
        let p = format!("{path}.{k}");
        match (t.get(k), o.get(k)) {
            (Some(t), Some(o)) => shape_diff(&p, t, o, out),
            (Some(v), None) if !zero_like(v) => out.push(format!("{p}: rune lacks it (runc {v})")),
            (None, Some(v)) if !zero_like(v) => out.push(format!("{p}: runc has no such key")),
            _ => {}
        }
    }
}

/// `rt events --stats` of a running `b`: every stdout line, parsed.
fn stats_events(rt: &str, b: &Bundle) -> (String, Vec<Value>) {
    let root = tempfile::tempdir().unwrap();
    let id = unique_id("ev");
    run_detached(rt, root.path(), b, &id);
    let (code, out, err) = runtime(rt, root.path(), &["events", "--stats", &id]);
    runtime(rt, root.path(), &["delete", "--force", &id]);
    assert_eq!(code, 0, "{rt} events --stats: {err}");
    let lines = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{rt}: {e}: {l}")))
        .collect();
    assert!(leftovers(root.path(), &id).is_empty());
    (id, lines)
}

/// `events --stats` prints one line, runc's envelope around runc's `types.Stats`: the
/// same keys at every level and the same JSON types as runc's own output for the same
/// bundle, and values that read the container's cgroups.
#[test]
fn events_stats_are_runcs_document() {
    if skip("events --stats") {
        return;
    }
    let b = limited_bundle(&["sleep", "1000"], MEMORY_LIMIT);
    let (_, theirs) = stats_events(RUNC, &b);
    let (id, ours) = stats_events(RUNE, &b);
    assert_eq!(theirs.len(), 1, "runc prints one event: {theirs:?}");
    assert_eq!(ours.len(), 1, "one line of JSON, as runc: {ours:?}");
    let (theirs, ours) = (&theirs[0], &ours[0]);

    let mut diffs = Vec::new();
    shape_diff("", theirs, ours, &mut diffs);
    assert!(
        diffs.is_empty(),
        "shape differs from runc's:\n{}",
        diffs.join("\n")
    );
    // memory.stat's counters, all of them, as runc copies them into `raw`.
    let raw_keys = |v: &Value| -> BTreeSet<String> {
        v["data"]["memory"]["raw"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(raw_keys(ours), raw_keys(theirs));

    assert_eq!(ours["type"], "stats");
    assert_eq!(ours["id"], id.as_str());
    let d = &ours["data"];
    assert!(d["pids"]["current"].as_u64().unwrap() >= 1, "{}", d["pids"]);
    assert_eq!(d["pids"]["limit"], PIDS_LIMIT);
    assert_eq!(d["memory"]["usage"]["limit"], MEMORY_LIMIT);
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0);
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap() > 0);
    let cpus = d["cpu"]["usage"]["percpu"].as_array().unwrap().len();
    assert_eq!(
        cpus,
        theirs["data"]["cpu"]["usage"]["percpu"]
            .as_array()
            .unwrap()
            .len()
    );
    assert_eq!(d["cpuset"]["cpus"], theirs["data"]["cpuset"]["cpus"]);
    assert_eq!(d["network_interfaces"], Value::Null);
}

/// What one runtime's `events --interval 1s` printed over a container's life: the run
/// starts it, `kill_after` later the container is killed, then deleted; the stream must
/// end on its own. (exit code or None if it had to be killed, events).
fn event_stream(rt: &str, b: &Bundle, kill_after: Duration) -> (Option<i32>, Vec<Value>) {
    let root = tempfile::tempdir().unwrap();
    let id = unique_id("evs");
    run_detached(rt, root.path(), b, &id);
    let (mut child, out, _err) = spawn(rt, root.path(), &["events", "--interval", "1s", &id]);
    std::thread::sleep(kill_after);
    runtime(rt, root.path(), &["kill", &id, "KILL"]);
    wait_until(Duration::from_secs(5), || {
        runtime(rt, root.path(), &["state", &id])
            .1
            .contains("stopped")
    });
    let (code, _, err) = runtime(rt, root.path(), &["delete", &id]);
    assert_eq!(code, 0, "{rt} delete: {err}");
    let exit = wait_or_kill(&mut child, 10);
    let text = String::from_utf8(read_back(out)).unwrap();
    let events = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{rt}: {e}: {l}")))
        .collect();
    assert!(leftovers(root.path(), &id).is_empty());
    (exit, events)
}

fn kinds(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

/// Without `--stats`: stats every interval while the container lives, and the stream
/// ends by itself (status 0) once the container is deleted, as runc's does.
#[test]
fn events_stream_until_the_container_is_deleted() {
    if skip("events stream") {
        return;
    }
    let b = limited_bundle(&["sleep", "1000"], MEMORY_LIMIT);
    // 3.5 s at one event a second: 3 on a quiet host, at least 2 on a busy one.
    let wait = Duration::from_millis(3500);
    let (runc_exit, theirs) = event_stream(RUNC, &b, wait);
    let (rune_exit, ours) = event_stream(RUNE, &b, wait);
    assert_eq!(runc_exit, Some(0), "runc's stream ends with the container");
    assert_eq!(
        rune_exit, runc_exit,
        "rune's stream ends with the container"
    );
    assert!(theirs.len() >= 2, "runc: {} events", theirs.len());
    assert!(
        ours.len() >= 2,
        "rune: one event a second, got {}",
        ours.len()
    );
    assert_eq!(kinds(&ours), kinds(&theirs));
    for e in &ours {
        assert_eq!(e["data"]["pids"]["limit"], PIDS_LIMIT, "{e}");
    }
}

/// A program that outgrows its memory limit: both runtimes report `{"type":"oom"}`
/// events (without data) when the kernel's OOM killer acts.
#[test]
fn events_report_oom_kills() {
    if skip("events oom") {
        return;
    }
    // `cat` holds 100 MB in one shell variable's worth of pipe data: killed under 16 MiB.
    let script =
        "sleep 1.5; head -c 100000000 /dev/zero | tr '\\0' x | (x=$(cat); echo ${#x}); sleep 1000";
    let b = limited_bundle(&["sh", "-c", script], 16 << 20);
    let wait = Duration::from_secs(4);
    let (_, theirs) = event_stream(RUNC, &b, wait);
    let (rune_exit, ours) = event_stream(RUNE, &b, wait);
    assert!(
        kinds(&theirs).contains("oom"),
        "runc saw no OOM: {:?}",
        kinds(&theirs)
    );
    assert_eq!(kinds(&ours), kinds(&theirs));
    assert_eq!(rune_exit, Some(0));
    let oom = ours.iter().find(|e| e["type"] == "oom").unwrap();
    let expected: BTreeSet<&str> = theirs
        .iter()
        .find(|e| e["type"] == "oom")
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let keys: BTreeSet<&str> = oom
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, expected, "{oom}");
}

/// `events` of a stopped container and with a zero interval: refused in one error line
/// and status 1, as by runc.
#[test]
fn events_refusals_as_runc() {
    if skip("events refusals") {
        return;
    }
    let b = Bundle::new(&["true"]);
    for rt in [RUNC, RUNE] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("evr");
        let (code, _, err) = runtime(
            rt,
            root.path(),
            &["create", "--bundle", b.path().to_str().unwrap(), &id],
        );
        assert_eq!(code, 0, "{rt} create: {err}");
        runtime(rt, root.path(), &["start", &id]);
        wait_until(Duration::from_secs(5), || {
            runtime(rt, root.path(), &["state", &id])
                .1
                .contains("stopped")
        });
        let r = runtime(rt, root.path(), &["events", "--stats", &id]);
        let (code, one_line, msg) = failure(&r);
        assert_eq!(
            (code, one_line),
            (1, true),
            "{rt} events of a stopped container: {r:?}"
        );
        assert!(msg.contains(&id) && msg.contains("not"), "{rt}: {msg}");
        let r = runtime(rt, root.path(), &["events", "--interval", "0s", &id]);
        let (code, one_line, msg) = failure(&r);
        assert_eq!((code, one_line), (1, true), "{rt} --interval 0s: {r:?}");
        assert!(msg.contains("greater than 0"), "{rt}: {msg}");
        runtime(rt, root.path(), &["delete", &id]);
        assert!(leftovers(root.path(), &id).is_empty());
    }
}

/// `list -f json` prints what runc prints: `null` with no container (runc encodes its
/// nil slice), and with one, an array of objects with the same keys and JSON types.
#[test]
fn list_json_as_runc() {
    if skip("list -f json") {
        return;
    }
    let list = |rt: &str, root: &Path| {
        let (code, out, err) = runtime(rt, root, &["list", "-f", "json"]);
        assert_eq!(code, 0, "{rt} list: {err}");
        out
    };
    let b = Bundle::new(&["sleep", "1000"]);
    let mut shapes = Vec::new();
    for rt in [RUNC, RUNE] {
        let root = tempfile::tempdir().unwrap();
        let empty = list(rt, root.path());
        let missing = list(rt, &root.path().join("none"));
        let id = unique_id("ls");
        run_detached(rt, root.path(), &b, &id);
        let one: Value = serde_json::from_str(&list(rt, root.path())).unwrap();
        runtime(rt, root.path(), &["delete", "--force", &id]);
        assert!(leftovers(root.path(), &id).is_empty());
        shapes.push((empty, missing, one, id));
    }
    let (theirs, ours) = (&shapes[0], &shapes[1]);
    assert_eq!(theirs.0, "null\n", "runc 1.1 prints null for no containers");
    assert_eq!(ours.0, theirs.0, "empty root");
    assert_eq!(ours.1, theirs.1, "root that does not exist");
    let mut diffs = Vec::new();
    shape_diff("", &theirs.2, &ours.2, &mut diffs);
    assert!(
        diffs.is_empty(),
        "list differs from runc's:\n{}",
        diffs.join("\n")
    );
    assert_eq!(ours.2.as_array().unwrap().len(), 1);
    let keys = |v: &Value| -> Vec<String> { v[0].as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&ours.2), keys(&theirs.2));
    assert_eq!(ours.2[0]["id"], ours.3.as_str());
    assert_eq!(ours.2[0]["status"], "running");
}

/// `events --stats` gives CPU times in nanoseconds, as runc: the user and kernel times
/// of a container that has burnt some CPU add up to about its total (cgroup v1 counts
/// them in USER_HZ ticks, v2 in microseconds; runc converts both).
#[test]
fn events_cpu_times_are_nanoseconds_as_runcs() {
    if skip("events cpu times") {
        return;
    }
    let b = limited_bundle(
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; touch /dev/shm/burnt; sleep 1000",
        ],
        MEMORY_LIMIT,
    );
    let mut ratios = Vec::new();
    for rt in [RUNC, RUNE] {
        let root = tempfile::tempdir().unwrap();
        let id = unique_id("evcpu");
        let pid = run_detached(rt, root.path(), &b, &id);
        let burnt = format!("/proc/{}/root/dev/shm/burnt", pid.trim());
        assert!(
            wait_until(Duration::from_secs(30), || Path::new(&burnt).exists()),
            "{rt}: the loop did not end"
        );
        let (code, out, err) = runtime(rt, root.path(), &["events", "--stats", &id]);
        runtime(rt, root.path(), &["delete", "--force", &id]);
        assert_eq!(code, 0, "{rt}: {err}");
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        let u = &v["data"]["cpu"]["usage"];
        let total = u["total"].as_f64().unwrap();
        let split = u["user"].as_f64().unwrap() + u["kernel"].as_f64().unwrap();
        assert!(total > 5e7, "{rt}: burnt only {total} ns: {u}");
        ratios.push((rt, split / total, u.clone()));
    }
    for (rt, ratio, u) in &ratios {
        assert!(
            (0.5..1.5).contains(ratio),
            "{rt}: user + kernel vs total: {u}"
        );
    }
}
