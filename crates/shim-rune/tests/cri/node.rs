//! The node the CRI tests play kubelet on: a private containerd with its CRI plugin
//! (handlers `runc`, the default, and `rune`), pod and container configs as kubelet
//! writes them, and what the tests read on the host: cgroup files, the bundle's spec,
//! the shims, CRI log files, leftovers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1 as cri;
use test_support::{CriConfig, CriRuntime, CRI_NAMESPACE};

use crate::client::Cri;
use crate::common::*;

/// The sandbox ("pause") image as the CRI plugin is told to use it.
pub const PAUSE: &str = "docker.io/library/pause:rune";
/// The enclave annotations the shim and rune read, passed from the pod and container
/// (containerd matches these patterns as globs).
pub const PASSED: &str = "enclave.*";
/// Confidential Containers' init-data annotation (base64 of the gzipped TOML document),
/// passed from the pod as the deploy's handler passes it.
pub const COCO_INIT_DATA: &str = "io.katacontainers.config.hypervisor.cc_init_data";
/// The Go runc shim's runtime type, the handler `runc` the tests compare with.
pub const RUNC: &str = "io.containerd.runc.v2";

/// A private containerd with the CRI plugin, handlers `runc` (the default, its state in
/// the daemon's directory too) and `rune`, the pause and busybox images imported into
/// the CRI's namespace, and a client once the plugin sees both images.
pub fn start_cri() -> (Ctrd, Cri) {
    start_cri_with(|_| {})
}

/// As [`start_cri`], with `configure` applied before the daemon starts (e.g. a CNI
/// network written to its conf dir).
pub fn start_cri_with(configure: impl FnOnce(&mut test_support::Containerd)) -> (Ctrd, Cri) {
    let c = Ctrd::start_with(|c| {
        configure(c);
        let mut rune = CriRuntime::new("rune", RUNTIME);
        rune.pod_annotations = vec![PASSED.into(), COCO_INIT_DATA.into()];
        rune.container_annotations = vec![PASSED.into()];
        let mut runc = CriRuntime::new("runc", RUNC);
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
    let client = connect(&c);
    // The CRI plugin learns of imported images through containerd's events.
    let seen = wait_until(Duration::from_secs(10), || {
        client.image_present(PAUSE) && client.image_present(IMAGE)
    });
    assert!(seen, "the CRI plugin does not see the imported images");
    (c, client)
}

/// A client of `c`'s CRI plugin, once it is ready.
pub fn connect(c: &Ctrd) -> Cri {
    Cri::connect(&c.socket(), &c.path().join("containerd.log"))
}

/// A pod as kubelet describes it: host network, PID namespace per container, IPC of
/// the pod; its own cgroup parent (which kubelet makes; the tests remove it) under the
/// daemon's [`cgroup_root`](test_support::Containerd::cgroup_root), logs
/// under the daemon's directory, and an inert enclave annotation
/// (`enclave.runtime.loglevel`, no type) to see the passthrough.
pub fn pod_config(c: &Ctrd, name: &str) -> cri::PodSandboxConfig {
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
            cgroup_parent: format!("{}/{uid}", c.cgroup_root()),
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

/// The pod's cgroup parent.
pub fn cgroup_parent(config: &cri::PodSandboxConfig) -> &str {
    &config.linux.as_ref().unwrap().cgroup_parent
}

/// Container `name` of the busybox image running `command`, its log at
/// `<name>/0.log` (kubelet's `<container>/<restart count>.log`), 64 MiB and 512 CPU
/// shares.
pub fn container_config(name: &str, command: &[&str]) -> cri::ContainerConfig {
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

/// Creates and starts container `name` running `command` in pod `pod`; returns its id.
pub fn start_container(
    client: &Cri,
    pod: &str,
    config: &cri::PodSandboxConfig,
    name: &str,
    command: &[&str],
) -> String {
    start(client, pod, config, &container_config(name, command))
}

/// Creates and starts container `container` in pod `pod`; returns its id.
pub fn start(
    client: &Cri,
    pod: &str,
    config: &cri::PodSandboxConfig,
    container: &cri::ContainerConfig,
) -> String {
    let ctr = client.must_create_container(pod, container, config);
    client.must_start_container(&ctr);
    ctr
}

/// A cgroup v1 file of the container whose OCI `cgroupsPath` is `path`.
pub fn cgroup_file(hierarchy: &str, path: &str, file: &str) -> String {
    let p = Path::new("/sys/fs/cgroup")
        .join(hierarchy)
        .join(path.trim_start_matches('/'))
        .join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Removes the pod's cgroup parent in every hierarchy (as kubelet would), which works
/// only when nothing is below it; returns what was still there.
pub fn remove_cgroup_parent(parent: &str) -> Vec<String> {
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
pub fn bundle_spec(c: &Ctrd, id: &str) -> serde_json::Value {
    let p = c
        .path()
        .join("state/io.containerd.runtime.v2.task")
        .join(CRI_NAMESPACE)
        .join(id)
        .join("config.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// The shim binary of `io.containerd.<name>.v2`: `containerd-shim-<name>-v2`.
pub fn shim_binary(runtime_type: &str) -> String {
    let name = runtime_type.split('.').nth(2).unwrap();
    format!("containerd-shim-{name}-v2")
}

/// (pid, executable) of the `binary` shims serving our daemon.
pub fn shims(c: &Ctrd, binary: &str) -> Vec<(u32, PathBuf)> {
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
/// `<RFC 3339 time with nanoseconds> <stdout|stderr> <F|P> <content>`; returns the
/// stream, the tag and the content.
pub fn parse_log_line(line: &str) -> (&str, &str, &str) {
    let mut parts = line.splitn(4, ' ');
    let (time, stream, tag, content) = (
        parts.next().unwrap(),
        parts
            .next()
            .unwrap_or_else(|| panic!("no stream in {line:?}")),
        parts.next().unwrap_or_else(|| panic!("no tag in {line:?}")),
        parts.next().unwrap_or(""),
    );
    let t = chrono::DateTime::parse_from_rfc3339(time)
        .unwrap_or_else(|e| panic!("{time:?} in {line:?}: {e}"));
    // Go's RFC3339Nano: at most nine fractional digits, trailing zeros dropped.
    let fraction: String = time
        .split_once('.')
        .map_or("", |(_, f)| f)
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(!fraction.ends_with('0') && fraction.len() <= 9, "{line:?}");
    assert!(t.timestamp() > 0, "{line:?}");
    assert!(matches!(stream, "stdout" | "stderr"), "{line:?}");
    assert!(matches!(tag, "F" | "P"), "{line:?}");
    (stream, tag, content)
}

/// (stream, content) of each line of the log file at `path`, sorted, once there are
/// `want` (10 s at most). Every line is a full one (`F`): they are short.
pub fn log_lines(path: &Path, want: usize) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        lines = text
            .lines()
            .map(|l| {
                let (stream, tag, content) = parse_log_line(l);
                assert_eq!(tag, "F", "{l:?}");
                (stream.to_string(), content.to_string())
            })
            .collect();
        lines.len() >= want
    });
    lines.sort();
    lines
}

/// Nothing is left of pods: none the CRI knows, no container or task, no process or
/// mount under the daemon's directory, no cgroup under `cgroup_parents` (then removed),
/// no rune state.
pub fn assert_nothing_left(c: &Ctrd, client: &Cri, cgroup_parents: &[&str]) {
    let pods = client.list_pod_sandbox();
    assert!(pods.is_empty(), "{pods:?}");
    let containers = client.list_containers();
    assert!(containers.is_empty(), "{containers:?}");
    let (_, tasks, _) = c.ctr(&["-n", CRI_NAMESPACE, "task", "ls", "-q"]);
    assert_eq!(tasks.trim(), "", "tasks left");
    assert!(
        wait_until(Duration::from_secs(10), || c.leftovers().is_empty()),
        "left behind: {:?}",
        c.leftovers()
    );
    for parent in cgroup_parents {
        assert_eq!(remove_cgroup_parent(parent), Vec::<String>::new());
    }
    let state = c.path().join("rune").join(CRI_NAMESPACE);
    let left: Vec<_> = std::fs::read_dir(&state)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "rune state left: {left:?}");
}

/// Stops and removes pod `pod` (made from `config`); then nothing is left.
pub fn remove_pod(c: &Ctrd, client: &Cri, pod: &str, config: &cri::PodSandboxConfig) {
    client.must_stop_pod_sandbox(pod);
    client.must_remove_pod_sandbox(pod);
    assert_nothing_left(c, client, &[cgroup_parent(config)]);
}

/// The process `pid` is gone (10 s at most).
pub fn gone(pid: u64) -> bool {
    wait_until(Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{pid}")).exists()
    })
}
