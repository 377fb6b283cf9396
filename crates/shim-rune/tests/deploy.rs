//! What an operator applies (`deploy/`): `kubectl kustomize` renders every object, and
//! the node installer (`deploy/node/install.sh`) installs onto a host root that the real
//! containerd then reads: `containerd config dump` (in a private mount namespace where
//! the installed /etc/containerd is the one containerd sees) shows the handler `rune`
//! with the shim's runtime type and the annotation globs, beside the operator's own CRI
//! settings.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use test_support::{is_root, workspace_root};

fn deploy() -> PathBuf {
    workspace_root().join("deploy")
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn kustomize_renders_every_object() {
    if !on_path("kubectl") {
        println!("skipped: kustomize_renders_every_object needs kubectl (kubernetes-client)");
        return;
    }
    let out = Command::new("kubectl")
        .args(["kustomize", deploy().to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut kinds: Vec<(String, String)> = Vec::new();
    for doc in text.split("\n---\n") {
        let field = |key: &str| {
            doc.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let name = doc
            .lines()
            .skip_while(|l| *l != "metadata:")
            .find_map(|l| l.strip_prefix("  name: "))
            .unwrap_or_default()
            .to_string();
        kinds.push((field("kind: "), name));
    }
    kinds.sort();
    let has = |kind: &str, name: &str| kinds.iter().any(|(k, n)| k == kind && n == name);
    for (kind, name) in [
        ("RuntimeClass", "rune"),
        ("Namespace", "inclavare-system"),
        ("DaemonSet", "rune-node-installer"),
        ("Deployment", "verdictd"),
        ("Service", "verdictd"),
        ("NetworkPolicy", "verdictd"),
        ("PersistentVolumeClaim", "verdictd-state"),
    ] {
        assert!(has(kind, name), "{kind} {name} not rendered: {kinds:?}");
    }
    // The generated ConfigMaps carry the files the pods read, under hashed names that
    // the pods reference.
    assert!(text.contains("install.sh: |"), "{text}");
    assert!(text.contains("verdictd.toml: |"), "{text}");
    assert!(
        !text.contains("image: inclavare\n"),
        "image names not set: {text}"
    );
}

/// `install.sh` with its environment, stdio captured: (exit code, stderr).
fn install(host: &Path, artifacts: &Path, extra: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new("sh")
        .arg(deploy().join("node/install.sh"))
        .env("HOST_ROOT", host)
        .env("ARTIFACTS", artifacts)
        .env("CONFIG_DIR", deploy().join("node"))
        .envs(extra.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir` with its mode and contents, for "a second run changes nothing".
fn tree(dir: &Path) -> Vec<(PathBuf, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.clone(),
                    m.permissions().mode(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// `containerd config dump` with `etc` as /etc/containerd, in a private mount namespace.
fn config_dump(etc: &Path) -> (bool, String) {
    let script = format!(
        "mount --make-rprivate / && mount --bind {} /etc/containerd && exec containerd --config /etc/containerd/config.toml config dump",
        etc.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_node_installer_registers_the_handler_that_containerd_reads() {
    if !is_root() || !on_path("containerd") {
        println!("skipped: the node installer test needs root and containerd");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (host, artifacts) = (t.path().join("host"), t.path().join("artifacts"));
    let release = workspace_root().join("target/release");
    for (from, to) in [
        ("rune", "bin/rune"),
        ("containerd-shim-rune-v2", "bin/containerd-shim-rune-v2"),
        ("sim-sign", "bin/sim-sign"),
        ("liberpal-sim.so", "lib/rune/liberpal-sim.so"),
    ] {
        let to = artifacts.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(release.join(from), &to).unwrap();
    }

    // A node without a containerd config: one is written that imports the drop-in.
    let (code, err) = install(&host, &artifacts, &[]);
    assert_eq!(code, 0, "{err}");
    for b in ["rune", "containerd-shim-rune-v2", "sim-sign"] {
        let m = std::fs::metadata(host.join("usr/local/bin").join(b)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755, "{b}");
    }
    assert!(host.join("usr/local/lib/rune/liberpal-sim.so").is_file());
    let key = std::fs::metadata(host.join("etc/inclavare-containers/sim-signer.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600, "signing key mode");
    let before = tree(&host);
    let (code, err) = install(&host, &artifacts, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(tree(&host), before, "a second run changed the node");

    let etc = host.join("etc/containerd");
    let (ok, dump) = config_dump(&etc);
    assert!(ok, "{dump}");
    let section = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.rune]";
    let rune = dump
        .split_once(section)
        .map(|(_, rest)| rest.split("\n\n").next().unwrap_or(rest).to_string())
        .unwrap_or_else(|| panic!("no handler rune in containerd's view: {dump}"));
    assert!(
        rune.contains("runtime_type = \"io.containerd.rune.v2\""),
        "{rune}"
    );
    assert!(rune.contains("pod_annotations = [\"enclave.*\"]"), "{rune}");
    assert!(
        rune.contains("container_annotations = [\"enclave.*\"]"),
        "{rune}"
    );

    // An operator's config keeps its own CRI settings (a drop-in would replace the whole
    // CRI section in containerd 1.6 and 1.7) and gains the handler; no newline at its end.
    std::fs::write(
        etc.join("config.toml"),
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"example/pause:1\"",
    )
    .unwrap();
    let (code, err) = install(&host, &artifacts, &[]);
    assert_eq!(code, 0, "{err}");
    let (ok, dump) = config_dump(&etc);
    assert!(ok, "{dump}");
    assert!(
        dump.contains("sandbox_image = \"example/pause:1\""),
        "{dump}"
    );
    assert!(dump.contains(section), "{dump}");
    let before = tree(&host);
    let (code, err) = install(&host, &artifacts, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        tree(&host),
        before,
        "a second run changed the operator's config"
    );

    // One that defines a handler rune itself is left to the operator, in one line;
    // nothing changes.
    let theirs = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.rune]\n  runtime_type = \"io.containerd.runc.v2\"\n";
    std::fs::write(etc.join("config.toml"), theirs).unwrap();
    let before = tree(&host);
    let (code, err) = install(&host, &artifacts, &[]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("already defines a runtime handler rune"),
        "{err}"
    );
    assert_eq!(tree(&host), before);

    // A config version other than the node's, or an unknown one, is refused before
    // anything is touched.
    for v in ["3", "4"] {
        let (code, err) = install(&host, &artifacts, &[("CONTAINERD_CONFIG_VERSION", v)]);
        assert_eq!((code, err.lines().count()), (1, 1), "{err}");
        assert_eq!(tree(&host), before);
    }
}
