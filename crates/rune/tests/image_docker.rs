//! Confidential images through docker: `docker run --runtime rune` of a small public
//! boot image (busybox) whose sim enclave pulls another image, named only by
//! `ENCLAVE_IMAGE`, from a private `docker-registry` on loopback, under a private dockerd.
//! `enclave-boot` is installed beside a copy of the PAL, as `make install` does. After
//! the runs the image's plaintext is nowhere in dockerd's data or exec root.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use test_support::registry::{Auth, Pushed, Registry};

/// The content of `/etc/marker` in the confidential image; its Cmd prints it upper-cased
/// so the marker never passes through docker's streams or logs.
const MARKER: &str = "confidential-marker-docker-3c9e58";
/// busybox with Cmd `/.rune/enclave-boot`: "run the confidential image's own command".
const BOOT_IMAGE: &str = "busybox:boot";

/// busybox plus `/etc/marker`, Cmd `sh -c 'tr a-z A-Z < /etc/marker'`, pushed by
/// skopeo; with the digests the boot image does not share with it. Its `/etc/hosts`
/// holds the marker too: docker bind-mounts its own, read-write, from the container's
/// directory in its data root, and the unpacking must not write through it.
fn push_image(dir: &Path, registry: &Registry) -> (Pushed, Vec<String>) {
    let source = test_support::ImageBuilder::new()
        .base(&images().join("busybox-oci.tar"))
        .file("etc/marker", format!("{MARKER}\n").as_bytes())
        .file("etc/hosts", format!("10.9.9.9 {MARKER}\n").as_bytes())
        .cmd(&["/bin/sh", "-c", "tr a-z A-Z < /etc/marker"])
        .build(&dir.join("layout"), "v1")
        .unwrap();
    let image = registry.push(&source, "test/app:v1").unwrap();
    let own = vec![
        image.manifest_digest.clone(),
        image.config_digest.clone(),
        image.layers.last().unwrap().clone(),
    ];
    (image, own)
}

/// A copy of the PAL with the static `enclave-boot` and its signed manifest beside it,
/// as `make install` lays them out; returns the PAL's path.
fn install_pal(dir: &Path) -> PathBuf {
    let host = String::from_utf8(Command::new("rustc").arg("-vV").output().unwrap().stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .unwrap();
    let boot = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target")
        .join(host)
        .join("release/enclave-boot");
    assert!(
        boot.exists(),
        "{} is missing: `make build` makes it",
        boot.display()
    );
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let (pal, _) = sim_artifacts();
    std::fs::copy(pal, lib.join("liberpal-sim.so")).unwrap();
    std::fs::copy(&boot, lib.join("enclave-boot")).unwrap();
    sim_sign(
        dir,
        &lib.join("enclave-boot"),
        "/.rune/enclave-boot",
        &lib.join("enclave-boot.manifest.json"),
    );
    lib.join("liberpal-sim.so")
}

/// What container `id` left: processes naming it (the shim too), its cgroups and mounts,
/// and any file or directory under the daemon's directory named after it (rune's state
/// under the exec root, docker's container directory).
fn docker_leftovers(d: &Dockerd, id: &str) -> Vec<String> {
    let mut found = leftovers(Path::new("/nonexistent"), id);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(id) && !cmdline.contains(RUNE) {
            found.push(format!("process {cmdline}"));
        }
    }
    let mut stack = vec![d.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().contains(id) {
                found.push(format!("{}", e.path().display()));
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    found
}

#[test]
fn docker_runs_a_confidential_image_and_keeps_only_the_boot_image() {
    let test = "docker_runs_a_confidential_image_and_keeps_only_the_boot_image";
    if !root_or_skip(test)
        || !tool_or_skip(test, "/usr/sbin/dockerd")
        || !tool_or_skip(test, "/usr/bin/skopeo")
        || !tool_or_skip(test, "/usr/bin/docker-registry")
        || !tool_or_skip(test, "/usr/bin/umoci")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"), Auth::None).unwrap();
    let (image, own_digests) = push_image(dir.path(), &registry);
    let pal = install_pal(dir.path());
    let d = Dockerd::start();
    let tar = images().join("rootfs.tar");
    let (code, _, err) = d.docker(&[
        "import",
        "--change",
        "CMD [\"/.rune/enclave-boot\"]",
        tar.to_str().unwrap(),
        BOOT_IMAGE,
    ]);
    assert_eq!(code, 0, "import: {err}");

    let settings = [
        "ENCLAVE_TYPE=sim".to_string(),
        format!("ENCLAVE_RUNTIME_PATH={}", pal.display()),
        format!("ENCLAVE_IMAGE={}", image.reference),
        format!("ENCLAVE_IMAGE_INSECURE={}", registry.host()),
    ];
    // Host network: the registry is on the host's loopback.
    let run = |extra: &[&str], boot: &str, args: &[&str]| {
        let mut v = vec![
            "run",
            "--runtime",
            "rune",
            "--network",
            "host",
            "--pull=never",
        ];
        for s in &settings {
            v.extend(["-e", s.as_str()]);
        }
        v.extend(extra);
        v.push(boot);
        v.extend(args);
        d.docker(&v)
    };
    let want = format!("{}\n", MARKER.to_uppercase());

    // The boot image's Cmd asks for the confidential image's own Cmd. The container is
    // kept until the search below, with its hosts file, log and config in the data root.
    let name = unique_id("dkimg");
    let (code, out, err) = run(&["--name", &name], BOOT_IMAGE, &[]);
    assert_eq!((code, out.as_str()), (0, want.as_str()), "{err}");
    assert!(
        err.contains(&format!(
            "enclave-boot: manifest {} ",
            image.manifest_digest
        )),
        "{err}"
    );
    let (_, hosts, _) = d.docker(&["inspect", "-f", "{{.HostsPath}}", &name]);
    let hosts = PathBuf::from(hosts.trim());
    assert!(
        hosts.starts_with(d.path()) && hosts.is_file(),
        "{}",
        hosts.display()
    );

    // A command overrides the image's Cmd; its exit code is docker's.
    let (code, out, err) = run(
        &["--rm"],
        "busybox:rune",
        &["sh", "-c", "tr a-z A-Z < /etc/marker; exit 3"],
    );
    assert_eq!((code, out.as_str()), (3, want.as_str()), "{err}");

    // dockerd's data and exec roots hold neither the marker nor the image's blobs.
    let digests: Vec<&str> = own_digests.iter().map(String::as_str).collect();
    let traces = test_support::image_traces(&[d.path()], MARKER, &digests);
    assert!(traces.is_empty(), "the image reached the host: {traces:?}");
    assert_eq!(d.docker(&["rm", &name]).0, 0);

    // A missing image: one line from enclave-boot, exit 125, nothing left.
    let cid_file = dir.path().join("cid");
    let cid_arg = cid_file.display().to_string();
    let absent = format!("ENCLAVE_IMAGE={}/test/absent:v1", registry.host());
    let (code, out, err) = run(
        &["--rm", "--cidfile", &cid_arg, "-e", &absent],
        BOOT_IMAGE,
        &[],
    );
    assert_eq!((code, out.as_str()), (125, ""), "{err}");
    let failures: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("enclave-boot:") && !l.contains("pulling"))
        .collect();
    assert_eq!(failures.len(), 1, "{err}");
    assert!(failures[0].contains("test/absent"), "{err}");
    let id = std::fs::read_to_string(&cid_file).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || docker_leftovers(&d, &id)
            .is_empty()),
        "{:?}",
        docker_leftovers(&d, &id)
    );

    // The same search finds the image once docker itself pulls it (127.0.0.0/8
    // registries are plain HTTP to docker by default).
    let (code, _, err) = d.docker(&["pull", "-q", &image.reference]);
    assert_eq!(code, 0, "{err}");
    let traces = test_support::image_traces(&[d.path()], MARKER, &digests);
    assert!(
        traces.iter().any(|t| t.starts_with("marker in ")),
        "{traces:?}"
    );
    assert!(
        traces.iter().any(|t| t.starts_with("digest ")),
        "{traces:?}"
    );
}
