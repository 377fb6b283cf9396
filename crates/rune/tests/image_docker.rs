//! Confidential images through docker: `docker run --runtime rune` of a small public
//! boot image (busybox) whose sim enclave pulls another image, named only by
//! `ENCLAVE_IMAGE`, from a private `docker-registry` on loopback, under a private dockerd.
//! `enclave-boot` is installed beside a copy of the PAL, as `make install` does. After
//! the runs the image's plaintext is nowhere in dockerd's data or exec root.
//!
//! The confidential case (`ENCLAVE_KBS_URL`, `ENCLAVE_KBS_CA`, `ENCLAVE_IMAGE_POLICY`):
//! an image the tenant encrypted and signed with our `enclave-image` tool, its KEK
//! stored in a real HTTPS verdictd through the admin API and its `sigstoreSigned` policy
//! held there; and the same image when verdictd does not admit the enclave.

mod common;

use std::path::{Path, PathBuf};
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
/// as `make install` lays them out; returns the PAL's path and the boot program's
/// mr_enclave.
fn install_pal(dir: &Path) -> (PathBuf, String) {
    test_support::install_boot(&dir.join("lib"), &dir.join("signer.key")).unwrap()
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
    let (pal, _) = install_pal(dir.path());
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
        .filter(|l| l.starts_with("enclave-boot: error:"))
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

/// A private dockerd with [`BOOT_IMAGE`] imported, and the confidential image `s` (made
/// by the tenant's `enclave-image`, its policy and KEK in verdictd) named by the
/// variables of `docker run -e`, the PAL at `pal`.
struct DockerBed {
    d: Dockerd,
    settings: Vec<String>,
}

impl DockerBed {
    fn new(s: &test_support::Confidential, pal: &Path) -> DockerBed {
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
        let settings = vec![
            "ENCLAVE_TYPE=sim".to_string(),
            format!("ENCLAVE_RUNTIME_PATH={}", pal.display()),
            format!("ENCLAVE_IMAGE={}", s.image.reference),
            format!("ENCLAVE_IMAGE_INSECURE={}", s.registry.host()),
            format!("ENCLAVE_KBS_URL={}", s.kbs.url()),
            format!("ENCLAVE_KBS_CA={}", s.kbs.ca().unwrap().display()),
            format!("ENCLAVE_IMAGE_POLICY={}", test_support::tenant::POLICY_ID),
        ];
        DockerBed { d, settings }
    }

    /// `docker run --rm --runtime rune --network host` of the boot image (its Cmd asks
    /// for the image's own), the container id written to `cid`; returns (exit code,
    /// stdout, stderr) and the container's id.
    fn run(&self, cid: &Path) -> ((i32, String, String), String) {
        let cid_arg = cid.display().to_string();
        let mut v = vec![
            "run",
            "--rm",
            "--runtime",
            "rune",
            "--network",
            "host",
            "--pull=never",
            "--cidfile",
            &cid_arg,
        ];
        for e in &self.settings {
            v.extend(["-e", e.as_str()]);
        }
        v.push(BOOT_IMAGE);
        let out = self.d.docker(&v);
        (out, std::fs::read_to_string(cid).unwrap())
    }

    /// Asserts that docker keeps nothing of container `id` (no container, process,
    /// cgroup, mount or file named after it) and that the marker's plaintext is nowhere
    /// under /tmp (which holds docker's data and exec roots) or /var.
    fn assert_clean(&self, id: &str, marker: &str) {
        assert!(
            wait_until(Duration::from_secs(10), || docker_leftovers(&self.d, id)
                .is_empty()),
            "{:?}",
            docker_leftovers(&self.d, id)
        );
        let (code, all, err) = self.d.docker(&["ps", "-aq", "--no-trunc"]);
        assert_eq!(code, 0, "{err}");
        assert!(!all.contains(id), "{all}");
        assert!(
            self.d.path().starts_with("/tmp"),
            "{}",
            self.d.path().display()
        );
        let found = test_support::marker_found(&[Path::new("/tmp"), Path::new("/var")], marker);
        assert_eq!(
            found,
            Vec::<String>::new(),
            "the plaintext reached the host"
        );
    }
}

fn needs_confidential(test: &str) -> bool {
    root_or_skip(test)
        && [
            "/usr/sbin/dockerd",
            "/usr/bin/docker-registry",
            "/usr/bin/umoci",
            "/usr/bin/openssl",
        ]
        .iter()
        .all(|t| tool_or_skip(test, t))
}

#[test]
fn docker_runs_a_tool_made_confidential_image_with_its_key_from_verdictd() {
    let test = "docker_runs_a_tool_made_confidential_image_with_its_key_from_verdictd";
    if !needs_confidential(test) {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    let (pal, mr) = install_pal(host.path());
    let s = test_support::Confidential::start(host.path(), &mr).unwrap();
    let bed = DockerBed::new(&s, &pal);

    let ((code, out, err), id) = bed.run(&host.path().join("cid"));
    // The image's Cmd prints what the tenant wrote, upper-cased.
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    assert_eq!(out, format!("{}\n", s.marker.to_uppercase()), "{err}");
    assert!(
        err.contains(&format!(
            "enclave-boot: manifest {} ",
            s.image.manifest_digest
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "enclave-boot: signature verified: sigstoreSigned by key #1 for {}/test/app",
            s.registry.host()
        )),
        "{err}"
    );
    for layer in &s.image.layers {
        let prefix = format!("enclave-boot: layer {}: ", &layer[7..19]);
        let line = err.lines().find(|l| l.starts_with(&prefix));
        assert!(
            line.is_some_and(|l| l.contains("decrypted")),
            "{prefix}: {err}"
        );
    }
    // verdictd affirmed the enclave before it released the KEK.
    let (attested, released) = s.attested_then_released();
    assert!(
        attested.is_some() && released.is_some() && attested < released,
        "{attested:?} {released:?}: {}",
        s.kbs.log()
    );
    bed.assert_clean(&id, &s.marker);
    // docker holds no blob of the image either.
    let mut digests = vec![s.image.manifest_digest.as_str()];
    digests.extend(s.image.layers.iter().map(String::as_str));
    let traces = test_support::image_traces(&[bed.d.path()], &s.marker, &digests);
    assert!(traces.is_empty(), "the image reached docker: {traces:?}");
    // The search's control: a copy in docker's data root is found.
    let leak = bed.d.path().join("data/leak");
    std::fs::write(&leak, &s.marker).unwrap();
    assert_eq!(
        test_support::marker_found(&[Path::new("/tmp"), Path::new("/var")], &s.marker),
        [leak.display().to_string()]
    );
    std::fs::remove_file(&leak).unwrap();
    drop(bed);
    assert_eq!(s.finish(host.path()), Vec::<String>::new());
}

#[test]
fn docker_refuses_a_confidential_image_when_verdictd_refuses_the_enclave() {
    let test = "docker_refuses_a_confidential_image_when_verdictd_refuses_the_enclave";
    if !needs_confidential(test) {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    let (pal, _) = install_pal(host.path());
    // verdictd admits another program than the installed boot program.
    let s = test_support::Confidential::start(host.path(), &"cd".repeat(32)).unwrap();
    let bed = DockerBed::new(&s, &pal);
    let blobs = s.blob_requests();

    let ((code, out, err), id) = bed.run(&host.path().join("cid"));
    assert_eq!((code, out.as_str()), (125, ""), "{err}");
    // verdictd refused the enclave: no key, no layer.
    s.assert_refused_before_the_pull(&err, &blobs);
    bed.assert_clean(&id, &s.marker);
    drop(bed);
    assert_eq!(s.finish(host.path()), Vec::<String>::new());
}
