//! The private containerd the shim's integration tests run under (Debian's package, as
//! test-support's `Containerd` starts it): the shim on its PATH with its config file,
//! the busybox test image imported from a local OCI tar, and checks that nothing is left.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use test_support::Containerd;

pub const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-rune-v2");
pub const IMAGE: &str = "docker.io/library/busybox:rune";
pub const RUNTIME: &str = "io.containerd.rune.v2";

pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    println!("skipped: {test} needs root (containerd, namespaces, mounts)");
    false
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Release artifacts of other workspace packages, built if missing.
pub fn artifact(package: &str, file: &str) -> PathBuf {
    let path = workspace().join("target/release").join(file);
    if !path.exists() {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", package])
            .current_dir(workspace())
            .status()
            .unwrap()
            .success();
        assert!(ok, "cargo build -p {package}");
    }
    path
}

pub fn unique_id(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// A private containerd ([`test_support::Containerd`], which it dereferences to) whose
/// shims read `config.toml` in its directory, with the busybox image imported.
pub struct Ctrd {
    c: Containerd,
}

impl std::ops::Deref for Ctrd {
    type Target = Containerd;
    fn deref(&self) -> &Containerd {
        &self.c
    }
}

impl std::ops::DerefMut for Ctrd {
    fn deref_mut(&mut self) -> &mut Containerd {
        &mut self.c
    }
}

impl Ctrd {
    /// containerd with its CRI plugin disabled, busybox imported as [`IMAGE`].
    pub fn start() -> Ctrd {
        Ctrd::start_with(|_| {})
    }

    /// As [`start`](Self::start), with `configure` applied before the daemon starts
    /// (e.g. [`Containerd::enable_cri`]).
    pub fn start_with(configure: impl FnOnce(&mut Containerd)) -> Ctrd {
        let mut c = Containerd::new("shimtest").unwrap();
        c.link_program("containerd-shim-rune-v2", Path::new(SHIM))
            .unwrap();
        let config = c.path().join("config.toml");
        c.set_env("INCLAVARE_CONTAINERS_CONFIG", config);
        let sim = c.path().join("sim");
        c.set_env("INCLAVARE_SIM_PLATFORM_DIR", sim);
        let key = c.path().join("signer.key");
        let sign = artifact("pal-sim", "sim-sign");
        let ok = Command::new(&sign)
            .args(["keygen", "--out"])
            .arg(&key)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "sim-sign keygen");
        configure(&mut c);
        let c = Ctrd { c };
        c.write_config("");
        let mut c = c;
        c.spawn_daemon().unwrap();
        let tar = test_support::busybox_oci_tar().unwrap();
        c.import("default", &tar, IMAGE).unwrap();
        c
    }

    /// The shim's config file, with `extra` appended (tables may follow).
    pub fn write_config(&self, extra: &str) {
        self.write_config_pal(&artifact("pal-sim", "liberpal_sim.so"), extra);
    }

    /// The shim's config file with `pal` as the sim enclave runtime.
    pub fn write_config_pal(&self, pal: &Path, extra: &str) {
        let d = self.path().display();
        let rune = artifact("rune", "rune");
        std::fs::write(
            self.path().join("config.toml"),
            format!(
                "rune = \"{}\"\nrune_root = \"{d}/rune\"\nlog_level = \"debug\"\n{extra}\n\
                 [enclave_runtime.sim]\nenclave_runtime_path = \"{}\"\n\
                 signing_key = \"{d}/signer.key\"\ncache_dir = \"{d}/sim-cache\"\n",
                rune.display(),
                pal.display()
            ),
        )
        .unwrap();
    }

    /// What is left of container `id`: processes, mounts, cgroups, rune state.
    pub fn container_leftovers(&self, id: &str) -> Vec<String> {
        let mut found = Vec::new();
        if self.path().join("rune/default").join(id).exists() {
            found.push("rune state directory".to_string());
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mounts.lines().filter(|l| l.contains(id)) {
            found.push(format!("mount {line}"));
        }
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.contains(id) && !cmdline.contains("/ctr ") {
                    found.push(format!("process {cmdline}"));
                }
            }
        }
        for base in [
            "/sys/fs/cgroup/memory/default",
            "/sys/fs/cgroup/pids/default",
            "/sys/fs/cgroup/unified/default",
        ] {
            if Path::new(base).join(id).exists() {
                found.push(format!("cgroup {base}/{id}"));
            }
        }
        found
    }

    /// The task's status as `ctr task ls` shows it.
    pub fn status(&self, id: &str) -> String {
        self.task_status("default", id)
    }

    /// `ctr` with `args` creating container `id`, which must fail and leave nothing;
    /// returns containerd's error.
    pub fn run_fails(&self, id: &str, args: &[&str]) -> String {
        let (code, _, err) = self.ctr(args);
        assert_ne!(code, 0, "{args:?} succeeded");
        self.ctr(&["container", "delete", id]);
        self.assert_clean(id);
        err
    }

    /// Runs container `id` with `RUNE_CARRIER=sim`, asking its enclave for a report.
    pub fn sim_report(&self, id: &str) -> sim_tee::Report {
        let (code, out, err) = self.ctr(&[
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            "--env",
            "RUNE_CARRIER=sim",
            IMAGE,
            id,
            "sh",
            "-c",
            REPORT_SCRIPT,
        ]);
        assert_eq!(code, 0, "stdout {out} stderr {err}\n{}", self.log());
        sim_tee::Report::parse(&hex::decode(out.trim()).expect("a hex report")).unwrap()
    }

    /// SIGKILL, wait for STOPPED, delete the task and the container; nothing is left.
    pub fn kill_and_remove(&self, id: &str) {
        let (code, _, err) = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        assert_eq!(code, 0, "{err}");
        let stopped = wait_until(Duration::from_secs(10), || self.status(id) == "STOPPED");
        assert!(stopped, "{}", self.log());
        let (code, _, err) = self.ctr(&["task", "delete", id]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = self.ctr(&["container", "delete", id]);
        assert_eq!(code, 0, "{err}");
        self.assert_clean(id);
    }

    pub fn assert_clean(&self, id: &str) {
        let ok = wait_until(Duration::from_secs(10), || {
            self.container_leftovers(id).is_empty()
        });
        assert!(ok, "left behind: {:?}", self.container_leftovers(id));
    }
}

/// The boot image of the confidential-image tests: busybox with Cmd
/// `/.rune/enclave-boot` ("run the image's own command"). A repository of its own, so
/// that [`Containerd::import`]'s base name (`<repository>:latest`) never renames
/// [`IMAGE`]'s.
pub const BOOT_IMAGE: &str = "docker.io/library/rune-boot:v1";

/// Whether a confidential-image test can run: root, and the registry, skopeo, umoci
/// and openssl it uses; else says why in one line.
pub fn needs(test: &str) -> bool {
    if !root_or_skip(test) {
        return false;
    }
    for tool in [
        "/usr/bin/skopeo",
        "/usr/bin/docker-registry",
        "/usr/bin/umoci",
        "/usr/bin/openssl",
    ] {
        if !Path::new(tool).exists() {
            println!("skipped: {test} needs {tool} (make test installs it)");
            return false;
        }
    }
    true
}

/// Installs the PAL with `enclave-boot` and its signed manifest beside it under
/// `c/lib`, as `make install` does, and points the shim's config at that PAL (rune
/// finds the boot program beside it); returns the boot program's mr_enclave.
pub fn install_boot(c: &Ctrd) -> String {
    let (pal, mr) =
        test_support::install_boot(&c.path().join("lib"), &c.path().join("signer.key")).unwrap();
    c.write_config_pal(&pal, "");
    mr
}

/// Imports [`BOOT_IMAGE`] into containerd's `namespace`: the busybox layout (made in
/// `dir`) with its Cmd set by umoci.
pub fn import_boot_image(c: &Ctrd, dir: &Path, namespace: &str) {
    let layout = dir.join("boot-layout");
    std::fs::create_dir_all(&layout).unwrap();
    let l = layout.display().to_string();
    let busybox = test_support::busybox_oci_tar().unwrap();
    test_support::run("tar", &["-C", &l, "-xf", busybox.to_str().unwrap()]).unwrap();
    test_support::run(
        "umoci",
        &[
            "config",
            "--image",
            &format!("{l}:latest"),
            "--config.cmd",
            "/.rune/enclave-boot",
        ],
    )
    .unwrap();
    let tar = dir.join("boot.tar");
    test_support::run("tar", &["-C", &l, "-cf", tar.to_str().unwrap(), "."]).unwrap();
    c.import(namespace, &tar, BOOT_IMAGE).unwrap();
}

/// The annotations (name, value) giving the confidential image `s` to the boot image:
/// the image, its plain-HTTP registry, the KBS's URL and CA, the policy resource. The
/// enclave's type is left to the caller.
///
/// The KBS CA is a host file rune bind-mounts into the container: the shim lets a
/// container name it only when its configuration lists it, so `c`'s shim config (the
/// PAL [`install_boot`] put under `c/lib`) is rewritten to list this one.
pub fn confidential_annotations(c: &Ctrd, s: &test_support::Confidential) -> Vec<(String, String)> {
    let ca = s.kbs.ca().unwrap().display().to_string();
    c.write_config_pal(
        &c.path().join("lib").join("liberpal-sim.so"),
        &format!("[enclave_image]\nkbs_ca = [\"{ca}\"]\n"),
    );
    [
        ("enclave.image", s.image.reference.clone()),
        ("enclave.image.insecure", s.registry.host()),
        ("enclave.kbs.url", s.kbs.url().to_string()),
        ("enclave.kbs.ca", ca),
        (
            "enclave.image.policy",
            test_support::tenant::POLICY_ID.into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Where the marker's plaintext is found under /tmp, which holds containerd's directory
/// (content store, snapshots, state, bundles, rune's state, CRI logs), and /var.
pub fn plaintext_on_host(c: &Ctrd, marker: &str) -> Vec<String> {
    assert!(c.path().starts_with("/tmp"), "{}", c.path().display());
    test_support::marker_found(&[Path::new("/tmp"), Path::new("/var")], marker)
}

/// The shell that asks the sim enclave for a report and prints it in hex.
pub const REPORT_SCRIPT: &str = "printf '%064d' 7 >&\"$INCLAVARE_SIM_FD\"; \
    dd bs=1k count=1 <&\"$INCLAVARE_SIM_FD\" 2>/dev/null | od -An -v -tx1 | tr -d ' \\n'";
