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

/// The kubectls to render with: Debian 12's (unpacked by `make test`: kustomize 2.0, the
/// oldest an operator here has) and the one on PATH, if any.
fn kubectls() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let debian = workspace_root().join("target/tools/kubernetes-client/usr/bin/kubectl");
    if debian.exists() {
        found.push(debian);
    }
    if on_path("kubectl") {
        found.push("kubectl".into());
    }
    found
}

#[test]
fn kustomize_renders_every_object() {
    let kubectls = kubectls();
    if kubectls.is_empty() {
        println!("skipped: kustomize_renders_every_object needs kubectl (make test unpacks Debian's kubernetes-client)");
        return;
    }
    for kubectl in kubectls {
        renders_every_object(&kubectl);
        renders_verdictd_on_postgres(&kubectl);
    }
}

/// `kubectl kustomize DIR`: every object's (kind, name), and the text.
fn render(kubectl: &Path, dir: &Path) -> (Vec<(String, String)>, String) {
    let out = Command::new(kubectl)
        .args(["kustomize", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} kustomize {}: {}",
        kubectl.display(),
        dir.display(),
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
        // kustomize 2.0 leaves an empty document where a `$patch: delete` was.
        if !doc.trim().is_empty() {
            kinds.push((field("kind: "), name));
        }
    }
    kinds.sort();
    (kinds, text)
}

fn renders_every_object(kubectl: &Path) {
    let (kinds, text) = render(kubectl, &deploy());
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
    // verdictd's state is on the claim (the base's emptyDir replaced).
    let deployment = text
        .split("\n---\n")
        .find(|d| d.contains("kind: Deployment"))
        .unwrap();
    assert!(
        deployment.contains("claimName: verdictd-state"),
        "{deployment}"
    );
    assert!(!deployment.contains("emptyDir"), "{deployment}");
    // The node installer mounts the KBS CA's ConfigMap, optional until the operator
    // makes it.
    let daemonset = text
        .split("\n---\n")
        .find(|d| d.contains("kind: DaemonSet"))
        .unwrap();
    assert!(
        daemonset.contains("      - configMap:\n          name: kbs-ca\n          optional: true\n        name: kbs-ca"),
        "{daemonset}"
    );
}

/// The PostgreSQL option: two verdictd replicas without a volume of their own, their
/// configuration on the database, which only they reach.
fn renders_verdictd_on_postgres(kubectl: &Path) {
    let (kinds, text) = render(kubectl, &deploy().join("verdictd-postgres"));
    let names: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}/{n}")).collect();
    let mut want = vec![
        "ConfigMap/verdictd-config",
        "ConfigMap/verdictd-postgres-hba",
        "Deployment/verdictd",
        "NetworkPolicy/verdictd",
        "NetworkPolicy/verdictd-postgres",
        "Service/verdictd",
        "Service/verdictd-postgres",
        "StatefulSet/verdictd-postgres",
    ];
    want.sort();
    let got: Vec<String> = names
        .iter()
        .map(|n| match n.rsplit_once('-') {
            // a generated ConfigMap's hash suffix
            Some((base, _)) if n.starts_with("ConfigMap/") => base.to_string(),
            _ => n.clone(),
        })
        .collect();
    assert_eq!(got, want, "{text}");
    let doc = |kind: &str, name: &str| {
        text.split("\n---\n")
            .find(|d| {
                d.contains(&format!("kind: {kind}\n")) && d.contains(&format!("\n  name: {name}\n"))
            })
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .to_string()
    };
    let deployment = doc("Deployment", "verdictd");
    assert!(deployment.contains("  replicas: 2\n"), "{deployment}");
    assert!(
        !deployment.contains("persistentVolumeClaim"),
        "{deployment}"
    );
    for secret in [
        "verdictd-postgres",
        "verdictd-seal",
        "verdictd-tls",
        "verdictd-keys",
    ] {
        assert!(
            deployment.contains(&format!("secretName: {secret}\n")),
            "{deployment}"
        );
    }
    assert!(text.contains("type = \"postgres\""), "{text}");
    let egress = doc("NetworkPolicy", "verdictd");
    assert!(egress.contains("port: 5432"), "{egress}");
    assert!(
        egress.contains("app.kubernetes.io/name: verdictd-postgres"),
        "{egress}"
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

    // No KBS CA given: the shim's configuration is not written (its defaults apply).
    let shim_config = host.join("etc/inclavare-containers/config.toml");
    assert!(!shim_config.exists());

    // The KBS's CA from the optional ConfigMap: installed for every user to read, and
    // listed in the shim's configuration, written once, which the shim loads.
    let ca = t.path().join("ca.crt");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let with_ca = [("KBS_CA", ca.to_str().unwrap())];
    let (code, err) = install(&host, &artifacts, &with_ca);
    assert_eq!((code, err.as_str()), (0, ""));
    let installed = host.join("etc/inclavare-containers/kbs-ca.pem");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&ca).unwrap()
    );
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let loaded = shim_rune::Config::load(&shim_config).unwrap();
    assert_eq!(
        loaded.enclave_image.kbs_ca,
        vec![PathBuf::from("/etc/inclavare-containers/kbs-ca.pem")]
    );
    let before = tree(&host);
    let (code, err) = install(&host, &artifacts, &with_ca);
    assert_eq!(code, 0, "{err}");
    assert_eq!(tree(&host), before, "a second run changed the node");
    // An operator's own configuration is kept; one line says the CA is not listed.
    std::fs::write(&shim_config, "log_level = \"debug\"\n").unwrap();
    let (code, err) = install(&host, &artifacts, &with_ca);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("does not list /etc/inclavare-containers/kbs-ca.pem"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&shim_config).unwrap(),
        "log_level = \"debug\"\n"
    );

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
    assert!(
        rune.contains(
            "pod_annotations = [\"enclave.*\", \"io.katacontainers.config.hypervisor.cc_init_data\"]"
        ),
        "{rune}"
    );
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

    // containerd is restarted (through the host's pid 1) only when its config is not the
    // one it was last restarted with: a recreated installer pod on an installed node
    // leaves it running, a failed restart is tried again. `nsenter` here records its
    // arguments, and fails while `nsenter.fail` exists.
    let fake = t.path().join("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    let calls = t.path().join("nsenter.calls");
    let fail = t.path().join("nsenter.fail");
    std::fs::write(
        fake.join("nsenter"),
        format!(
            "#!/bin/sh\n[ -e {} ] && exit 1\necho \"$*\" >> {}\n",
            fail.display(),
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(fake.join("nsenter"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    let restart = [("RESTART_CONTAINERD", "1"), ("PATH", path.as_str())];
    let node = t.path().join("node");
    // The first restart fails: the run fails in one line, and the next run restarts.
    std::fs::write(&fail, "").unwrap();
    let (code, err) = install(&node, &artifacts, &restart);
    assert_eq!(
        (code, err.trim()),
        (
            1,
            "rune-installer: could not restart containerd on the node"
        )
    );
    std::fs::remove_file(&fail).unwrap();
    let restarts = || {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (code, err) = install(&node, &artifacts, &restart);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        restarts(),
        ["--target 1 --mount --uts --ipc --net --pid -- systemctl restart containerd"]
    );
    for _ in 0..2 {
        let (code, err) = install(&node, &artifacts, &restart);
        assert_eq!(code, 0, "{err}");
        assert_eq!(restarts().len(), 1, "restarted without a change");
    }
    // The config changed since (an operator's setting added): restarted once more.
    let config = node.join("etc/containerd/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"example/pause:2\"\n"),
    )
    .unwrap();
    for _ in 0..2 {
        let (code, err) = install(&node, &artifacts, &restart);
        assert_eq!(code, 0, "{err}");
        assert_eq!(restarts().len(), 2);
    }
}
