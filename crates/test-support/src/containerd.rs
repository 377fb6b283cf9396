//! A private containerd (Debian's 1.6 package) for integration tests: its root, state,
//! sockets, log and configuration in one temporary directory, programs (shims) linked
//! first on its `PATH`, images imported from local OCI tars, and optionally its CRI
//! plugin (the API kubelet speaks) with named runtime handlers.
//!
//! The configuration is containerd's version 2 format (what 1.6 reads; 1.7 reads it
//! too): `docs/cri/config.md` of containerd 1.6 for the CRI plugin's keys.

use std::ffi::OsString;
use std::io::{self, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::leftovers;

/// The daemon and its client.
pub const CONTAINERD: &str = "/usr/bin/containerd";
pub const CTR: &str = "/usr/bin/ctr";
/// Where Debian's `containernetworking-plugins` are (only suggested by `containerd`:
/// the Makefile's TEST_DEPS installs it).
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The containerd namespace the CRI plugin keeps its pods, containers and images in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// One CRI runtime handler: `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.<handler>]`.
#[derive(Debug, Clone)]
pub struct CriRuntime {
    /// The name a pod's `runtime_handler` (a RuntimeClass's `handler`) selects.
    pub handler: String,
    /// The shim: `io.containerd.<name>.v2` runs `containerd-shim-<name>-v2` from `PATH`.
    pub runtime_type: String,
    /// Pod annotations passed into the OCI spec of the sandbox and of its containers
    /// (patterns as containerd matches them, e.g. `enclave.*`).
    pub pod_annotations: Vec<String>,
    /// Container annotations passed into the container's OCI spec.
    pub container_annotations: Vec<String>,
    /// The shim's options (`…runtimes.<handler>.options`): key and TOML value, e.g.
    /// `("Root", "\"/tmp/x/runc\"")` for the runc shim's state directory.
    pub options: Vec<(String, String)>,
}

impl CriRuntime {
    /// A handler with no annotations passed through.
    pub fn new(handler: &str, runtime_type: &str) -> CriRuntime {
        CriRuntime {
            handler: handler.into(),
            runtime_type: runtime_type.into(),
            pod_annotations: Vec::new(),
            container_annotations: Vec::new(),
            options: Vec::new(),
        }
    }
}

/// The CRI plugin's settings (the plugin stays disabled without them).
#[derive(Debug, Clone)]
pub struct CriConfig {
    /// The pod sandbox ("pause") image; import it (namespace [`CRI_NAMESPACE`]) before
    /// the first pod, there is no registry to pull it from.
    pub sandbox_image: String,
    /// The handlers; the first is the default (an empty `runtime_handler`).
    pub runtimes: Vec<CriRuntime>,
}

/// A private containerd. Made with [`Containerd::new`], configured, then started with
/// [`Containerd::spawn_daemon`]. On drop: shims started for it (`containerd-shim-*`
/// processes whose command line names its directory) are killed by pid, the daemon is
/// stopped (SIGTERM, then SIGKILL after 10 s) and what is mounted under its directory
/// is unmounted, so a failed test leaves no process or mount behind.
pub struct Containerd {
    dir: tempfile::TempDir,
    daemon: Option<Child>,
    env: Vec<(String, OsString)>,
    cri: Option<CriConfig>,
}

impl Containerd {
    /// A temporary directory named `<prefix>…` with `bin/` (first on the daemon's
    /// `PATH`); no daemon yet.
    pub fn new(prefix: &str) -> io::Result<Containerd> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        std::fs::create_dir_all(dir.path().join("bin"))?;
        Ok(Containerd {
            dir,
            daemon: None,
            env: Vec::new(),
            cri: None,
        })
    }

    /// Links `target` as `bin/<name>`, so that containerd (and the shims it starts)
    /// find it before any installed program of that name.
    pub fn link_program(&self, name: &str, target: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, self.path().join("bin").join(name))
    }

    /// An environment variable for the daemon (its shims inherit it).
    pub fn set_env(&mut self, key: &str, value: impl Into<OsString>) {
        self.env.push((key.into(), value.into()));
    }

    /// Enables the CRI plugin (takes effect at the next [`spawn_daemon`](Self::spawn_daemon)).
    pub fn enable_cri(&mut self, cri: CriConfig) {
        self.cri = Some(cri);
    }

    /// The temporary directory everything lives in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The CRI plugin's CNI configuration directory (private, empty at first).
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.path().join("cni")
    }

    /// The gRPC socket (containerd's API and, with the CRI plugin, the CRI services).
    pub fn socket(&self) -> PathBuf {
        self.path().join("c.sock")
    }

    /// A cgroup path (`/<the directory's name>`) for the tests' pods to live under
    /// (their CRI `cgroup_parent`s, as kubelet's `kubepods`): on drop, whatever still
    /// runs in it in any hierarchy is killed and it is removed.
    pub fn cgroup_root(&self) -> String {
        format!(
            "/{}",
            self.path()
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
        )
    }

    /// The daemon's pid while it runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// `containerd.toml` as [`spawn_daemon`](Self::spawn_daemon) writes it.
    pub fn config_text(&self) -> String {
        let d = self.path().display();
        let mut s = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
             [debug]\n  address = \"{d}/debug.sock\"\n  level = \"debug\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
        );
        let Some(cri) = &self.cri else {
            s.insert_str(
                s.find("[grpc]").expect("written above"),
                "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
            );
            return s;
        };
        let list = |v: &[String]| {
            let quoted: Vec<String> = v.iter().map(|a| format!("{a:?}")).collect();
            format!("[{}]", quoted.join(", "))
        };
        let p = "plugins.\"io.containerd.grpc.v1.cri\"";
        // The stream server (exec, attach, port-forward) on loopback, a port of the
        // kernel's choosing; no SELinux or AppArmor (Debian's kernel on the test hosts
        // has neither enforcing); CNI from a private conf dir, empty unless a test writes
        // a network there ([`crate::cni`]; host-network pods need none), and pods'
        // network namespaces mounted under the state dir rather than /var/run/netns.
        // Without CAP_SYS_RESOURCE (a test host that is itself a container) no process
        // may lower its oom_score_adj, and the CRI gives sandboxes -998: runc and rune
        // would fail every pod. containerd then clamps to its own value instead.
        let restrict_oom = !has_capability(CAP_SYS_RESOURCE);
        s.push_str(&format!(
            "[{p}]\n  sandbox_image = {:?}\n  stream_server_address = \"127.0.0.1\"\n  \
             stream_server_port = \"0\"\n  enable_selinux = false\n  disable_apparmor = true\n  \
             restrict_oom_score_adj = {restrict_oom}\n  netns_mounts_under_state_dir = true\n\
             [{p}.containerd]\n  snapshotter = \"overlayfs\"\n  default_runtime_name = {:?}\n\
             [{p}.cni]\n  bin_dir = \"{CNI_BIN_DIR}\"\n  conf_dir = \"{d}/cni\"\n",
            cri.sandbox_image,
            cri.runtimes.first().map_or("runc", |r| r.handler.as_str()),
        ));
        for r in &cri.runtimes {
            s.push_str(&format!(
                "[{p}.containerd.runtimes.{}]\n  runtime_type = {:?}\n  \
                 pod_annotations = {}\n  container_annotations = {}\n",
                r.handler,
                r.runtime_type,
                list(&r.pod_annotations),
                list(&r.container_annotations),
            ));
            if !r.options.is_empty() {
                s.push_str(&format!(
                    "[{p}.containerd.runtimes.{}.options]\n",
                    r.handler
                ));
                for (k, v) in &r.options {
                    s.push_str(&format!("  {k} = {v}\n"));
                }
            }
        }
        s
    }

    /// Writes the configuration and starts containerd; returns once `ctr version`
    /// answers (20 s at most), or the error with the daemon's log.
    pub fn spawn_daemon(&mut self) -> io::Result<()> {
        std::fs::create_dir_all(self.cni_conf_dir())?;
        std::fs::write(self.path().join("containerd.toml"), self.config_text())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("containerd.log"))?;
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.path().join("bin").display()
        );
        let child = Command::new(CONTAINERD)
            .arg("--config")
            .arg(self.path().join("containerd.toml"))
            .env("PATH", path)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.daemon = Some(child);
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if self.ctr(&["version"]).0 == 0 {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.daemon.as_mut().map(Child::try_wait) {
                self.daemon = None;
                return Err(io::Error::other(format!(
                    "containerd exited ({status}):\n{}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(io::Error::other(format!(
            "containerd did not answer in 20 s:\n{}",
            self.log()
        )))
    }

    /// Stops containerd (SIGTERM by pid, SIGKILL after 10 s); its shims keep running.
    pub fn stop_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            signal(child.id(), nix::sys::signal::Signal::SIGTERM);
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

    /// The daemon's log (debug level).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr -a <socket> args`, not yet run.
    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(CTR);
        cmd.arg("-a").arg(self.socket()).args(args);
        cmd
    }

    /// Runs `ctr args`: (exit code, stdout, stderr).
    pub fn ctr(&self, args: &[&str]) -> (i32, String, String) {
        self.ctr_input(args, None)
    }

    /// Runs `ctr args` with `input` on its stdin. Output goes through temporary files,
    /// so a process that keeps ctr's pipes open cannot hang the test.
    pub fn ctr_input(&self, args: &[&str], input: Option<&[u8]>) -> (i32, String, String) {
        let out = tempfile::tempfile().expect("temporary file");
        let err = tempfile::tempfile().expect("temporary file");
        let mut child = self
            .ctr_cmd(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(out.try_clone().expect("dup"))
            .stderr(err.try_clone().expect("dup"))
            .spawn()
            .expect("start ctr");
        if let Some(data) = input {
            let mut w = child.stdin.take().expect("piped");
            let _ = w.write_all(data);
        }
        let status = child.wait().expect("wait for ctr");
        let read = |mut f: std::fs::File| {
            let mut s = String::new();
            let _ = f.rewind();
            let _ = f.read_to_string(&mut s);
            s
        };
        (status.code().unwrap_or(-1), read(out), read(err))
    }

    /// `ctr -n namespace images import --base-name <repository> --index-name name tar`
    /// (unpacked for the snapshotter, as the CRI plugin needs it). The base name keeps
    /// the tar's own tags (`latest`) apart from other imports': without it ctr names
    /// them all `import-<date>:latest`, and the CRI plugin then resolves one image's
    /// id to another's name.
    pub fn import(&self, namespace: &str, tar: &Path, name: &str) -> Result<(), String> {
        let tar = tar.to_str().ok_or("a non-UTF-8 image path")?;
        let repository = match name.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo,
            _ => name,
        };
        let (code, _, err) = self.ctr(&[
            "-n",
            namespace,
            "images",
            "import",
            "--base-name",
            repository,
            "--index-name",
            name,
            tar,
        ]);
        if code == 0 {
            Ok(())
        } else {
            Err(format!("ctr images import {name}: {}", err.trim()))
        }
    }

    /// The task's status as `ctr -n namespace task ls` shows it (`RUNNING`, …), or "".
    pub fn task_status(&self, namespace: &str, id: &str) -> String {
        let (_, out, _) = self.ctr(&["-n", namespace, "task", "ls"]);
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    }

    /// What is left under the directory other than the daemon itself: processes
    /// (shims, …) naming it and mounts below it ([`leftovers`]).
    pub fn leftovers(&self) -> Vec<String> {
        let own = self.daemon_pid().map(|p| format!("process {p}:"));
        leftovers(self.path())
            .into_iter()
            .filter(|l| own.as_ref().is_none_or(|o| !l.starts_with(o.as_str())))
            .collect()
    }
}

/// capabilities(7) number of CAP_SYS_RESOURCE.
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether this process has capability `cap` in its effective set (`CapEff` of
/// /proc/self/status, proc(5)).
fn has_capability(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|set| set & (1 << cap) != 0)
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// The directories of cgroup `path` in each hierarchy under /sys/fs/cgroup that has
/// it, each followed by its sub-cgroups, depth first (deepest last).
fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let mut stack = vec![h.path().join(path.trim_start_matches('/'))];
        while let Some(d) = stack.pop() {
            if !d.is_dir() {
                continue;
            }
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
            dirs.push(d);
        }
    }
    dirs
}

/// Kills what runs in cgroup `path` (every hierarchy) and removes it, deepest first;
/// a cgroup whose processes are not yet reaped is retried for a few seconds.
fn remove_cgroup_tree(path: &str) {
    let dirs = cgroup_dirs(path);
    for d in &dirs {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    let end = Instant::now() + Duration::from_secs(5);
    for d in dirs.iter().rev() {
        while std::fs::remove_dir(d).is_err() && d.exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Pods of a failed test: their processes first (shims would not end them).
        let pods = self.cgroup_root();
        if !cgroup_dirs(&pods).is_empty() {
            remove_cgroup_tree(&pods);
        }
        // Shims of a failed test: ours, as their command line names our directory.
        let dir = self.path().to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            let program = cmdline.split('\0').next().unwrap_or("");
            let name = Path::new(program).file_name().unwrap_or_default();
            if name.to_string_lossy().starts_with("containerd-shim") && cmdline.contains(&dir) {
                signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        self.stop_daemon();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(self.path()))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cri_plugin_is_disabled_unless_enabled_and_then_lists_its_handlers() {
        let mut c = Containerd::new("ctrd-config").unwrap();
        let plain: toml::Value = toml::from_str(&c.config_text()).unwrap();
        assert_eq!(
            plain["disabled_plugins"],
            toml::Value::from(vec!["io.containerd.grpc.v1.cri"])
        );
        let mut rune = CriRuntime::new("rune", "io.containerd.rune.v2");
        rune.pod_annotations = vec!["enclave.*".into()];
        let mut runc = CriRuntime::new("runc", "io.containerd.runc.v2");
        runc.options = vec![("Root".into(), "\"/tmp/x\"".into())];
        c.enable_cri(CriConfig {
            sandbox_image: "docker.io/library/pause:x".into(),
            runtimes: vec![runc, rune],
        });
        let text = c.config_text();
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert!(v.get("disabled_plugins").is_none(), "{text}");
        let cri = &v["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(
            cri["sandbox_image"].as_str(),
            Some("docker.io/library/pause:x")
        );
        assert_eq!(cri["netns_mounts_under_state_dir"].as_bool(), Some(true));
        assert_eq!(
            cri["containerd"]["default_runtime_name"].as_str(),
            Some("runc")
        );
        let r = &cri["containerd"]["runtimes"]["rune"];
        assert_eq!(r["runtime_type"].as_str(), Some("io.containerd.rune.v2"));
        assert_eq!(r["pod_annotations"], toml::Value::from(vec!["enclave.*"]));
        assert_eq!(r["container_annotations"], toml::Value::Array(Vec::new()));
        assert!(r.get("options").is_none());
        let runc = &cri["containerd"]["runtimes"]["runc"];
        assert_eq!(runc["options"]["Root"].as_str(), Some("/tmp/x"));
        assert_eq!(
            cri["cni"]["conf_dir"].as_str().map(PathBuf::from),
            Some(c.path().join("cni"))
        );
    }
}
