//! The path kubelet takes: containerd's CRI plugin (enabled in a private containerd)
//! driving `containerd-shim-rune-v2` for pods whose `runtime_handler` is `rune`, spoken
//! to through the CRI gRPC API. The same steps run with handler `runc` (Debian's Go
//! runc shim) where the expected value is "as with runc". Nothing may be left: shim or
//! container processes, mounts under the daemon's directory, cgroups, rune state.

#[path = "../common/mod.rs"]
mod common;

mod bench;
mod client;
mod image;
mod network;
mod node;
mod stream;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use k8s_cri::v1 as cri;
use node::*;
use test_support::CRI_NAMESPACE;

/// What one pod's lifecycle showed, compared between handlers.
#[derive(Debug, PartialEq)]
struct Seen {
    /// (stream, content) of the CRI log file's lines, sorted.
    log: Vec<(String, String)>,
    /// ExecSync: stdout, stderr, exit code.
    exec: (String, String, i32),
    /// After StopContainer: state, exit code, reason.
    exited: (i32, i32, String),
    /// After UpdateContainerResources: memory.limit_in_bytes, cpu.cfs_period_us,
    /// cpu.cfs_quota_us, cpu.shares.
    cgroup: [String; 4],
}

/// The application: says hello on both streams, then waits; SIGTERM (StopContainer's
/// first signal) makes it say so and exit 0 within the grace period.
const APP: &[&str] = &[
    "/bin/sh",
    "-c",
    "echo hello from cri; echo oops >&2; trap 'echo terminated; exit 0' TERM; \
     while :; do sleep 1 & wait $!; done",
];

/// A pod with one container through `handler` (runtime `runtime_type`), every step
/// kubelet takes, checked on the way; then nothing is left.
fn pod_lifecycle(c: &Ctrd, client: &client::Cri, handler: &str, runtime_type: &str) -> Seen {
    let shim = shim_binary(runtime_type);
    let config = pod_config(c, &format!("life-{handler}"));
    let log_file = PathBuf::from(&config.log_directory).join("app/0.log");
    let t = Instant::now();
    let pod = client.must_run_pod_sandbox(&config, handler);
    eprintln!("{handler}: RunPodSandbox {:?}", t.elapsed());
    let (status, _) = client.pod_sandbox_status(&pod);
    assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32);
    // The sandbox runs through the handler's shim (for rune: the binary under test).
    let serving = shims(c, &shim);
    assert_eq!(serving.len(), 1, "{serving:?}");
    if handler == "rune" {
        assert_eq!(serving[0].1, Path::new(SHIM).canonicalize().unwrap());
    }

    let t = Instant::now();
    let ctr = start_container(client, &pod, &config, "app", APP);
    eprintln!(
        "{handler}: CreateContainer + StartContainer {:?}",
        t.elapsed()
    );
    // One shim serves the whole pod.
    assert_eq!(shims(c, &shim), serving);
    // The pod's enclave annotations reach the container's spec (`pod_annotations`).
    let spec = bundle_spec(c, &ctr);
    if handler == "rune" {
        assert_eq!(spec["annotations"]["enclave.runtime.loglevel"], "info");
    }
    let cgroup = spec["linux"]["cgroupsPath"].as_str().unwrap().to_string();
    assert!(cgroup.starts_with(cgroup_parent(&config)), "{cgroup}");
    assert_eq!(
        cgroup_file("memory", &cgroup, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(cgroup_file("cpu", &cgroup, "cpu.shares"), "512");
    // The runtime's state for the container, where its shim keeps it.
    let runtime = if handler == "rune" { "rune" } else { "runc" };
    let state = c.path().join(runtime).join(CRI_NAMESPACE).join(&ctr);
    assert!(state.join("state.json").is_file(), "{}", state.display());

    // The log file, in the CRI format, where the pod's config says.
    log_lines(&log_file, 2);

    let exec = client.must_exec_sync(&ctr, &["sh", "-c", "echo out; echo err >&2; exit 3"]);

    // ContainerStatus, verbose: the runtime and the pid in containerd's info.
    let (st, info) = client.container_status(&ctr);
    assert_eq!(info["runtimeType"], runtime_type, "{info}");
    let pid = info["pid"].as_u64().unwrap();
    assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
    assert_eq!(Path::new(&st.log_path), log_file);
    assert!(st.started_at > 0 && st.finished_at == 0, "{st:?}");

    // ListContainerStats: the container's cgroup seen through the shim's Stats.
    let stats = client.must_list_container_stats(&ctr);
    assert_eq!(stats.len(), 1, "{stats:?}");
    let (cpu, memory) = (stats[0].cpu.as_ref(), stats[0].memory.as_ref());
    let (cpu, memory) = (cpu.expect("cpu stats"), memory.expect("memory stats"));
    assert!(cpu.timestamp > 0 && memory.timestamp > 0, "{stats:?}");
    let positive = |v: &Option<cri::UInt64Value>| v.as_ref().is_some_and(|v| v.value > 0);
    assert!(positive(&cpu.usage_core_nano_seconds), "{stats:?}");
    assert!(positive(&memory.working_set_bytes), "{stats:?}");

    // UpdateContainerResources: the new limits in the container's cgroup.
    client.must_update_container_resources(
        &ctr,
        cri::LinuxContainerResources {
            memory_limit_in_bytes: 96 << 20,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 256,
            ..Default::default()
        },
    );
    let cgroup_seen = [
        cgroup_file("memory", &cgroup, "memory.limit_in_bytes"),
        cgroup_file("cpu", &cgroup, "cpu.cfs_period_us"),
        cgroup_file("cpu", &cgroup, "cpu.cfs_quota_us"),
        cgroup_file("cpu", &cgroup, "cpu.shares"),
    ];

    // StopContainer with a grace period: SIGTERM, which the program handles.
    let t = Instant::now();
    client.must_stop_container(&ctr, 20);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let (st, _) = client.container_status(&ctr);
    let exited = (st.state, st.exit_code, st.reason);
    let log = log_lines(&log_file, 3);

    client.must_remove_container(&ctr);
    remove_pod(c, client, &pod, &config);
    assert!(gone(pid), "container process {pid} is still there");
    Seen {
        log,
        exec,
        exited,
        cgroup: cgroup_seen,
    }
}

#[test]
fn a_pod_runs_through_the_rune_handler_as_through_runc_and_leaves_nothing() {
    if !root_or_skip("a_pod_runs_through_the_rune_handler_as_through_runc_and_leaves_nothing") {
        return;
    }
    let t = Instant::now();
    let (c, client) = start_cri();
    eprintln!("containerd with CRI, images imported: {:?}", t.elapsed());
    let t = Instant::now();
    let runc = pod_lifecycle(&c, &client, "runc", RUNC);
    eprintln!("runc pod lifecycle: {:?}", t.elapsed());
    let t = Instant::now();
    let rune = pod_lifecycle(&c, &client, "rune", RUNTIME);
    eprintln!("rune pod lifecycle: {:?}", t.elapsed());

    // The CRI's values (and runc's, which must agree).
    let line = |stream: &str, s: &str| (stream.to_string(), s.to_string());
    let expected = Seen {
        log: vec![
            line("stderr", "oops"),
            line("stdout", "hello from cri"),
            line("stdout", "terminated"),
        ],
        exec: ("out\n".into(), "err\n".into(), 3),
        exited: (
            cri::ContainerState::ContainerExited as i32,
            0,
            "Completed".into(),
        ),
        cgroup: [
            (96u64 << 20).to_string(),
            "100000".into(),
            "50000".into(),
            "256".into(),
        ],
    };
    assert_eq!(runc, expected, "runc");
    assert_eq!(rune, expected, "rune");
}

/// A container of `command` in a pod of `handler` whose pod has `annotations` too:
/// StartContainer's error (the container id replaced by `ID`), and the container's
/// state and reason afterwards. Nothing of the container is left while the pod runs,
/// and nothing at all once the pod is removed.
fn failing_start(
    c: &Ctrd,
    client: &client::Cri,
    handler: &str,
    annotations: &[(&str, &str)],
    command: &[&str],
) -> (String, i32, String) {
    failing_start_with_env(c, client, handler, annotations, &[], command)
}

/// [`failing_start`] with the container's environment `env`.
fn failing_start_with_env(
    c: &Ctrd,
    client: &client::Cri,
    handler: &str,
    annotations: &[(&str, &str)],
    env: &[(&str, &str)],
    command: &[&str],
) -> (String, i32, String) {
    let mut config = pod_config(c, &format!("bad-{handler}"));
    for (k, v) in annotations {
        config.annotations.insert(k.to_string(), v.to_string());
    }
    let pod = client.must_run_pod_sandbox(&config, handler);
    let mut app = container_config("app", command);
    app.envs.extend(env.iter().map(|(k, v)| cri::KeyValue {
        key: k.to_string(),
        value: v.to_string(),
    }));
    let ctr = client.must_create_container(&pod, &app, &config);
    let e = client
        .start_container(&ctr)
        .expect_err("a bad container started");
    let (st, _) = client.container_status(&ctr);
    let (_, tasks, _) = c.ctr(&["-n", CRI_NAMESPACE, "task", "ls", "-q"]);
    assert!(!tasks.contains(&ctr), "task {ctr} left: {tasks}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&ctr), "{ctr}'s rootfs still mounted");
    assert!(!c
        .path()
        .join("rune")
        .join(CRI_NAMESPACE)
        .join(&ctr)
        .exists());
    client.must_remove_container(&ctr);
    remove_pod(c, client, &pod, &config);
    (e.replace(&ctr, "ID"), st.state, st.reason)
}

#[test]
fn bad_input_through_cri_fails_in_one_line_naming_the_cause_and_leaves_nothing() {
    if !root_or_skip("bad_input_through_cri_fails_in_one_line_naming_the_cause_and_leaves_nothing")
    {
        return;
    }
    let (c, client) = start_cri();

    // An unknown handler: refused before anything is made.
    let config = pod_config(&c, "unknown-handler");
    let e = client
        .run_pod_sandbox(&config, "enclave-nope")
        .expect_err("an unknown handler ran a pod");
    assert!(!e.contains('\n'), "{e}");
    assert!(e.contains("no runtime for \"enclave-nope\""), "{e}");
    assert_nothing_left(&c, &client, &[]);

    // A program the image does not have: StartContainer fails in one line naming the
    // program and the cause, as with runc (`exec: "<path>": … no such file or
    // directory`); the container is left EXITED with reason StartError, as with runc.
    let missing = ["/no/such/program", "arg"];
    let runc = failing_start(&c, &client, "runc", &[], &missing);
    let rune = failing_start(&c, &client, "rune", &[], &missing);
    for (e, state, reason) in [&runc, &rune] {
        assert!(!e.contains('\n'), "{e}");
        assert!(
            e.contains("exec: \"/no/such/program\"") && e.contains("no such file or directory"),
            "{e}"
        );
        assert_eq!(
            (*state, reason.as_str()),
            (cri::ContainerState::ContainerExited as i32, "StartError")
        );
    }
    assert!(rune.0.contains("rune create"), "{}", rune.0);

    // An enclave type rune does not know, from the pod's annotations (passed through
    // `pod_annotations`): the sandbox still starts (the shim keeps the pod's enclave
    // settings off it), the container fails naming the type.
    let (e, state, reason) = failing_start(
        &c,
        &client,
        "rune",
        &[("enclave.type", "sgx3")],
        &["/bin/true"],
    );
    assert!(!e.contains('\n'), "{e}");
    assert!(e.contains("enclave type \"sgx3\" is not supported"), "{e}");
    assert_eq!(
        (state, reason.as_str()),
        (cri::ContainerState::ContainerExited as i32, "StartError")
    );

    // Host paths a pod's annotations may not name (the node's configuration does): a
    // library of the pod's choosing is never loaded (its constructor would leave a
    // marker), a host file is never read as the KBS CA or the init-data.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("loaded");
    let source = dir.path().join("evil.c");
    let evil = dir.path().join("evil.so");
    std::fs::write(
        &source,
        format!(
            "#include <stdio.h>\n__attribute__((constructor)) static void f(void) {{ FILE *m = fopen(\"{}\", \"w\"); if (m) fclose(m); }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let cc = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&evil)
        .arg(&source)
        .status()
        .unwrap();
    assert!(cc.success());
    let evil = evil.to_str().unwrap();
    for (annotations, want) in [
        (
            [("enclave.type", "sim"), ("enclave.runtime.path", evil)],
            format!("ENCLAVE_RUNTIME_PATH {evil}: not a PAL this node configures"),
        ),
        (
            [("enclave.type", "sim"), ("enclave.kbs.ca", "/etc/shadow")],
            "ENCLAVE_KBS_CA /etc/shadow: not a CA file this node allows".to_string(),
        ),
        (
            [
                ("enclave.type", "sim"),
                ("enclave.init.data.file", "/dev/zero"),
            ],
            "ENCLAVE_INIT_DATA_FILE /dev/zero: a container cannot have a host file read"
                .to_string(),
        ),
    ] {
        let (e, state, reason) = failing_start(&c, &client, "rune", &annotations, &["/bin/true"]);
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains(&want), "{e}");
        assert_eq!(
            (state, reason.as_str()),
            (cri::ContainerState::ContainerExited as i32, "StartError")
        );
    }
    assert!(!marker.exists(), "the pod's library was loaded");

    // A carrier the shim does not know, in the container's environment.
    let (e, state, reason) = failing_start_with_env(
        &c,
        &client,
        "rune",
        &[],
        &[("RUNE_CARRIER", "tdx")],
        &["/bin/true"],
    );
    assert!(!e.contains('\n'), "{e}");
    assert!(e.contains("RUNE_CARRIER=\"tdx\" is not a carrier"), "{e}");
    assert_eq!(
        (state, reason.as_str()),
        (cri::ContainerState::ContainerExited as i32, "StartError")
    );
}

/// `/proc/<pid>/ns/<kind>`.
fn ns(pid: &str, kind: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap()
}

/// Two containers of one pod whose PID namespace is the pod's: which namespaces they
/// share with the sandbox, each other and the host, per kind; and what `ps` in one
/// shows.
fn pod_namespaces(c: &Ctrd, client: &client::Cri, handler: &str) -> Vec<String> {
    let mut config = pod_config(c, &format!("ns-{handler}"));
    let linux = config.linux.as_mut().unwrap();
    let options = linux.security_context.as_mut().unwrap();
    options.namespace_options.as_mut().unwrap().pid = cri::NamespaceMode::Pod as i32;
    let pod = client.must_run_pod_sandbox(&config, handler);
    let sleeper = ["/bin/sh", "-c", "while :; do sleep 1; done"];
    let a = start_container(client, &pod, &config, "a", &sleeper);
    let b = start_container(client, &pod, &config, "b", &sleeper);
    let pid = |info: serde_json::Value| info["pid"].as_u64().unwrap().to_string();
    let sandbox = pid(client.pod_sandbox_status(&pod).1);
    let (pa, pb) = (
        pid(client.container_status(&a).1),
        pid(client.container_status(&b).1),
    );
    let mut seen = Vec::new();
    for kind in ["pid", "ipc", "net", "uts", "mnt"] {
        let (s, x, y) = (ns(&sandbox, kind), ns(&pa, kind), ns(&pb, kind));
        seen.push(format!(
            "{kind}: a=b {} a=sandbox {} b=sandbox {} a=host {}",
            x == y,
            x == s,
            y == s,
            x == ns("self", kind)
        ));
    }
    // In the pod's PID namespace the sandbox is pid 1 and both containers are seen.
    let (ps, err, code) = client.must_exec_sync(&a, &["ps", "-o", "pid,args"]);
    assert_eq!(code, 0, "{err}");
    let sleepers = ps.lines().filter(|l| l.contains("while :")).count();
    let pause = ps
        .lines()
        .any(|l| l.split_whitespace().next() == Some("1") && l.contains("sleep infinity"));
    seen.push(format!("ps in a: sleepers {sleepers} pause is 1 {pause}"));
    // StopPodSandbox with both still running stops them (kubelet's forced pod
    // deletion); RemovePodSandbox removes them.
    client.must_stop_pod_sandbox(&pod);
    for id in [&a, &b] {
        let (st, _) = client.container_status(id);
        seen.push(format!(
            "after StopPodSandbox: exited {} {}",
            st.state == cri::ContainerState::ContainerExited as i32,
            st.exit_code
        ));
    }
    client.must_remove_pod_sandbox(&pod);
    assert_nothing_left(c, client, &[cgroup_parent(&config)]);
    seen
}

#[test]
fn two_containers_in_a_pod_share_its_namespaces_as_with_runc() {
    if !root_or_skip("two_containers_in_a_pod_share_its_namespaces_as_with_runc") {
        return;
    }
    let (c, client) = start_cri();
    let runc = pod_namespaces(&c, &client, "runc");
    let rune = pod_namespaces(&c, &client, "rune");
    // The CRI's NamespaceOption: PID and IPC of the pod (the sandbox's), the node's
    // network (and with it, in containerd, the node's UTS namespace); a mount
    // namespace per container.
    let expected = [
        "pid: a=b true a=sandbox true b=sandbox true a=host false",
        "ipc: a=b true a=sandbox true b=sandbox true a=host false",
        "net: a=b true a=sandbox true b=sandbox true a=host true",
        "uts: a=b true a=sandbox true b=sandbox true a=host true",
        "mnt: a=b false a=sandbox false b=sandbox false a=host false",
        "ps in a: sleepers 2 pause is 1 true",
        // StopPodSandbox stops a pod's containers without a grace period: SIGKILL.
        "after StopPodSandbox: exited true 137",
        "after StopPodSandbox: exited true 137",
    ];
    assert_eq!(runc, expected, "runc");
    assert_eq!(rune, expected, "rune");
}

#[test]
fn a_pod_survives_a_containerd_restart_and_is_then_stopped() {
    if !root_or_skip("a_pod_survives_a_containerd_restart_and_is_then_stopped") {
        return;
    }
    let (mut c, client) = start_cri();
    let config = pod_config(&c, "restart");
    let pod = client.must_run_pod_sandbox(&config, "rune");
    let app = start_container(&client, &pod, &config, "app", APP);
    let pid = client.container_status(&app).1["pid"].clone();
    let shim = shims(&c, &shim_binary(RUNTIME));
    drop(client);

    c.stop_daemon();
    c.spawn_daemon().unwrap();
    let client = connect(&c);
    // The same shim and container, still running, found again and reachable.
    assert_eq!(shims(&c, &shim_binary(RUNTIME)), shim);
    let (st, info) = client.container_status(&app);
    assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
    assert_eq!(info["pid"], pid);
    let exec = client.must_exec_sync(&app, &["echo", "still here"]);
    assert_eq!(exec, ("still here\n".into(), String::new(), 0));

    client.must_stop_container(&app, 10);
    let (st, _) = client.container_status(&app);
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
    client.must_remove_container(&app);
    remove_pod(&c, &client, &pod, &config);
    assert!(gone(pid.as_u64().unwrap()));
}

/// A container of `command` with a memory limit of `memory` bytes in a pod of
/// `handler` that ends by itself: its state, exit code and reason once it has ended;
/// then nothing is left.
fn ended(
    c: &Ctrd,
    client: &client::Cri,
    handler: &str,
    command: &[&str],
    memory: i64,
) -> (i32, i32, String) {
    let config = pod_config(c, &format!("end-{handler}"));
    let pod = client.must_run_pod_sandbox(&config, handler);
    let mut hog = container_config("app", command);
    let linux = hog.linux.as_mut().unwrap();
    linux.resources.as_mut().unwrap().memory_limit_in_bytes = memory;
    let ctr = client.must_create_container(&pod, &hog, &config);
    client.must_start_container(&ctr);
    let ended = wait_until(Duration::from_secs(20), || {
        client.container_status(&ctr).0.state == cri::ContainerState::ContainerExited as i32
    });
    assert!(ended, "{handler}: {command:?} did not end");
    let (st, _) = client.container_status(&ctr);
    client.must_remove_container(&ctr);
    if handler == "rune" && memory < 32 << 20 {
        // The shim's watch of the cgroup ends with it (its debug log line).
        let ended = format!("{ctr}: OOM watch ended");
        assert!(
            wait_until(Duration::from_secs(10), || c.log().contains(&ended)),
            "{}",
            c.log()
        );
        assert!(!c.log().contains("no OOM events"), "{}", c.log());
    }
    remove_pod(c, client, &pod, &config);
    (st.state, st.exit_code, st.reason)
}

#[test]
fn containers_that_end_or_are_oom_killed_report_it_as_with_runc() {
    if !root_or_skip("containers_that_end_or_are_oom_killed_report_it_as_with_runc") {
        return;
    }
    let (c, client) = start_cri();
    let exited = cri::ContainerState::ContainerExited as i32;
    // The CRI: a container the cgroup OOM killer ended has reason "OOMKilled" (what
    // containerd sets on the shim's /tasks/oom event), SIGKILL's status 137; one that
    // exits non-zero, "Error" and its status.
    let hog = ["/bin/sh", "-c", "echo start; tail /dev/zero"];
    for (command, memory, expected) in [
        (&hog[..], 16 << 20, (exited, 137, "OOMKilled".to_string())),
        (
            &["/bin/sh", "-c", "exit 7"][..],
            64 << 20,
            (exited, 7, "Error".into()),
        ),
    ] {
        let runc = ended(&c, &client, "runc", command, memory);
        let rune = ended(&c, &client, "rune", command, memory);
        assert_eq!(runc, expected, "runc");
        assert_eq!(rune, expected, "rune");
    }
}

#[test]
fn an_enclave_container_in_a_pod_attests_and_execs_through_its_enclave() {
    if !root_or_skip("an_enclave_container_in_a_pod_attests_and_execs_through_its_enclave") {
        return;
    }
    let (c, client) = start_cri();
    let config = pod_config(&c, "enclave");
    let pod = client.must_run_pod_sandbox(&config, "rune");
    // The sim carrier (RUNE_CARRIER=sim in the container's environment) signs the
    // image's /bin/sh as the enclave program; the program prints a report of its
    // enclave, then waits.
    let script = format!("{REPORT_SCRIPT}; echo; while :; do sleep 1; done");
    let mut app = container_config("enclave", &["/bin/sh", "-c", &script]);
    app.envs.push(cri::KeyValue {
        key: "RUNE_CARRIER".into(),
        value: "sim".into(),
    });
    let ctr = start(&client, &pod, &config, &app);
    assert_eq!(
        bundle_spec(&c, &ctr)["process"]["args"][0],
        "/bin/sh",
        "the enclave program"
    );
    let log_file = Path::new(&config.log_directory).join("enclave/0.log");
    // The sim PAL says what it loaded on stderr; the report is on stdout.
    let lines = log_lines(&log_file, 2);
    let stdout: Vec<_> = lines.iter().filter(|(s, _)| s == "stdout").collect();
    let hex = &stdout.first().expect("a report in the log").1;
    let report = sim_tee::Report::parse(&hex::decode(hex).expect("a hex report")).unwrap();
    report.verify_signature().unwrap();
    let busybox = std::fs::File::open("/bin/busybox").unwrap();
    let spec = sim_tee::EnclaveSpec {
        entrypoint: "/bin/sh".into(),
        args: vec![],
    };
    let expected = sim_tee::measure_program(&sim_tee::program_digest(busybox).unwrap(), &spec);
    assert_eq!(report.mr_enclave, expected);
    let key = sim_tee::SignerKey::load(&c.path().join("signer.key")).unwrap();
    assert_eq!(report.mr_signer, sim_tee::sha384(&key.public()));

    // ExecSync runs through the enclave: the signed program with any arguments, and
    // not another one.
    let exec = client.must_exec_sync(&ctr, &["/bin/sh", "-c", "echo inside; exit 4"]);
    assert_eq!(exec, ("inside\n".into(), String::new(), 4));
    // Another program: the PAL refuses to make the process, so the exec fails to start,
    // as runc's exec of a program it cannot run fails ExecSync, naming the program.
    let err = client
        .exec_sync(&ctr, &["/bin/echo", "x"])
        .expect_err("ExecSync of an unsigned program");
    assert!(err.contains("exec: \"/bin/echo\""), "{err}");
    assert!(err.contains("EPERM"), "{err}");

    client.must_stop_container(&ctr, 10);
    client.must_remove_container(&ctr);
    remove_pod(&c, &client, &pod, &config);
}

/// A CoCo init-data document (measurement.md: version, algorithm, data).
const INIT_DATA: &str =
    "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"policy.rego\" = \"package agent_policy\"\n";

/// A pod that asks for an enclave by its annotations alone (`enclave.type: sim`, as a
/// Kubernetes user writes in the pod's metadata, passed by `pod_annotations`): the shim
/// fills in the PAL configured for the type (`[enclave_runtime.sim]`) and the app
/// container's program runs in the sim enclave, while the sandbox stays plain; CoCo's
/// init-data annotation is bound into its reports.
#[test]
fn a_pod_asks_for_an_enclave_by_annotations_alone() {
    if !root_or_skip("a_pod_asks_for_an_enclave_by_annotations_alone") {
        return;
    }
    let (c, client) = start_cri();
    let mut config = pod_config(&c, "annotated");
    config
        .annotations
        .insert("enclave.type".into(), "sim".into());
    config
        .annotations
        .insert("enclave.runtime.args".into(), "debug".into());
    // Init-data as Confidential Containers gives it (kata's annotation: base64 of the
    // gzipped TOML document, made here by gzip and base64).
    let packed = {
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "gzip -c | base64 -w0"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        sh.stdin
            .take()
            .unwrap()
            .write_all(INIT_DATA.as_bytes())
            .unwrap();
        let out = sh.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    config.annotations.insert(COCO_INIT_DATA.into(), packed);
    let pod = client.must_run_pod_sandbox(&config, "rune");
    // The program prints a report of its enclave, then a marker, then waits.
    let script = format!("{REPORT_SCRIPT}; echo; echo in-enclave; while :; do sleep 1; done");
    let app = container_config("annotated", &["/bin/sh", "-c", &script]);
    let ctr = start(&client, &pod, &config, &app);
    let spec = bundle_spec(&c, &ctr);
    let env: Vec<String> = spec["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("ENCLAVE_RUNTIME_PATH="))
        .expect("the shim filled in the PAL");
    assert!(
        path.ends_with("liberpal-sim.so") || path.ends_with("liberpal_sim.so"),
        "{path}"
    );
    let log_file = Path::new(&config.log_directory).join("annotated/0.log");
    let lines = log_lines(&log_file, 3);
    assert!(
        lines
            .iter()
            .any(|(s, l)| s == "stdout" && l == "in-enclave"),
        "{lines:?}"
    );
    // The report: a debug enclave (no manifest) whose mr_enclave is sim-tee's function
    // over the image's /bin/sh (busybox) with the unsigned spec.
    let hex = &lines
        .iter()
        .find(|(s, l)| s == "stdout" && l != "in-enclave")
        .expect("a report in the log")
        .1;
    let report = sim_tee::Report::parse(&hex::decode(hex).expect("a hex report")).unwrap();
    report.verify_signature().unwrap();
    let busybox = std::fs::File::open("/bin/busybox").unwrap();
    let expected = sim_tee::measure_program(
        &sim_tee::program_digest(busybox).unwrap(),
        &sim_tee::EnclaveSpec::unsigned("/bin/sh"),
    );
    assert_eq!(report.mr_enclave, expected);
    assert!(report.debug);
    // The init-data's SHA-384 (its `algorithm`), zero-padded, is the report's config id
    // (measurement.md, init-data binding for process enclaves).
    use sha2::Digest as _;
    let mut config_id = sha2::Sha384::digest(INIT_DATA.as_bytes()).to_vec();
    config_id.resize(64, 0);
    assert_eq!(report.config_id.to_vec(), config_id);
    // ExecSync runs through the enclave's PAL: the exec'd process reaches the enclave's
    // evidence channel (only the PAL's processes have one) and gets a report of the same
    // enclave; its exit code comes back.
    let exec = client.must_exec_sync(
        &ctr,
        &["/bin/sh", "-c", &format!("{REPORT_SCRIPT}; exit 5")],
    );
    assert_eq!((exec.1.as_str(), exec.2), ("", 5), "{exec:?}");
    let again = sim_tee::Report::parse(&hex::decode(exec.0.trim()).expect("a hex report")).unwrap();
    again.verify_signature().unwrap();
    assert_eq!(again.mr_enclave, expected);
    // liberpal-sim's notice: the program runs in a (debug) sim enclave.
    assert!(
        lines
            .iter()
            .any(|(s, l)| s == "stderr" && l.contains("liberpal-sim") && l.contains("debug=true")),
        "{lines:?}"
    );
    client.must_stop_container(&ctr, 10);
    client.must_remove_container(&ctr);
    remove_pod(&c, &client, &pod, &config);
}
