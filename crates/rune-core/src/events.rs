//! `events`: runc's event stream, in runc's schema.
//!
//! runc 1.1 prints one JSON document per line, `{"type":"stats","id":ID,"data":STATS}`
//! every `--interval`, `{"type":"oom","id":ID}` when the kernel's OOM killer acts in
//! the container's memory cgroup, and stops once the container's cgroup is removed
//! (`delete`). `--stats` prints a single stats event. STATS is runc's `types.Stats`
//! (runc v1.1 `types/events.go`), which containerd's go-runc (`events.go`) decodes:
//! the field names, nesting and `omitempty` rules below follow that file, and the
//! values come from libcgroups' readings of the same cgroup files runc reads.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcgroups::stats as lc;
use serde::Serialize;

use crate::error::{Result, RuneError};

/// One line of `events`: runc's `types.Event`.
#[derive(Debug, Serialize)]
pub struct Event {
    /// `stats` or `oom`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The container id.
    pub id: String,
    /// The statistics of a `stats` event; absent from `oom` events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Stats>,
}

fn zero(v: &u64) -> bool {
    *v == 0
}

/// runc's `types.Stats`. Fields in runc's order (Go encodes in declaration order).
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    /// Keyed by page size as runc names it (`2MB`, `1GB`).
    pub hugetlb: BTreeMap<String, Hugetlb>,
    /// Intel RDT statistics: rune reports none, which runc prints as `{}`.
    pub intel_rdt: IntelRdt,
    /// runc fills this only for containers it knows the network of: `null` otherwise.
    pub network_interfaces: Option<Vec<serde_json::Value>>,
}

/// runc's `types.Cpu`; times in nanoseconds.
#[derive(Debug, Default, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// runc's `types.CpuUsage`: nanoseconds, per-CPU lists indexed by CPU number.
#[derive(Debug, Default, Serialize)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

/// runc's `types.Throttling` (CFS periods and nanoseconds throttled).
#[derive(Debug, Default, Serialize)]
pub struct Throttling {
    #[serde(skip_serializing_if = "zero")]
    pub periods: u64,
    #[serde(rename = "throttledPeriods", skip_serializing_if = "zero")]
    pub throttled_periods: u64,
    #[serde(rename = "throttledTime", skip_serializing_if = "zero")]
    pub throttled_time: u64,
}

/// runc's `types.CPUSet`: the cpuset cgroup's settings (cgroup v1's `cpuset.*` files).
#[derive(Debug, Default, Serialize)]
pub struct CpuSet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

/// runc's `types.MemoryEntry`: bytes, and the number of times the limit was hit.
#[derive(Debug, Default, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// runc's `types.Memory`; `raw` is the cgroup's `memory.stat`.
#[derive(Debug, Default, Serialize)]
pub struct Memory {
    #[serde(skip_serializing_if = "zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// runc's `types.Pids`; a limit of 0 means none.
#[derive(Debug, Default, Serialize)]
pub struct Pids {
    #[serde(skip_serializing_if = "zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "zero")]
    pub limit: u64,
}

/// runc's `types.BlkioEntry`.
#[derive(Debug, Serialize)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "zero")]
    pub value: u64,
}

/// runc's `types.Blkio`, with runc's key names (`ioQueueRecursive` is runc's spelling).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// runc's `types.Hugetlb`: bytes, and allocation failures.
#[derive(Debug, Default, Serialize)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// runc's `types.IntelRdt`, every field of which is optional: rune reports none.
#[derive(Debug, Default, Serialize)]
pub struct IntelRdt {}

fn memory_entry(d: &lc::MemoryData) -> MemoryEntry {
    MemoryEntry {
        limit: d.limit,
        usage: d.usage,
        max: d.max_usage,
        failcnt: d.fail_count,
    }
}

fn blkio_entries(v: &[lc::BlkioDeviceStat]) -> Vec<BlkioEntry> {
    v.iter()
        .map(|e| BlkioEntry {
            major: e.major,
            minor: e.minor,
            op: e.op_type.clone().unwrap_or_default(),
            value: e.value,
        })
        .collect()
}

impl Stats {
    /// runc's conversion (`convertLibcontainerStats`) of the cgroup readings, plus the
    /// cpuset settings read from `cpuset_dir` (cgroup v1's cpuset hierarchy) if given.
    pub fn from_cgroup(s: &lc::Stats, cpuset_dir: Option<&Path>) -> Self {
        let u = &s.cpu.usage;
        let t = &s.cpu.throttling;
        let m = &s.memory;
        let b = &s.blkio;
        Stats {
            cpu: Cpu {
                usage: CpuUsage {
                    total: u.usage_total,
                    percpu: u.per_core_usage_total.clone(),
                    percpu_kernel: u.per_core_usage_kernel.clone(),
                    percpu_user: u.per_core_usage_user.clone(),
                    kernel: u.usage_kernel,
                    user: u.usage_user,
                },
                throttling: Throttling {
                    periods: t.periods,
                    throttled_periods: t.throttled_periods,
                    throttled_time: t.throttled_time,
                },
            },
            cpuset: cpuset_dir.map(read_cpuset).unwrap_or_default(),
            memory: Memory {
                cache: m.cache,
                usage: memory_entry(&m.memory),
                swap: memory_entry(&m.memswap),
                kernel: memory_entry(&m.kernel),
                kernel_tcp: memory_entry(&m.kernel_tcp),
                raw: m.stats.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            },
            pids: Pids {
                current: s.pids.current,
                limit: s.pids.limit,
            },
            blkio: Blkio {
                io_service_bytes_recursive: blkio_entries(&b.service_bytes),
                io_serviced_recursive: blkio_entries(&b.serviced),
                io_queued_recursive: blkio_entries(&b.queued),
                io_service_time_recursive: blkio_entries(&b.service_time),
                io_wait_time_recursive: blkio_entries(&b.wait_time),
                io_merged_recursive: blkio_entries(&b.merged),
                io_time_recursive: blkio_entries(&b.time),
                sectors_recursive: blkio_entries(&b.sectors),
            },
            hugetlb: s
                .hugetlb
                .iter()
                .map(|(k, h)| {
                    let h = Hugetlb {
                        usage: h.usage,
                        max: h.max_usage,
                        failcnt: h.fail_count,
                    };
                    (k.clone(), h)
                })
                .collect(),
            intel_rdt: IntelRdt {},
            network_interfaces: None,
        }
    }
}

/// A cpuset list (`0-3,8,10-11`, cpuset(7) "List format") as numbers; malformed
/// parts are skipped, as the kernel never writes them.
pub fn parse_cpu_list(s: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u16>().ok()),
        }
    }
    out
}

/// The `cpuset.*` settings of a cgroup v1 cpuset directory; a file that cannot be read
/// counts as 0, as in runc's `getCpusetStat`, which skips missing files.
fn read_cpuset(dir: &Path) -> CpuSet {
    let text = |name: &str| fs::read_to_string(dir.join(format!("cpuset.{name}"))).ok();
    let num = |name: &str| {
        text(name)
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    CpuSet {
        cpus: text("cpus").map(|t| parse_cpu_list(&t)).unwrap_or_default(),
        cpu_exclusive: num("cpu_exclusive"),
        mems: text("mems").map(|t| parse_cpu_list(&t)).unwrap_or_default(),
        mem_hardwall: num("mem_hardwall"),
        mem_exclusive: num("mem_exclusive"),
        memory_migrate: num("memory_migrate"),
        memory_spread_page: num("memory_spread_page"),
        memory_spread_slab: num("memory_spread_slab"),
        memory_pressure: num("memory_pressure"),
        sched_load_balance: num("sched_load_balance"),
        sched_relax_domain_level: text("sched_relax_domain_level")
            .and_then(|t| t.trim().parse::<i64>().ok())
            .unwrap_or(0),
    }
}

/// What wakes the event loop when the kernel's OOM killer acts in a memory cgroup.
///
/// cgroup v1: an eventfd registered on `memory.oom_control` through
/// `cgroup.event_control` (kernel `Documentation/admin-guide/cgroup-v1/memory.rst`
/// §9); the kernel also signals it when the cgroup is removed.
/// cgroup v2: inotify on `memory.events`, whose `oom_kill` counter grows.
pub(crate) struct OomWatch {
    fd: OwnedFd,
    dir: PathBuf,
    v2_kills: Option<u64>,
    /// Kept open: the v1 registration lives as long as this file.
    _control: Option<fs::File>,
}

fn oom_kills(dir: &Path) -> u64 {
    fs::read_to_string(dir.join("memory.events"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("oom_kill ").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

impl OomWatch {
    /// Watches the memory cgroup at `dir`; None where it has neither interface.
    pub(crate) fn new(dir: &Path) -> Option<Self> {
        if dir.join("memory.oom_control").exists() {
            let control = fs::File::open(dir.join("memory.oom_control")).ok()?;
            // SAFETY: eventfd(2) takes no pointers; the result is checked before use.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            if fd < 0 {
                return None;
            }
            // SAFETY: `fd` is a new descriptor owned by nothing else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let line = format!("{} {}", fd.as_raw_fd(), control.as_raw_fd());
            fs::write(dir.join("cgroup.event_control"), line).ok()?;
            return Some(OomWatch {
                fd,
                dir: dir.to_path_buf(),
                v2_kills: None,
                _control: Some(control),
            });
        }
        let events = dir.join("memory.events");
        if !events.exists() {
            return None;
        }
        // SAFETY: inotify_init1(2) takes no pointers; the result is checked before use.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is a new descriptor owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let path = std::ffi::CString::new(events.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) };
        if wd < 0 {
            return None;
        }
        Some(OomWatch {
            fd,
            dir: dir.to_path_buf(),
            v2_kills: Some(oom_kills(dir)),
            _control: None,
        })
    }

    /// Waits up to `timeout` for the descriptor; true if it became readable.
    fn wait(&self, timeout: Duration) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, counted as one.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        n > 0 && p.revents & libc::POLLIN != 0
    }

    /// After a wake-up: drains the descriptor and says whether an OOM kill happened
    /// (false on v1 when the wake-up was the cgroup's removal).
    fn consume(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        // SAFETY: `buf` is writable for its length; the descriptor is open and owned.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match self.v2_kills.as_mut() {
            None => self.dir.join("cgroup.event_control").exists(),
            Some(seen) => {
                let now = oom_kills(&self.dir);
                let grew = now > *seen;
                *seen = now;
                grew
            }
        }
    }
}

/// Runs runc's event loop: a stats event now and every `interval` after, OOM events as
/// they happen, until the cgroup at `memory_dir` (the liveness witness) is gone.
/// `read` takes a stats reading (None when it failed: logged, as runc does, and the
/// tick skipped); `emit` writes an event and may stop the loop by failing.
pub(crate) fn stream(
    id: &str,
    interval: Duration,
    memory_dir: Option<&Path>,
    mut read: impl FnMut() -> Option<Stats>,
    mut emit: impl FnMut(&Event) -> std::io::Result<()>,
) -> Result<()> {
    let io = |e| RuneError::io("write event".to_string(), e);
    let mut watch = memory_dir.and_then(OomWatch::new);
    let gone = || memory_dir.is_some_and(|d| !d.exists());
    let mut next = Instant::now() + interval;
    loop {
        let left = next.saturating_duration_since(Instant::now());
        let woke = match &watch {
            Some(w) => w.wait(left),
            None => {
                std::thread::sleep(left);
                false
            }
        };
        if woke {
            let oom = watch.as_mut().is_some_and(|w| w.consume());
            if oom {
                emit(&Event {
                    kind: "oom",
                    id: id.to_string(),
                    data: None,
                })
                .map_err(io)?;
            } else if watch.as_ref().is_some_and(|w| w.v2_kills.is_none()) && gone() {
                return Ok(());
            }
            continue;
        }
        if Instant::now() < next {
            continue;
        }
        next += interval;
        if gone() {
            return Ok(());
        }
        if let Some(data) = read() {
            emit(&Event {
                kind: "stats",
                id: id.to_string(),
                data: Some(data),
            })
            .map_err(io)?;
        }
    }
}

/// Go's `time.ParseDuration` as runc's `--interval` takes it (`5s`, `500ms`, `1m30s`,
/// `1.5h`); a duration of zero or less is refused as runc refuses it.
pub fn parse_go_duration(s: &str) -> std::result::Result<Duration, String> {
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(format!("invalid duration {s:?}"));
    }
    if rest == "0" {
        return Err("duration interval must be greater than 0".into());
    }
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let value: f64 = rest[..end]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[end..];
        let uend = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..uend] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("missing unit in duration {s:?}")),
            u => return Err(format!("unknown unit {u:?} in duration {s:?}")),
        };
        total += value * scale;
        rest = &rest[uend..];
    }
    if total <= 0.0 {
        return Err("duration interval must be greater than 0".into());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("0\n"), vec![0]);
        assert!(parse_cpu_list("\n").is_empty());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(
            parse_go_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        for bad in ["", "5", "5x", "0", "0s", "-1s", "s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    /// The shape go-runc decodes (`events.go`): envelope keys, an oom event without
    /// data, and runc's camelCase and snake_case names where runc uses them.
    #[test]
    fn serialised_with_runcs_names() {
        let oom = Event {
            kind: "oom",
            id: "c".into(),
            data: None,
        };
        assert_eq!(
            serde_json::to_string(&oom).unwrap(),
            r#"{"type":"oom","id":"c"}"#
        );
        let v = serde_json::to_value(Stats::default()).unwrap();
        // Sorted: serde_json keeps insertion order when another crate of the workspace
        // turns on its `preserve_order` feature.
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "blkio",
                "cpu",
                "cpuset",
                "hugetlb",
                "intel_rdt",
                "memory",
                "network_interfaces",
                "pids"
            ]
        );
        assert_eq!(
            v["memory"]["kernelTCP"],
            serde_json::json!({"limit": 0, "failcnt": 0})
        );
        assert_eq!(
            v["cpu"]["usage"],
            serde_json::json!({"kernel": 0, "user": 0})
        );
        assert_eq!(v["network_interfaces"], serde_json::Value::Null);
        assert_eq!(v["intel_rdt"], serde_json::json!({}));
    }
}
