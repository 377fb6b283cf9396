//! The private containerd the shim's integration tests run under (Debian's package):
//! its own root, state and socket in a temporary directory, the shim on its PATH, the
//! busybox test image imported from a local OCI tar, and checks that nothing is left.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

/// A private containerd whose shims read `config.toml` in its directory.
pub struct Ctrd {
    dir: tempfile::TempDir,
    daemon: Option<Child>,
}

impl Ctrd {
    pub fn start() -> Ctrd {
        let dir = tempfile::Builder::new()
            .prefix("shimtest")
            .tempdir()
            .unwrap();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("containerd.toml"),
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
                 [debug]\n  address = \"{d}/debug.sock\"\n  level = \"debug\"\n"
            ),
        )
        .unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(SHIM, bin.join("containerd-shim-rune-v2")).unwrap();
        let key = dir.path().join("signer.key");
        let sign = artifact("pal-sim", "sim-sign");
        let ok = Command::new(&sign)
            .args(["keygen", "--out"])
            .arg(&key)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "sim-sign keygen");
        let mut c = Ctrd { dir, daemon: None };
        c.write_config("");
        c.import();
        c
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
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

    pub fn spawn_daemon(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("containerd.log"))
            .unwrap();
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.path().join("bin").display()
        );
        let child = Command::new("/usr/bin/containerd")
            .arg("--config")
            .arg(self.path().join("containerd.toml"))
            .env("PATH", path)
            .env(
                "INCLAVARE_CONTAINERS_CONFIG",
                self.path().join("config.toml"),
            )
            .env("INCLAVARE_SIM_PLATFORM_DIR", self.path().join("sim"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        self.daemon = Some(child);
        let ok = wait_until(Duration::from_secs(20), || self.ctr(&["version"]).0 == 0);
        assert!(ok, "containerd did not start:\n{}", self.log());
    }

    pub fn import(&mut self) {
        self.spawn_daemon();
        let images = workspace().join("target/images");
        let ok = Command::new(workspace().join("scripts/busybox-image.sh"))
            .arg(&images)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "busybox image");
        let tar = images.join("busybox-oci.tar");
        let (code, _, err) = self.ctr(&[
            "images",
            "import",
            "--index-name",
            IMAGE,
            tar.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "import: {err}");
    }

    /// Stops containerd (by its pid); its shims keep running.
    pub fn stop_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("containerd.log")).unwrap_or_default()
    }

    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("/usr/bin/ctr");
        cmd.arg("-a").arg(self.path().join("c.sock")).args(args);
        cmd
    }

    /// (exit code, stdout, stderr)
    pub fn ctr(&self, args: &[&str]) -> (i32, String, String) {
        self.ctr_input(args, None)
    }

    pub fn ctr_input(&self, args: &[&str], input: Option<&[u8]>) -> (i32, String, String) {
        let out = tempfile::tempfile().unwrap();
        let err = tempfile::tempfile().unwrap();
        let mut child = self
            .ctr_cmd(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .spawn()
            .unwrap();
        if let Some(data) = input {
            let mut w = child.stdin.take().unwrap();
            w.write_all(data).unwrap();
        }
        let status = child.wait().unwrap();
        let read = |mut f: std::fs::File| {
            use std::io::{Read, Seek};
            let mut s = String::new();
            f.rewind().unwrap();
            f.read_to_string(&mut s).unwrap();
            s
        };
        (status.code().unwrap_or(-1), read(out), read(err))
    }

    /// What is left of container `id`: processes, mounts, cgroups, rune state.
    pub fn leftovers(&self, id: &str) -> Vec<String> {
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
        let (_, out, _) = self.ctr(&["task", "ls"]);
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
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
        let ok = wait_until(Duration::from_secs(10), || self.leftovers(id).is_empty());
        assert!(ok, "left behind: {:?}", self.leftovers(id));
    }
}

impl Drop for Ctrd {
    fn drop(&mut self) {
        // Shims of a failed test: end them (they are ours: their socket is in our dir).
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.contains("containerd-shim-rune-v2")
                && cmdline.contains(&*self.path().to_string_lossy())
            {
                if let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        self.stop_daemon();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = self.path().to_string_lossy().to_string();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The shell that asks the sim enclave for a report and prints it in hex.
pub const REPORT_SCRIPT: &str = "printf '%064d' 7 >&\"$INCLAVARE_SIM_FD\"; \
    dd bs=1k count=1 <&\"$INCLAVARE_SIM_FD\" 2>/dev/null | od -An -v -tx1 | tr -d ' \\n'";
