//! What a guest gets: its store data, the container's memory limit, its environment
//! and its preopened directories.

use std::sync::Arc;

use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::Shared;

/// Top-level directories never preopened: the runtime's own process and the host's
/// devices and kernel interfaces.
const NOT_PREOPENED: &[&str] = &["proc", "sys", "dev"];

/// A store's data: the guest's WASI context and its process's kill flag.
pub(crate) struct Host {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) shared: Arc<Shared>,
    /// The most the guest's linear memories and tables may take together, in bytes:
    /// the container's memory limit (and each growth must also fit beside what the
    /// container uses at the time: [`container_memory_usage`], [`RUNTIME_HEADROOM`]).
    pub(crate) memory_limit: Option<usize>,
    /// What they take now (tables counted at [`TABLE_ELEMENT_BYTES`] an element).
    pub(crate) memory_used: usize,
    /// SHA-256 of the module file (what `librats_collect` binds evidence to).
    pub(crate) module_sha256: [u8; 32],
    /// The process's `/dev/attestation` files (written as it starts), removed with the
    /// store.
    pub(crate) attestation: Option<crate::attest::Files>,
    /// The broker `kbs_get_resource` last attested to, kept for the next call.
    pub(crate) kbs: Option<crate::kbs::Client>,
    /// The process's stderr, for the PAL's lines about its calls.
    pub(crate) stderr: Option<std::fs::File>,
}

/// What one table element takes in wasmtime (a pointer).
pub(crate) const TABLE_ELEMENT_BYTES: usize = 8;

impl Host {
    /// Admits growth of one memory or table from `current` to `desired` bytes if every
    /// memory and table of the guest still fits the limit; otherwise records why (the
    /// message the process's stderr gets) and refuses.
    fn grow(&mut self, what: &str, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let total = self
            .memory_used
            .saturating_sub(current)
            .saturating_add(desired);
        let Some(limit) = self.memory_limit else {
            self.memory_used = total;
            return Ok(true);
        };
        let refusal = if total > limit {
            Some(format!(
                "memory limit exceeded: {what} wanted {desired} bytes, {total} in all, limit {limit} (the container's memory limit)"
            ))
        } else {
            // What the container's processes use already (the runtime, compiled code,
            // every guest's touched pages): the growth must fit beside it, with room for
            // the runtime, or the guest would meet the cgroup's OOM killer, not a trap.
            let more = desired.saturating_sub(current);
            container_memory_usage()
                .filter(|used| {
                    more > 0 && used.saturating_add(more).saturating_add(RUNTIME_HEADROOM) > limit
                })
                .map(|used| {
                    format!(
                        "memory limit exceeded: {what} wanted {more} bytes more, beside the {used} the container uses, limit {limit} (the container's memory limit, {RUNTIME_HEADROOM} bytes kept for the runtime)"
                    )
                })
        };
        match refusal {
            Some(msg) => {
                let mut s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
                s.over_limit = Some(msg.clone());
                Err(wasmtime::Error::msg(msg))
            }
            None => {
                self.memory_used = total;
                Ok(true)
            }
        }
    }
}

impl wasmtime::ResourceLimiter for Host {
    /// Growth past the container's memory limit, counting every memory and table of the
    /// guest together, traps (with the message the process's stderr gets) instead of
    /// letting the guest reach the kernel's OOM killer, which would end the runelet.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow("a memory", current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            "a table",
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }
}

/// The container's memory limit in bytes, from its cgroup as the container sees it
/// (cgroup v2 `memory.max`, else v1 `memory.limit_in_bytes`; rune sets either from
/// `linux.resources.memory.limit`). None when unlimited or unknown.
pub(crate) fn container_memory_limit() -> Option<usize> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let text = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))?;
    // "max" (v2), or v1's "unlimited" (the largest page-aligned i64).
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes < 1 << 62).then_some(bytes as usize)
}

/// Room kept free in the container's memory limit for the runtime itself when a guest
/// grows (wasmtime's own allocations, WASI's buffers, threads' stacks).
pub(crate) const RUNTIME_HEADROOM: usize = 8 << 20;

/// What the container's processes use now, in bytes, as the kernel counts it against
/// the memory limit, less the file cache it reclaims before it kills (the runtime's
/// mapped code, files read): cgroup v2 `memory.current` less `file` of `memory.stat`,
/// else v1 `memory.usage_in_bytes` less `total_cache`. None when unknown (a limit is
/// then checked against the guests' own memory alone).
pub(crate) fn container_memory_usage() -> Option<usize> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let (usage, stat, cache_key) = match read("/sys/fs/cgroup/memory.current") {
        Some(u) => (u, read("/sys/fs/cgroup/memory.stat"), "file"),
        None => (
            read("/sys/fs/cgroup/memory/memory.usage_in_bytes")?,
            read("/sys/fs/cgroup/memory/memory.stat"),
            "total_cache",
        ),
    };
    usage_less_cache(&usage, stat.as_deref(), cache_key)
}

/// `usage` (a cgroup usage file's text) less the `cache_key` line of `stat` (a
/// `memory.stat`; missing: nothing taken off).
fn usage_less_cache(usage: &str, stat: Option<&str>, cache_key: &str) -> Option<usize> {
    let usage: u64 = usage.trim().parse().ok()?;
    let cache: u64 = stat
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(cache_key)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0);
    usize::try_from(usage.saturating_sub(cache)).ok()
}

/// The guest's environment: `K=V` pairs split at the first `=` (an entry without one
/// is `K` with an empty value), without rune's `ENCLAVE_*` settings.
pub(crate) fn guest_env(env: &[String]) -> Vec<(String, String)> {
    env.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .filter(|(k, _)| !k.starts_with("ENCLAVE_"))
        .collect()
}

/// Preopens each top-level directory of the container's root (a symlink to a directory
/// included, unless it leads to what is never preopened: see [`safe_to_preopen`]) at its
/// own path, read-write (the kernel still enforces a read-only root
/// and mount flags), except [`NOT_PREOPENED`]. Returns their guest paths.
pub(crate) fn preopen(wasi: &mut WasiCtxBuilder) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok();
    let hazards = mountinfo.as_deref().map(hazardous_mounts);
    let mut names: Vec<String> = std::fs::read_dir("/")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !NOT_PREOPENED.contains(&n.as_str()))
        .filter(|n| safe_to_preopen(&format!("/{n}"), hazards.as_deref()))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| format!("/{n}"))
        .filter(|p| wasi.preopened_dir(p, p, FsPerms::ReadWrite).is_ok())
        .collect()
}

/// File system types never reachable from a preopen: procfs (`/proc/self/mem`), sysfs
/// and devtmpfs (the host's devices).
const HAZARDOUS_FS: &[&str] = &["proc", "sysfs", "devtmpfs"];

/// The mount points of [`HAZARDOUS_FS`] mounts in `mountinfo` (proc(5)
/// `/proc/self/mountinfo`: field 5 the mount point, octal-escaped; the type first after
/// the ` - ` separator).
pub(crate) fn hazardous_mounts(mountinfo: &str) -> Vec<std::path::PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, rest) = line.split_once(" - ")?;
            let fstype = rest.split(' ').next()?;
            let point = mount.split(' ').nth(4)?;
            HAZARDOUS_FS
                .contains(&fstype)
                .then(|| std::path::PathBuf::from(unescape_octal(point)))
        })
        .collect()
}

/// Undoes mountinfo's escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape_octal(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digits = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], digits) {
            (b'\\', Some(d)) => {
                out.push(((d[0] - b'0') << 6) | ((d[1] - b'0') << 3) | (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// Whether a preopen of the directory `real` would reach one of the `hazards` mounts:
/// one mounted beneath it, or the one it lies within (a symlink into a devtmpfs, say).
fn reaches_hazard(real: &std::path::Path, hazards: &[std::path::PathBuf]) -> bool {
    hazards
        .iter()
        .any(|m| m.starts_with(real) || real.starts_with(m))
}

/// Whether `path` (a top-level entry of the container's root) may be preopened: a
/// directory whose real path (symlinks followed, in the container's root: an image may
/// hold `p -> /proc`) is not under [`NOT_PREOPENED`], whose file system is not procfs or
/// sysfs (a mount of either elsewhere), and beneath which no [`HAZARDOUS_FS`] is mounted
/// (`hazards`, from [`hazardous_mounts`]; None, the mount table unreadable: nothing is
/// preopened). A preopened `/proc/self/mem` is a way out of the sandbox, and to the
/// platform key in this process's memory; wasmtime's path checks do not stop at mount
/// points.
pub(crate) fn safe_to_preopen(path: &str, hazards: Option<&[std::path::PathBuf]>) -> bool {
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    let Some(hazards) = hazards else {
        return false;
    };
    if reaches_hazard(&real, hazards) {
        return false;
    }
    let top = real
        .components()
        .nth(1)
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or("");
    if real.as_os_str() == "/" || NOT_PREOPENED.contains(&top) || !real.is_dir() {
        return false;
    }
    use nix::sys::statfs::{statfs, PROC_SUPER_MAGIC, SYSFS_MAGIC};
    match statfs(&real) {
        Ok(fs) => ![PROC_SUPER_MAGIC, SYSFS_MAGIC].contains(&fs.filesystem_type()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// memory.stat as the kernel writes it (cgroup-v2.rst: `file`, and `file_mapped`
    /// after it; v1 memory.txt: `cache`, then `total_cache` for the hierarchy).
    #[test]
    fn usage_is_taken_less_its_file_cache() {
        let v2 = "anon 5000\nfile 3000\nkernel 100\nfile_mapped 2000\n";
        assert_eq!(usage_less_cache("9000\n", Some(v2), "file"), Some(6000));
        let v1 = "cache 100\nrss 5000\ntotal_cache 3000\ntotal_rss 5000\n";
        assert_eq!(
            usage_less_cache("9000\n", Some(v1), "total_cache"),
            Some(6000)
        );
        assert_eq!(usage_less_cache("9000", None, "file"), Some(9000));
        assert_eq!(usage_less_cache("max", Some(v2), "file"), None);
        // More cache than usage (read at different moments): none, not a wrap.
        assert_eq!(usage_less_cache("1000", Some(v2), "file"), Some(0));
    }

    /// Lines in proc(5)'s format: a proc bound beneath /data (its mount point with an
    /// escaped space), a sysfs beneath /host, an ext4 and a tmpfs that are harmless.
    #[test]
    fn hazardous_mounts_are_read_from_mountinfo() {
        let info = "\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
23 22 0:5 / /proc rw,nosuid - proc proc rw
24 22 0:5 / /data/my\\040proc rw - proc proc rw
25 22 0:6 / /host/sys ro shared:7 - sysfs sysfs ro
26 22 0:7 / /dev rw - tmpfs tmpfs rw
27 22 0:8 / /mnt/devices rw - devtmpfs udev rw
";
        let got = hazardous_mounts(info);
        let want: Vec<std::path::PathBuf> = ["/proc", "/data/my proc", "/host/sys", "/mnt/devices"]
            .iter()
            .map(std::path::PathBuf::from)
            .collect();
        assert_eq!(got, want);
        let reaches = |p: &str| reaches_hazard(std::path::Path::new(p), &got);
        assert!(reaches("/data"), "a proc beneath");
        assert!(reaches("/mnt"), "a devtmpfs beneath");
        assert!(reaches("/mnt/devices/net"), "within a devtmpfs");
        assert!(reaches("/host/sys"), "the mount itself");
        // Path prefixes count by component: /data2 is not /data.
        assert!(!reaches("/data2") && !reaches("/etc"));
        assert_eq!(unescape_octal("a\\134b\\011c\\9"), "a\\b\tc\\9");
    }

    #[test]
    fn env_is_split_at_the_first_equals_and_enclave_settings_dropped() {
        let env: Vec<String> = ["A=1", "B=x=y", "EMPTY=", "BARE", "ENCLAVE_TYPE=sim"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let pairs = guest_env(&env);
        let want: Vec<(String, String)> = [("A", "1"), ("B", "x=y"), ("EMPTY", ""), ("BARE", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs, want);
    }
}
