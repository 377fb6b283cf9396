//! Helpers shared by the integration tests: a private state root, busybox bundles,
//! private daemons stopped by pid when dropped, and checks that nothing is left behind.
#![allow(dead_code)]

pub mod cgroups;
pub mod image;
pub mod parity;
pub mod podman;
pub mod wasm;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const RUNE: &str = env!("CARGO_BIN_EXE_rune");

/// True when running as root; otherwise prints one line saying why the test is skipped.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    println!("skipped: {test} needs root (it creates namespaces, cgroups and mounts)");
    false
}

/// True when `program` is installed; otherwise prints one line saying why.
pub fn tool_or_skip(test: &str, program: &str) -> bool {
    if Path::new(program).exists() {
        return true;
    }
    println!("skipped: {test} needs {program} (make test installs it)");
    false
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The busybox test image (rootfs, rootfs.tar, busybox-oci.tar), built once.
pub fn images() -> PathBuf {
    let dir = workspace().join("target/images");
    let status = Command::new(workspace().join("scripts/busybox-image.sh"))
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .expect("run scripts/busybox-image.sh");
    assert!(status.success(), "building the busybox image failed");
    dir
}

/// The C skeleton test PAL of `version`, compiled once into the target directory.
pub fn skeleton_pal(version: u32) -> PathBuf {
    pal::testing::build_skeleton(version, &workspace().join("target/test-pals"))
}

/// `files` (under target/release) of workspace package `package`, built if missing
/// (`cargo test --release --workspace` builds them along with the tests).
fn release_artifacts<const N: usize>(package: &str, files: [&str; N]) -> [PathBuf; N] {
    let dir = workspace().join("target/release");
    let paths = files.map(|f| dir.join(f));
    if paths.iter().any(|p| !p.exists()) {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", package])
            .current_dir(workspace())
            .status()
            .unwrap_or_else(|e| panic!("cargo build -p {package}: {e}"));
        assert!(status.success(), "cargo build -p {package}");
    }
    paths
}

/// `liberpal-sim.so` and `sim-sign`.
pub fn sim_artifacts() -> (PathBuf, PathBuf) {
    let [so, sign] = release_artifacts("pal-sim", ["liberpal_sim.so", "sim-sign"]);
    (so, sign)
}

/// `liberpal-wasm.so`, the WebAssembly enclave runtime.
pub fn wasm_pal() -> PathBuf {
    let [so] = release_artifacts("pal-wasm", ["liberpal_wasm.so"]);
    so
}

/// A release binary of workspace package `package`.
pub fn release_bin(package: &str, name: &str) -> PathBuf {
    let [bin] = release_artifacts(package, [name]);
    bin
}

/// The `shelter` binary.
pub fn shelter_bin() -> PathBuf {
    release_bin("shelter", "shelter")
}

/// Signs the program `rootfs/<entrypoint>` as a sim enclave with `dir/signer.key`
/// (made on first use), writing `rootfs/enclave.manifest.json`; returns its mr_enclave.
pub fn sim_sign_rootfs(dir: &Path, rootfs: &Path, entrypoint: &str) -> String {
    sim_sign(
        dir,
        &rootfs.join(entrypoint.trim_start_matches('/')),
        entrypoint,
        &rootfs.join("enclave.manifest.json"),
    )
}

/// Signs `executable` as the sim enclave program `entrypoint` with `dir/signer.key`
/// (made on first use), writing the manifest to `out`; returns its mr_enclave.
pub fn sim_sign(dir: &Path, executable: &Path, entrypoint: &str, out: &Path) -> String {
    let (_, sign) = sim_artifacts();
    let key = dir.join("signer.key");
    if !key.exists() {
        assert!(Command::new(&sign)
            .args(["keygen", "--out"])
            .arg(&key)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success());
    }
    let result = Command::new(&sign)
        .args(["sign", "--entrypoint", entrypoint, "--executable"])
        .arg(executable)
        .arg("--key")
        .arg(&key)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    String::from_utf8(result.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("mr_enclave ").map(str::to_string))
        .expect("sim-sign prints mr_enclave")
}

/// rune's error lines in stderr: without `--log`, as runc, `time=… level=error msg="…"`.
pub fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("time=") && l.contains(" level=error msg="))
        .collect()
}

/// The messages of rune's error lines, unquoted (logrus quotes `msg` as Go's `%q`).
pub fn error_messages(stderr: &str) -> Vec<String> {
    error_lines(stderr)
        .into_iter()
        .filter_map(|l| serde_json::from_str(l.split_once(" level=error msg=")?.1).ok())
        .collect()
}

/// A unique container id for this test process.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A private rune state root.
pub struct Rune {
    pub root: tempfile::TempDir,
}

impl Rune {
    pub fn new() -> Self {
        Rune {
            root: tempfile::Builder::new()
                .prefix("rune-root")
                .tempdir()
                .unwrap(),
        }
    }

    /// Runs rune with stdout and stderr in files: a detached container inherits them,
    /// so pipes would stay open for as long as it lives.
    pub fn cmd(&self, args: &[&str]) -> Output {
        let mut c = Command::new(RUNE);
        c.arg("--root").arg(self.root.path()).args(args);
        output_via_files(&mut c)
    }

    /// [`Rune::cmd`] for sim enclaves on the software platform kept in `platform` (its
    /// key, its program digests): the one place tests name `INCLAVARE_SIM_PLATFORM_DIR`
    /// for a rune command.
    pub fn sim(&self, platform: &Path, args: &[&str]) -> Output {
        let mut c = Command::new(RUNE);
        c.env("INCLAVARE_SIM_PLATFORM_DIR", platform)
            .arg("--root")
            .arg(self.root.path())
            .args(args);
        output_via_files(&mut c)
    }

    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "rune {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }
}

/// A bundle directory with a `config.json` running `args` on the shared busybox rootfs.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub spec: Value,
}

impl Bundle {
    pub fn new(args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rune-bundle")
            .tempdir()
            .unwrap();
        let out = Command::new(RUNE)
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rune spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut spec: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        spec["root"] = json!({ "path": images().join("rootfs"), "readonly": true });
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(args);
        let b = Bundle { dir, spec };
        b.save();
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Gives the bundle its own writable copy of the busybox rootfs, for tests that put
    /// files into it (the shared one must stay pristine).
    pub fn private_rootfs(mut self) -> Self {
        let dst = self.dir.path().join("rootfs");
        let status = Command::new("cp")
            .arg("-a")
            .arg(images().join("rootfs"))
            .arg(&dst)
            .status()
            .unwrap();
        assert!(status.success());
        self.spec["root"] = json!({ "path": "rootfs", "readonly": true });
        self.save();
        self
    }

    /// Binds host directory `host` read-write at `dest` (which must exist in the image).
    pub fn bind(mut self, host: &Path, dest: &str) -> Self {
        self.spec["mounts"].as_array_mut().unwrap().push(json!({
            "destination": dest, "type": "bind", "source": host, "options": ["rbind", "rw"]
        }));
        self.save();
        self
    }

    /// Makes it an enclave container of type `sim` running `pal` with `args`.
    pub fn enclave(mut self, pal: &Path, args: &str) -> Self {
        let env = self.spec["process"]["env"].as_array_mut().unwrap();
        env.push(json!("ENCLAVE_TYPE=sim"));
        env.push(json!(format!("ENCLAVE_RUNTIME_PATH={}", pal.display())));
        env.push(json!(format!("ENCLAVE_RUNTIME_ARGS={args}")));
        self.save();
        self
    }

    pub fn save(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.spec).unwrap(),
        )
        .unwrap();
    }
}

/// Copies `exe` and the shared libraries it needs into `rootfs`, at their host paths.
pub fn install(rootfs: &Path, exe: &Path, at: &str) {
    std::fs::copy(exe, rootfs.join(at.trim_start_matches('/'))).unwrap();
    let ldd = Command::new("ldd").arg(exe).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let lib = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(lib) = lib {
            let dst = rootfs.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(&lib, &dst).unwrap();
        }
    }
}

/// Waits until `f` holds, up to `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// What a container with this id left on the host: state directory, cgroups, mounts,
/// processes. Empty means clean.
pub fn leftovers(root: &Path, id: &str) -> Vec<String> {
    let mut found = Vec::new();
    if root.join(id).exists() {
        found.push(format!("state directory {}", root.join(id).display()));
    }
    // Every level: a relative cgroups path nests below the caller's cgroup, which may
    // itself be deep (/user.slice/user-0.slice/session-N.scope). Directories only, never
    // symlinks (file_type does not follow them); the bound only guards against a cycle.
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    let mut depth = 0;
    while let (Some(_), true) = (stack.first(), depth < 64) {
        let mut next = Vec::new();
        for dir in stack.drain(..) {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    continue;
                }
                if entry.file_name().to_string_lossy().contains(id) {
                    found.push(format!("cgroup {}", path.display()));
                } else {
                    next.push(path);
                }
            }
        }
        stack = next;
        depth += 1;
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mounts.lines().filter(|l| l.contains(id)) {
        found.push(format!("mount {line}"));
    }
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(RUNE) && cmdline.contains(id) {
                found.push(format!(
                    "process {}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// A daemon started by a test, stopped (by its pid) when dropped.
pub struct Daemon {
    pub child: Child,
    pub name: &'static str,
}

impl Daemon {
    pub fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Self {
        let log = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Daemon { child, name }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Like `Command::output`, with stdout and stderr through temporary files so that
/// processes left running by the command do not hold the reader open.
pub fn output_via_files(cmd: &mut Command) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .expect("spawn");
    Output {
        status,
        stdout: read_back(out),
        stderr: read_back(err),
    }
}

/// The whole content of a temporary file a child wrote to.
pub fn read_back(mut f: std::fs::File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut v = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

/// Runs a client command, returning (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = output_via_files(cmd);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Unmounts whatever a daemon left mounted under `dir` (deepest first), so the temp
/// directory can be removed even after a failed test.
pub fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(dir.to_str().unwrap()))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

pub struct Containerd {
    dir: tempfile::TempDir,
    _daemon: Daemon,
}

impl Containerd {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("ctrd").tempdir().unwrap();
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
             [debug]\n  address = \"{d}/debug.sock\"\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let daemon = Daemon::spawn(
            "containerd",
            Command::new("/usr/bin/containerd")
                // liberpal-sim's platform key, private to this daemon's containers.
                .env("INCLAVARE_SIM_PLATFORM_DIR", dir.path().join("sim"))
                .arg("--config")
                .arg(dir.path().join("config.toml")),
            &dir.path().join("containerd.log"),
        );
        let sock = dir.path().join("c.sock");
        assert!(
            wait_until(Duration::from_secs(20), || sock.exists()),
            "containerd did not start"
        );
        let c = Containerd {
            dir,
            _daemon: daemon,
        };
        let tar = images().join("busybox-oci.tar");
        let (code, _, err) = c.ctr(&[
            "images",
            "import",
            "--index-name",
            "docker.io/library/busybox:rune",
            tar.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "import: {err}");
        c
    }

    pub fn ctr(&self, args: &[&str]) -> (i32, String, String) {
        run(Command::new("/usr/bin/ctr")
            .arg("-a")
            .arg(self.dir.path().join("c.sock"))
            .args(args))
    }

    /// What is left under the daemon's directory besides the daemon: shims, runtime
    /// processes, mounts ([`test_support::tools::leftovers`]).
    pub fn leftovers(&self) -> Vec<String> {
        test_support::tools::leftovers(self.dir.path())
            .into_iter()
            .filter(|l| !l.contains("/usr/bin/containerd --config"))
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        unmount_under(self.dir.path());
    }
}

pub struct Dockerd {
    dir: tempfile::TempDir,
    _daemon: Daemon,
}

impl Dockerd {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("dockerd")
            .tempdir()
            .unwrap();
        let config = serde_json::json!({ "runtimes": { "rune": { "path": RUNE } } });
        std::fs::write(dir.path().join("daemon.json"), config.to_string()).unwrap();
        let p = |name: &str| dir.path().join(name);
        let daemon = Daemon::spawn(
            "dockerd",
            Command::new("/usr/sbin/dockerd")
                .env("INCLAVARE_SIM_PLATFORM_DIR", dir.path().join("sim"))
                .arg("--data-root")
                .arg(p("data"))
                .arg("--exec-root")
                .arg(p("exec"))
                .arg("-H")
                .arg(format!("unix://{}", p("d.sock").display()))
                .arg("--pidfile")
                .arg(p("d.pid"))
                .arg("--config-file")
                .arg(p("daemon.json"))
                .args([
                    "--iptables=false",
                    "--ip-masq=false",
                    "--bridge=none",
                    "--storage-driver",
                    "vfs",
                ]),
            &p("dockerd.log"),
        );
        let d = Dockerd {
            dir,
            _daemon: daemon,
        };
        assert!(
            wait_until(Duration::from_secs(30), || d.docker(&["info"]).0 == 0),
            "dockerd did not start: {}",
            std::fs::read_to_string(d.dir.path().join("dockerd.log")).unwrap_or_default()
        );
        let tar = images().join("rootfs.tar");
        let (code, _, err) = d.docker(&["import", tar.to_str().unwrap(), "busybox:rune"]);
        assert_eq!(code, 0, "import: {err}");
        d
    }

    /// The daemon's directory: `data` (its data root), `exec` (its exec root), the
    /// socket and the log.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn docker(&self, args: &[&str]) -> (i32, String, String) {
        let host = format!("unix://{}", self.dir.path().join("d.sock").display());
        run(Command::new("/usr/bin/docker")
            .arg("-H")
            .arg(host)
            .args(args))
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        unmount_under(self.dir.path());
    }
}

/// Starts a daemon of ours that announces `listening on ADDR` on stdout (verdictd,
/// inclavared), its stderr in `log`; returns it and ADDR.
pub fn start_announcing(cmd: &mut Command, log: &Path) -> (Child, String) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| {
            panic!(
                "{cmd:?} did not start: {line}{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })
        .to_string();
    (child, addr)
}
