//! Out-of-memory kills in a container's memory cgroup, reported so the shim can publish
//! containerd's `/tasks/oom` event: the CRI plugin turns it into the container status
//! reason `OOMKilled` that kubelet shows. As containerd's Go runc shim (its `oom`
//! package, containerd 1.6):
//!
//! - cgroup v1: an eventfd registered for `memory.oom_control` through
//!   `cgroup.event_control` (the kernel's `admin-guide/cgroup-v1/memory.rst`, §9 "OOM
//!   Control"); the kernel also signals it when the cgroup is removed, which ends the
//!   watch.
//! - cgroup v2: `memory.events` watched with inotify (`admin-guide/cgroup-v2.rst`,
//!   "memory.events": modified on each event), reporting increases of `oom_kill`; the
//!   watch ends when the file goes with its cgroup.
//!
//! Each watch is a thread of its own that blocks in `read(2)`, like the shim's stdio
//! copies: one per container, idle until an event.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OomError {
    #[error("process {pid}: no memory cgroup found in /proc/{pid}/cgroup and the mounts")]
    NoMemoryCgroup { pid: i32 },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> OomError + 'a {
    move |source| OomError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A memory cgroup directory and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryCgroup {
    V1(PathBuf),
    V2(PathBuf),
}

/// The memory cgroup of process `pid` (a container's init, once `rune create` has put
/// it there): its path from `/proc/<pid>/cgroup`, under the memory hierarchy's mount
/// point from `/proc/self/mountinfo`.
pub fn memory_cgroup(pid: i32) -> Result<MemoryCgroup, OomError> {
    let cgroup_file = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let cgroups = std::fs::read_to_string(&cgroup_file).map_err(io_err("read", &cgroup_file))?;
    let mountinfo_file = Path::new("/proc/self/mountinfo");
    let mountinfo =
        std::fs::read_to_string(mountinfo_file).map_err(io_err("read", mountinfo_file))?;
    find_memory_cgroup(&cgroups, &mountinfo).ok_or(OomError::NoMemoryCgroup { pid })
}

/// [`memory_cgroup`] on the two files' contents (proc(5): `/proc/<pid>/cgroup` lines
/// `id:controllers:path`, mountinfo lines `id parent dev root mountpoint options
/// [optional…] - fstype source superoptions`). A v1 memory hierarchy wins over v2, as
/// on a hybrid host the memory controller is attached to v1.
pub fn find_memory_cgroup(cgroups: &str, mountinfo: &str) -> Option<MemoryCgroup> {
    let mounts: Vec<(&str, &str, &str, &str)> = mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((*f.get(3)?, *f.get(4)?, *f.get(sep + 1)?, *f.get(sep + 3)?))
        })
        .collect();
    // A cgroup path relative to a mount whose root is `root`.
    let under = |mount_point: &str, root: &str, path: &str| {
        let rel = Path::new(path).strip_prefix(root).ok()?;
        Some(Path::new(mount_point).join(rel))
    };
    let mut v2 = None;
    for line in cgroups.lines() {
        let mut f = line.splitn(3, ':');
        let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            let (root, point, _, _) = mounts.iter().find(|(_, _, fstype, opts)| {
                *fstype == "cgroup" && opts.split(',').any(|o| o == "memory")
            })?;
            return under(point, root, path).map(MemoryCgroup::V1);
        }
        if id == "0" && controllers.is_empty() {
            v2 = mounts
                .iter()
                .find(|(_, _, fstype, _)| *fstype == "cgroup2")
                .and_then(|(root, point, _, _)| under(point, root, path));
        }
    }
    // v2 only when its memory controller is enabled for the cgroup.
    let dir = v2?;
    dir.join("memory.events")
        .exists()
        .then_some(MemoryCgroup::V2(dir))
}

/// Watches `cgroup` on a thread of its own, calling `on_oom` once per OOM event, until
/// the cgroup is removed. Fails (before any thread starts) when the cgroup's files
/// cannot be opened or the event cannot be registered.
pub fn watch(cgroup: &MemoryCgroup, on_oom: impl Fn() + Send + 'static) -> Result<(), OomError> {
    match cgroup {
        MemoryCgroup::V1(dir) => watch_v1(dir, on_oom),
        MemoryCgroup::V2(dir) => watch_v2(dir, on_oom),
    }
}

fn watch_v1(dir: &Path, on_oom: impl Fn() + Send + 'static) -> Result<(), OomError> {
    let oom_control = dir.join("memory.oom_control");
    let control = File::open(&oom_control).map_err(io_err("open", &oom_control))?;
    // SAFETY: eventfd(2) takes two integers; the descriptor it returns is new and ours.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io_err("eventfd for", &oom_control)(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` is a valid descriptor that nothing else owns.
    let mut events = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let event_control = dir.join("cgroup.event_control");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&event_control)
        .and_then(|mut f| {
            f.write_all(format!("{} {}", events.as_raw_fd(), control.as_raw_fd()).as_bytes())
        })
        .map_err(io_err("register with", &event_control))?;
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        // Kept open while registered (the kernel holds its own reference too).
        let _control = control;
        let mut count = [0u8; 8];
        while events.read_exact(&mut count).is_ok() {
            // The kernel signals the eventfd when the cgroup goes away, too.
            if !oom_control.exists() {
                break;
            }
            on_oom();
        }
        tracing::debug!("{}: OOM watch ended", dir.display());
    });
    Ok(())
}

/// The `oom_kill` count of a `memory.events` file, if it has one.
pub fn oom_kills(memory_events: &str) -> Option<u64> {
    memory_events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

fn watch_v2(dir: &Path, on_oom: impl Fn() + Send + 'static) -> Result<(), OomError> {
    let events_file = dir.join("memory.events");
    let path = std::ffi::CString::new(events_file.as_os_str().as_encoded_bytes())
        .map_err(|e| io_err("watch", &events_file)(std::io::Error::other(e)))?;
    // SAFETY: inotify_init1(2) takes flags; the descriptor it returns is new and ours.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(io_err("inotify for", &events_file)(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` is a valid descriptor that nothing else owns.
    let mut inotify = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    if unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(io_err("watch", &events_file)(
            std::io::Error::last_os_error(),
        ));
    }
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let mut seen = read(&events_file).and_then(|s| oom_kills(&s)).unwrap_or(0);
    std::thread::spawn(move || {
        // Room for many `struct inotify_event`s (no name: the watch is on a file).
        let mut buf = [0u8; 4096];
        while let Ok(n) = inotify.read(&mut buf) {
            if n == 0 {
                break;
            }
            // The file (and its cgroup) is gone: IN_IGNORED came with the read.
            let Some(text) = read(&events_file) else {
                break;
            };
            if let Some(now) = oom_kills(&text) {
                if now > seen {
                    on_oom();
                }
                seen = now;
            }
        }
        tracing::debug!("{}: OOM watch ended", events_file.display());
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTS: &str = "\
35 26 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
40 35 0:35 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
41 35 0:36 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct";

    #[test]
    fn a_v1_memory_hierarchy_gives_the_container_cgroup() {
        let cgroups = "12:cpu,cpuacct:/pod/c1\n9:memory:/pod/c1\n0::/pod/c1\n";
        assert_eq!(
            find_memory_cgroup(cgroups, HYBRID_MOUNTS),
            Some(MemoryCgroup::V1("/sys/fs/cgroup/memory/pod/c1".into()))
        );
        // A mount of a sub-tree (a cgroup namespace's view): paths are under its root.
        let nested = "40 35 0:35 /pod /mnt/mem rw - cgroup cgroup rw,memory";
        assert_eq!(
            find_memory_cgroup("9:memory:/pod/c1", nested),
            Some(MemoryCgroup::V1("/mnt/mem/c1".into()))
        );
        // No memory hierarchy mounted, no v2 controller: nothing to watch.
        let none = "41 35 0:36 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu";
        assert_eq!(find_memory_cgroup("9:memory:/pod/c1", none), None);
        assert_eq!(find_memory_cgroup("garbage", HYBRID_MOUNTS), None);
    }

    #[test]
    fn v2_needs_the_memory_controller_of_the_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        let mounts = format!(
            "30 23 0:26 / {} rw,nosuid - cgroup2 cgroup2 rw",
            tmp.path().display()
        );
        std::fs::create_dir_all(tmp.path().join("pod/c1")).unwrap();
        assert_eq!(find_memory_cgroup("0::/pod/c1\n", &mounts), None);
        std::fs::write(tmp.path().join("pod/c1/memory.events"), "oom 0\n").unwrap();
        assert_eq!(
            find_memory_cgroup("0::/pod/c1\n", &mounts),
            Some(MemoryCgroup::V2(tmp.path().join("pod/c1")))
        );
    }

    #[test]
    fn the_oom_kill_count_of_memory_events() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kills(events), Some(2));
        assert_eq!(oom_kills("low 0\n"), None);
        assert_eq!(oom_kills("oom_kill x\n"), None);
    }

    #[test]
    fn a_v2_watch_reports_increases_of_oom_kill_and_ends_with_the_file() {
        // inotify on a plain file stands in for cgroupfs: writes are IN_MODIFY.
        let tmp = tempfile::tempdir().unwrap();
        let events = tmp.path().join("memory.events");
        std::fs::write(&events, "oom 1\noom_kill 1\n").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        watch(&MemoryCgroup::V2(tmp.path().to_path_buf()), move || {
            let _ = tx.send(());
        })
        .unwrap();
        let wait = std::time::Duration::from_secs(5);
        std::fs::write(&events, "oom 1\noom_kill 1\nmax 3\n").unwrap();
        std::fs::write(&events, "oom 2\noom_kill 2\n").unwrap();
        rx.recv_timeout(wait).expect("an OOM kill reported");
        std::fs::remove_file(&events).unwrap();
        // The count did not rise again: no second report; the thread ends.
        assert!(matches!(
            rx.recv_timeout(wait),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        ));
    }
}
