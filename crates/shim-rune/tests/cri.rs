//! The path kubelet takes: containerd's CRI plugin (enabled in a private containerd)
//! driving `containerd-shim-rune-v2` for pods whose `runtime_handler` is `rune`,
//! spoken to through the CRI gRPC API (k8s-cri's client, CRI v1 as in
//! `k8s.io/cri-api/pkg/apis/runtime/v1/api.proto`). The same steps run with handler
//! `runc` (Debian's Go runc shim) where the expected value is "as with runc".
//! Nothing may be left: shim or container processes, mounts under the daemon's
//! directory, cgroups, rune state.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use test_support::{CriConfig, CriRuntime, CRI_NAMESPACE};
use tonic::transport::{Channel, Endpoint};

/// The sandbox ("pause") image as the CRI plugin is told to use it.
const PAUSE: &str = "docker.io/library/pause:rune";
/// The enclave annotations the shim and rune read, passed from the pod and container.
const PASSED: &str = "enclave.*";

/// One call on the runtime service: `call!(client, method, request)` → the response
/// message or the gRPC status.
macro_rules! call {
    ($client:expr, $method:ident, $req:expr) => {{
        let mut service = $client.runtime.clone();
        $client
            .rt
            .block_on(service.$method($req))
            .map(tonic::Response::into_inner)
    }};
}

/// A CRI client on containerd's socket, with the runtime it blocks on.
struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl Cri {
    fn connect(socket: &Path) -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let socket = socket.to_path_buf();
        // The URI is not used: every connection goes to the unix socket.
        let channel = rt
            .block_on(
                Endpoint::from_static("http://localhost").connect_with_connector(
                    tower::service_fn(move |_| {
                        let socket = socket.clone();
                        async move {
                            let s = tokio::net::UnixStream::connect(socket).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                        }
                    }),
                ),
            )
            .expect("connect to containerd's CRI socket");
        Cri {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }

    fn image_present(&self, image: &str) -> bool {
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        let mut images = self.images.clone();
        self.rt
            .block_on(images.image_status(req))
            .is_ok_and(|r| r.into_inner().image.is_some())
    }
}

/// A private containerd with the CRI plugin, handlers `runc` (the default) and `rune`,
/// the pause and busybox images imported into the CRI's namespace.
fn start_cri() -> (Ctrd, Cri) {
    let c = Ctrd::start_with(|c| {
        let mut rune = CriRuntime::new("rune", RUNTIME);
        rune.pod_annotations = vec![PASSED.into()];
        rune.container_annotations = vec![PASSED.into()];
        // runc's state in the daemon's directory too (the Go shim's `Root` option).
        let mut runc = CriRuntime::new("runc", "io.containerd.runc.v2");
        runc.options = vec![("Root".into(), format!("{:?}", c.path().join("runc")))];
        c.enable_cri(CriConfig {
            sandbox_image: PAUSE.into(),
            runtimes: vec![runc, rune],
        });
    });
    let pause = test_support::pause_oci_tar().unwrap();
    c.import(CRI_NAMESPACE, &pause, PAUSE).unwrap();
    let busybox = test_support::busybox_oci_tar().unwrap();
    c.import(CRI_NAMESPACE, &busybox, IMAGE).unwrap();
    let client = Cri::connect(&c.socket());
    // The CRI plugin learns of imported images through containerd's events.
    let seen = wait_until(Duration::from_secs(10), || {
        client.image_present(PAUSE) && client.image_present(IMAGE)
    });
    assert!(seen, "the CRI plugin does not see the imported images");
    (c, client)
}

/// A pod as kubelet describes it: host network, its own cgroup parent (which kubelet
/// makes; here the test removes it), logs under the daemon's directory.
fn pod_config(c: &Ctrd, name: &str) -> cri::PodSandboxConfig {
    let uid = unique_id(name);
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: uid.clone(),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: c.path().join("pods").join(&uid).display().to_string(),
        annotations: HashMap::from([("enclave.runtime.loglevel".into(), "info".into())]),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("/{uid}"),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(name: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                cpu_shares: 512,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A cgroup v1 file of the container whose OCI `cgroupsPath` is `path`.
fn cgroup_file(hierarchy: &str, path: &str, file: &str) -> String {
    let p = Path::new("/sys/fs/cgroup")
        .join(hierarchy)
        .join(path.trim_start_matches('/'))
        .join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The pod's cgroup parent is empty in every hierarchy; then it is removed (as kubelet
/// would). Returns what is still below it.
fn remove_cgroup_parent(parent: &str) -> Vec<String> {
    let mut left = Vec::new();
    for base in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = base.path().join(parent.trim_start_matches('/'));
        if !dir.is_dir() {
            continue;
        }
        for child in std::fs::read_dir(&dir).unwrap().flatten() {
            if child.path().is_dir() {
                left.push(child.path().display().to_string());
            }
        }
        if let Err(e) = std::fs::remove_dir(&dir) {
            left.push(format!("{}: {e}", dir.display()));
        }
    }
    left
}

/// The OCI spec containerd wrote for task `id`.
fn bundle_spec(c: &Ctrd, id: &str) -> serde_json::Value {
    let p = c
        .path()
        .join("state/io.containerd.runtime.v2.task")
        .join(CRI_NAMESPACE)
        .join(id)
        .join("config.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// The shim processes serving our daemon with `runtime_type`'s binary name.
fn shims(c: &Ctrd, binary: &str) -> Vec<(u32, PathBuf)> {
    let dir = c.path().display().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains(binary) && cmdline.contains(&dir) {
            found.push((
                pid,
                std::fs::read_link(e.path().join("exe")).unwrap_or_default(),
            ));
        }
    }
    found
}

/// One CRI log line (the CRI logging format, kubelet's `pkg/kubelet/kuberuntime/logs`):
/// `<RFC 3339 time with nanoseconds> <stdout|stderr> <F|P> <content>`.
fn parse_log_line(line: &str) -> (chrono::DateTime<chrono::FixedOffset>, &str, &str, &str) {
    let mut parts = line.splitn(4, ' ');
    let (time, stream, tag, content) = (
        parts.next().unwrap(),
        parts
            .next()
            .unwrap_or_else(|| panic!("no stream in {line:?}")),
        parts.next().unwrap_or_else(|| panic!("no tag in {line:?}")),
        parts.next().unwrap_or(""),
    );
    let time = chrono::DateTime::parse_from_rfc3339(time)
        .unwrap_or_else(|e| panic!("{time:?} in {line:?}: {e}"));
    assert!(matches!(stream, "stdout" | "stderr"), "{line:?}");
    assert!(matches!(tag, "F" | "P"), "{line:?}");
    (time, stream, tag, content)
}

/// (stream, content) of each full line of the log file at `path`, once `want` lines
/// are there (10 s at most).
fn log_lines(path: &Path, want: usize) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        lines = text
            .lines()
            .map(|l| {
                let (_, stream, tag, content) = parse_log_line(l);
                assert_eq!(tag, "F", "short lines are not split: {l:?}");
                (stream.to_string(), content.to_string())
            })
            .collect();
        lines.len() >= want
    });
    lines
}

/// What one pod's lifecycle showed, compared between handlers.
#[derive(Debug, PartialEq)]
struct Seen {
    log: Vec<(String, String)>,
    exec: (String, String, i32),
    exited: (i32, i32, String),
    memory_limit: (String, String),
    cpu: (String, String, String),
}

/// The application: says hello on both streams, then waits; SIGTERM (StopContainer's
/// first signal) makes it say so and exit 0 within the grace period.
const APP: &[&str] = &[
    "/bin/sh",
    "-c",
    "echo hello from cri; echo oops >&2; trap 'echo terminated; exit 0' TERM; \
     while :; do sleep 1 & wait $!; done",
];

/// A pod with one container through `handler`, every step kubelet takes, checked;
/// then nothing is left.
fn pod_lifecycle(c: &Ctrd, client: &Cri, handler: &str, runtime_type: &str) -> Seen {
    // `io.containerd.<name>.v2` runs `containerd-shim-<name>-v2`.
    let name = runtime_type.split('.').nth(2).unwrap();
    let shim_binary = format!("containerd-shim-{name}-v2");
    let shim_binary = shim_binary.as_str();
    let config = pod_config(c, &format!("life-{handler}"));
    let parent = config.linux.as_ref().unwrap().cgroup_parent.clone();
    let log_dir = PathBuf::from(&config.log_directory);
    let t = Instant::now();
    let pod = call!(
        client,
        run_pod_sandbox,
        cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        }
    )
    .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.log()))
    .pod_sandbox_id;
    eprintln!("{handler}: RunPodSandbox {:?}", t.elapsed());
    let status = call!(
        client,
        pod_sandbox_status,
        cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        }
    )
    .unwrap();
    assert_eq!(
        status.status.as_ref().unwrap().state,
        cri::PodSandboxState::SandboxReady as i32
    );
    // The sandbox runs through the handler's shim (ours: the binary the test built).
    let serving = shims(c, shim_binary);
    assert_eq!(serving.len(), 1, "{serving:?}");
    if handler == "rune" {
        assert_eq!(
            serving[0].1,
            Path::new(SHIM).canonicalize().unwrap(),
            "the shim containerd started is not the one under test"
        );
    }

    let t = Instant::now();
    let ctr = call!(
        client,
        create_container,
        cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("app", APP)),
            sandbox_config: Some(config.clone()),
        }
    )
    .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", c.log()))
    .container_id;
    call!(
        client,
        start_container,
        cri::StartContainerRequest {
            container_id: ctr.clone(),
        }
    )
    .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", c.log()));
    eprintln!(
        "{handler}: CreateContainer + StartContainer {:?}",
        t.elapsed()
    );
    // One shim serves the whole pod.
    assert_eq!(shims(c, shim_binary).len(), 1);
    // The pod's enclave annotations reach the container's spec (pod_annotations).
    let spec = bundle_spec(c, &ctr);
    if handler == "rune" {
        assert_eq!(spec["annotations"]["enclave.runtime.loglevel"], "info");
    }
    let cgroup = spec["linux"]["cgroupsPath"].as_str().unwrap().to_string();
    assert!(cgroup.starts_with(&parent), "{cgroup} not under {parent}");
    assert_eq!(
        cgroup_file("memory", &cgroup, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(cgroup_file("cpu", &cgroup, "cpu.shares"), "512");
    // The runtime's state for the container, where its shim keeps it.
    let state = match handler {
        "rune" => c.path().join("rune").join(CRI_NAMESPACE).join(&ctr),
        _ => c.path().join("runc").join(CRI_NAMESPACE).join(&ctr),
    };
    assert!(state.join("state.json").is_file(), "{}", state.display());

    // The log file, in the CRI format, where the pod's config says.
    let log = log_lines(&log_dir.join("app/0.log"), 2);

    // ExecSync: output and exit code.
    let exec = call!(
        client,
        exec_sync,
        cri::ExecSyncRequest {
            container_id: ctr.clone(),
            cmd: ["sh", "-c", "echo out; echo err >&2; exit 3"]
                .map(String::from)
                .to_vec(),
            timeout: 10,
        }
    )
    .unwrap_or_else(|e| panic!("ExecSync: {e}\n{}", c.log()));
    let exec = (
        String::from_utf8_lossy(&exec.stdout).into_owned(),
        String::from_utf8_lossy(&exec.stderr).into_owned(),
        exec.exit_code,
    );

    // ContainerStatus, verbose: the pid and the runtime in containerd's info.
    let status = call!(
        client,
        container_status,
        cri::ContainerStatusRequest {
            container_id: ctr.clone(),
            verbose: true,
        }
    )
    .unwrap();
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
    assert_eq!(info["runtimeType"], runtime_type, "{info}");
    let pid = info["pid"].as_u64().unwrap();
    let st = status.status.unwrap();
    assert_eq!(st.log_path, log_dir.join("app/0.log").display().to_string());
    assert!(st.started_at > 0 && st.finished_at == 0, "{st:?}");

    // ListContainerStats: the container's cgroup seen through the shim's Stats.
    let stats = call!(
        client,
        list_container_stats,
        cri::ListContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                id: ctr.clone(),
                ..Default::default()
            }),
        }
    )
    .unwrap_or_else(|e| panic!("ListContainerStats: {e}\n{}", c.log()));
    assert_eq!(stats.stats.len(), 1, "{stats:?}");
    let s = &stats.stats[0];
    let cpu = s.cpu.as_ref().expect("cpu stats");
    let memory = s.memory.as_ref().expect("memory stats");
    assert!(cpu.timestamp > 0 && memory.timestamp > 0, "{s:?}");
    assert!(
        cpu.usage_core_nano_seconds
            .as_ref()
            .is_some_and(|v| v.value > 0),
        "{s:?}"
    );
    assert!(
        memory
            .working_set_bytes
            .as_ref()
            .is_some_and(|v| v.value > 0),
        "{s:?}"
    );

    // UpdateContainerResources: the new limits in the container's cgroup.
    call!(
        client,
        update_container_resources,
        cri::UpdateContainerResourcesRequest {
            container_id: ctr.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 96 << 20,
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 256,
                ..Default::default()
            }),
            ..Default::default()
        }
    )
    .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}\n{}", c.log()));
    let memory_limit = (
        cgroup_file("memory", &cgroup, "memory.limit_in_bytes"),
        (96u64 << 20).to_string(),
    );
    let cpu_seen = (
        cgroup_file("cpu", &cgroup, "cpu.cfs_period_us"),
        cgroup_file("cpu", &cgroup, "cpu.cfs_quota_us"),
        cgroup_file("cpu", &cgroup, "cpu.shares"),
    );

    // StopContainer with a grace period: SIGTERM, which the program handles.
    let t = Instant::now();
    call!(
        client,
        stop_container,
        cri::StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 20,
        }
    )
    .unwrap_or_else(|e| panic!("StopContainer: {e}\n{}", c.log()));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "SIGTERM did not end it: {:?}",
        t.elapsed()
    );
    let st = call!(
        client,
        container_status,
        cri::ContainerStatusRequest {
            container_id: ctr.clone(),
            verbose: false,
        }
    )
    .unwrap()
    .status
    .unwrap();
    let exited = (st.state, st.exit_code, st.reason.clone());
    let log = {
        let mut l = log_lines(&log_dir.join("app/0.log"), 3);
        l.sort();
        l.extend(log);
        l.sort();
        l.dedup();
        l
    };

    call!(
        client,
        remove_container,
        cri::RemoveContainerRequest {
            container_id: ctr.clone(),
        }
    )
    .unwrap_or_else(|e| panic!("RemoveContainer: {e}\n{}", c.log()));
    call!(
        client,
        stop_pod_sandbox,
        cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }
    )
    .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", c.log()));
    call!(
        client,
        remove_pod_sandbox,
        cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }
    )
    .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", c.log()));

    // Nothing left: no pod or container known, no process, mount, cgroup, rune state.
    assert_no_pods(c, client);
    assert!(
        wait_until(Duration::from_secs(10), || !Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "container process {pid} is still there"
    );
    assert!(
        wait_until(Duration::from_secs(10), || c.leftovers().is_empty()),
        "left behind: {:?}",
        c.leftovers()
    );
    assert_eq!(remove_cgroup_parent(&parent), Vec::<String>::new());
    assert_rune_state_empty(c);

    Seen {
        log,
        exec,
        exited,
        memory_limit,
        cpu: cpu_seen,
    }
}

fn assert_no_pods(c: &Ctrd, client: &Cri) {
    let pods = call!(
        client,
        list_pod_sandbox,
        cri::ListPodSandboxRequest::default()
    )
    .unwrap();
    assert!(pods.items.is_empty(), "{pods:?}");
    let ctrs = call!(
        client,
        list_containers,
        cri::ListContainersRequest::default()
    )
    .unwrap();
    assert!(ctrs.containers.is_empty(), "{ctrs:?}");
    let (_, tasks, _) = c.ctr(&["-n", CRI_NAMESPACE, "task", "ls", "-q"]);
    assert_eq!(tasks.trim(), "", "tasks left");
}

fn assert_rune_state_empty(c: &Ctrd) {
    let state = c.path().join("rune").join(CRI_NAMESPACE);
    let left: Vec<_> = std::fs::read_dir(&state)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "rune state left: {left:?}");
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
    let runc = pod_lifecycle(&c, &client, "runc", "io.containerd.runc.v2");
    eprintln!("runc pod lifecycle: {:?}", t.elapsed());
    let t = Instant::now();
    let rune = pod_lifecycle(&c, &client, "rune", RUNTIME);
    eprintln!("rune pod lifecycle: {:?}", t.elapsed());

    // The CRI spec's values (and runc's, which must agree).
    let expected = Seen {
        log: vec![
            ("stderr".into(), "oops".into()),
            ("stdout".into(), "hello from cri".into()),
            ("stdout".into(), "terminated".into()),
        ],
        exec: ("out\n".into(), "err\n".into(), 3),
        exited: (
            cri::ContainerState::ContainerExited as i32,
            0,
            "Completed".into(),
        ),
        memory_limit: ((96u64 << 20).to_string(), (96u64 << 20).to_string()),
        cpu: ("100000".into(), "50000".into(), "256".into()),
    };
    assert_eq!(runc, expected, "runc");
    assert_eq!(rune, expected, "rune");
}

/// Stops and removes pod `pod` (made from `config`); then nothing is left.
fn remove_pod(c: &Ctrd, client: &Cri, pod: &str, config: &cri::PodSandboxConfig) {
    call!(
        client,
        stop_pod_sandbox,
        cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.into(),
        }
    )
    .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", c.log()));
    call!(
        client,
        remove_pod_sandbox,
        cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.into(),
        }
    )
    .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", c.log()));
    assert_no_pods(c, client);
    assert!(
        wait_until(Duration::from_secs(10), || c.leftovers().is_empty()),
        "left behind: {:?}",
        c.leftovers()
    );
    let parent = &config.linux.as_ref().unwrap().cgroup_parent;
    assert_eq!(remove_cgroup_parent(parent), Vec::<String>::new());
    assert_rune_state_empty(c);
}

/// A container of `command` in a pod of `handler` whose pod has `annotations` too:
/// StartContainer's error (the container id replaced by `ID`), and the container's
/// state and reason afterwards; nothing of the container is left while the pod runs,
/// and nothing at all once the pod is removed.
fn failing_start(
    c: &Ctrd,
    client: &Cri,
    handler: &str,
    annotations: &[(&str, &str)],
    command: &[&str],
) -> (String, i32, String) {
    let mut config = pod_config(c, &format!("bad-{handler}"));
    for (k, v) in annotations {
        config.annotations.insert(k.to_string(), v.to_string());
    }
    let pod = call!(
        client,
        run_pod_sandbox,
        cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        }
    )
    .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.log()))
    .pod_sandbox_id;
    let ctr = call!(
        client,
        create_container,
        cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("app", command)),
            sandbox_config: Some(config.clone()),
        }
    )
    .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", c.log()))
    .container_id;
    let e = call!(
        client,
        start_container,
        cri::StartContainerRequest {
            container_id: ctr.clone(),
        }
    )
    .expect_err("a bad container started");
    let st = call!(
        client,
        container_status,
        cri::ContainerStatusRequest {
            container_id: ctr.clone(),
            verbose: false,
        }
    )
    .unwrap()
    .status
    .unwrap();
    // Nothing of the container is left while its pod still runs: no task, no runtime
    // state, no root filesystem mount.
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
    call!(
        client,
        remove_container,
        cri::RemoveContainerRequest {
            container_id: ctr.clone(),
        }
    )
    .unwrap_or_else(|e| panic!("RemoveContainer: {e}\n{}", c.log()));
    remove_pod(c, client, &pod, &config);
    (e.message().replace(&ctr, "ID"), st.state, st.reason)
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
    let e = call!(
        client,
        run_pod_sandbox,
        cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: "enclave-nope".into(),
        }
    )
    .expect_err("an unknown handler ran a pod");
    assert_no_pods(&c, &client);
    assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());

    let e = e.message();
    assert!(!e.contains('\n'), "{e}");
    assert!(e.contains("no runtime for \"enclave-nope\""), "{e}");

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
}
