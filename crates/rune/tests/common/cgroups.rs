//! cgroup helpers of the parity tests: where a process's cgroups are, and a cgroup to
//! run commands from.

use std::path::Path;
use std::process::Command;

use super::{run, unique_id};

/// `/proc/<pid>/cgroup`, and the directory of each line.
pub fn cgroups_of(pid: &str) -> (String, Vec<std::path::PathBuf>) {
    let lines = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let dirs = lines.lines().map(cgroup_dir).collect();
    (lines, dirs)
}

/// The directory of `/proc/<pid>/cgroup` line `h:controllers:path` (mounts named after
/// their controllers, `name=systemd` at `systemd`, a hybrid host's cgroup2 at `unified`).
pub fn cgroup_dir(line: &str) -> std::path::PathBuf {
    let mut f = line.splitn(3, ':');
    let (_, ctrl, path) = (f.next(), f.next().unwrap(), f.next().unwrap());
    let mount = match ctrl {
        "" if Path::new("/sys/fs/cgroup/unified").exists() => "unified",
        "" => "",
        c => c.trim_start_matches("name="),
    };
    Path::new("/sys/fs/cgroup")
        .join(mount)
        .join(path.trim_start_matches('/'))
}

/// A fresh cgroup beside the test's own in every v1 hierarchy (and a hybrid host's
/// cgroup2): commands spawned by `cmd` start there. Removed when dropped.
pub struct OtherCgroup {
    dirs: Vec<std::path::PathBuf>,
    procs: Vec<std::ffi::CString>,
}

impl OtherCgroup {
    pub fn new() -> Self {
        let (_, own) = cgroups_of("self");
        let name = unique_id("other");
        let mut dirs = Vec::new();
        for d in own.iter().filter(|d| d.is_dir()) {
            // beside the test's cgroup, or below the root when the test is at the root
            let parent = match d.parent() {
                Some(p) if d.components().count() > 5 => p,
                _ => d.as_path(),
            };
            let dir = parent.join(&name);
            std::fs::create_dir(&dir).unwrap();
            dirs.push(dir.clone());
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = std::fs::read_to_string(parent.join(f)) {
                    std::fs::write(dir.join(f), v).unwrap();
                }
            }
        }
        let procs = dirs
            .iter()
            .map(|d| std::ffi::CString::new(d.join("cgroup.procs").to_str().unwrap()).unwrap())
            .collect();
        OtherCgroup { dirs, procs }
    }

    /// `rt --root ROOT ARGS…`, run from this cgroup, with stdio in files.
    pub fn run(&self, rt: &str, root: &Path, args: &[&str]) -> (i32, String, String) {
        let mut c = Command::new(rt);
        c.arg("--root").arg(root).args(args);
        self.run_command(c)
    }

    /// `c`, run from this cgroup, with stdio in files.
    pub fn run_command(&self, mut c: Command) -> (i32, String, String) {
        let procs = self.procs.clone();
        // SAFETY: between fork and exec only open(2), write(2) and close(2), which are
        // async-signal-safe; the paths were made before the fork. "0" is the writer.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
                for p in &procs {
                    let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                Ok(())
            });
        }
        run(&mut c)
    }
}

impl Drop for OtherCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The v1 memory cgroup of `pid`, if the host has one.
pub fn memory_cgroup(pid: u32) -> Option<std::path::PathBuf> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cg
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))?;
    Some(Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')))
}
