//! `update`'s resource changes, read as runc 1.1's `update` reads them (runc's
//! `update.go`): either a `LinuxResources` document (`-r FILE`, `-` for stdin), in which
//! case every other flag is ignored, or the individual flags. Only the values runc's
//! `update` carries over are kept: memory limit, reservation and swap; cpu shares,
//! quota, period, realtime runtime and period, cpus and mems; the block I/O weight; the
//! pids limit; and `unified` (refused on cgroup v1). A zero (or empty) value leaves the
//! setting as it is, as runc's cgroup drivers skip zeros; the kernel memory limits are
//! ignored with a warning, as by runc.

use libcontainer::oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources,
};

use crate::error::{Result, RuneError};

/// runc's `update` flags, as given (runc parses them itself, so rune does too: the
/// refusals are runc's one-line `invalid value for FLAG: …`). `None`: not given.
#[derive(Debug, Clone, Default)]
pub struct ResourceFlags {
    pub memory: Option<String>,
    pub memory_reservation: Option<String>,
    pub memory_swap: Option<String>,
    /// `--kernel-memory`: accepted and ignored, with runc's warning.
    pub kernel_memory: Option<String>,
    /// `--kernel-memory-tcp`: accepted and ignored, with runc's warning.
    pub kernel_memory_tcp: Option<String>,
    pub cpu_shares: Option<String>,
    pub cpu_period: Option<String>,
    pub cpu_quota: Option<String>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<String>,
    pub blkio_weight: Option<String>,
    /// `--cpu-rt-period`, microseconds.
    pub cpu_rt_period: Option<String>,
    /// `--cpu-rt-runtime`, microseconds.
    pub cpu_rt_runtime: Option<String>,
}

/// The changes an `update` asks for: only what runc's `update` changes, zeros left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    pub resources: LinuxResources,
    /// Kernel memory limits were given: runc warns that they are ignored.
    pub kernel_memory_ignored: bool,
}

/// runc's warning for kernel memory limits (`update.go`).
pub const KERNEL_MEMORY_WARNING: &str = "Kernel memory settings are ignored and will be removed";

/// runc's values before its flags or document fill them in: zero everywhere, which its
/// cgroup drivers take as "unchanged".
#[derive(Debug, Default)]
struct Values {
    memory: i64,
    reservation: i64,
    swap: i64,
    kernel: i64,
    kernel_tcp: i64,
    shares: u64,
    quota: i64,
    period: u64,
    rt_runtime: i64,
    rt_period: u64,
    cpus: String,
    mems: String,
    weight: u16,
    pids: i64,
}

impl Values {
    fn into_update(self, unified: Option<std::collections::HashMap<String, String>>) -> Update {
        let mut r = LinuxResources::default();
        let nz = |v: i64| (v != 0).then_some(v);
        if self.memory != 0 || self.reservation != 0 || self.swap != 0 {
            let mut m = LinuxMemory::default();
            m.set_limit(nz(self.memory));
            m.set_reservation(nz(self.reservation));
            m.set_swap(nz(self.swap));
            r.set_memory(Some(m));
        }
        let text = |s: String| (!s.is_empty()).then_some(s);
        let cpu_set = self.shares != 0
            || self.quota != 0
            || self.period != 0
            || self.rt_runtime != 0
            || self.rt_period != 0
            || !self.cpus.is_empty()
            || !self.mems.is_empty();
        if cpu_set {
            let mut c = LinuxCpu::default();
            c.set_shares((self.shares != 0).then_some(self.shares));
            c.set_quota(nz(self.quota));
            c.set_period((self.period != 0).then_some(self.period));
            c.set_realtime_runtime(nz(self.rt_runtime));
            c.set_realtime_period((self.rt_period != 0).then_some(self.rt_period));
            c.set_cpus(text(self.cpus));
            c.set_mems(text(self.mems));
            r.set_cpu(Some(c));
        }
        if self.weight != 0 {
            let mut b = LinuxBlockIo::default();
            b.set_weight(Some(self.weight));
            r.set_block_io(Some(b));
        }
        if self.pids != 0 {
            let mut p = LinuxPids::default();
            p.set_limit(self.pids);
            r.set_pids(Some(p));
        }
        r.set_unified(unified);
        Update {
            resources: r,
            kernel_memory_ignored: self.kernel != 0 || self.kernel_tcp != 0,
        }
    }
}

/// Reads a `LinuxResources` document as runc does: fields it does not carry over are
/// ignored, a malformed one is refused naming its JSON path.
pub fn from_document(bytes: &[u8]) -> Result<Update> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let doc: LinuxResources =
        serde_path_to_error::deserialize(de).map_err(|e| RuneError::InvalidArgument {
            flag: format!("resources {}", e.path()),
            message: e.into_inner().to_string(),
        })?;
    let mut v = Values::default();
    if let Some(m) = doc.memory() {
        v.memory = m.limit().unwrap_or(0);
        v.reservation = m.reservation().unwrap_or(0);
        v.swap = m.swap().unwrap_or(0);
        v.kernel = m.kernel().unwrap_or(0);
        v.kernel_tcp = m.kernel_tcp().unwrap_or(0);
    }
    if let Some(c) = doc.cpu() {
        v.shares = c.shares().unwrap_or(0);
        v.quota = c.quota().unwrap_or(0);
        v.period = c.period().unwrap_or(0);
        v.rt_runtime = c.realtime_runtime().unwrap_or(0);
        v.rt_period = c.realtime_period().unwrap_or(0);
        v.cpus = c.cpus().clone().unwrap_or_default();
        v.mems = c.mems().clone().unwrap_or_default();
    }
    if let Some(b) = doc.block_io() {
        v.weight = b.weight().unwrap_or(0);
    }
    if let Some(p) = doc.pids() {
        v.pids = p.limit();
    }
    let unified = doc.unified().clone();
    if unified.is_some() && !cgroup_v2() {
        // runc's fs driver: `cgroups.ErrV1NoUnified`, before anything is written.
        return Err(RuneError::InvalidArgument {
            flag: "invalid configuration".into(),
            message: "cannot use unified on cgroup v1".into(),
        });
    }
    Ok(v.into_update(unified))
}

fn cgroup_v2() -> bool {
    matches!(
        libcgroups::common::get_cgroup_setup(),
        Ok(libcgroups::common::CgroupSetup::Unified)
    )
}

/// Reads runc's individual flags.
pub fn from_flags(f: &ResourceFlags) -> Result<Update> {
    let mut v = Values::default();
    if let Some(w) = &f.blkio_weight {
        // runc's `--blkio-weight` is an int flag converted with `uint16(val)`, which
        // keeps the low 16 bits; the kernel then judges the value.
        v.weight = parse_int("blkio-weight", w)? as u16;
    }
    if let Some(s) = &f.cpuset_cpus {
        v.cpus = s.clone();
    }
    if let Some(s) = &f.cpuset_mems {
        v.mems = s.clone();
    }
    for (name, flag, dest) in [
        ("cpu-period", &f.cpu_period, &mut v.period),
        ("cpu-rt-period", &f.cpu_rt_period, &mut v.rt_period),
        ("cpu-share", &f.cpu_shares, &mut v.shares),
    ] {
        if let Some(s) = flag {
            *dest = s
                .parse()
                .map_err(|_| invalid(name, s, "an unsigned integer"))?;
        }
    }
    for (name, flag, dest) in [
        ("cpu-quota", &f.cpu_quota, &mut v.quota),
        ("cpu-rt-runtime", &f.cpu_rt_runtime, &mut v.rt_runtime),
    ] {
        if let Some(s) = flag {
            *dest = parse_int(name, s)?;
        }
    }
    for (name, flag, dest) in [
        ("memory", &f.memory, &mut v.memory),
        ("memory-swap", &f.memory_swap, &mut v.swap),
        ("kernel-memory", &f.kernel_memory, &mut v.kernel),
        ("kernel-memory-tcp", &f.kernel_memory_tcp, &mut v.kernel_tcp),
        (
            "memory-reservation",
            &f.memory_reservation,
            &mut v.reservation,
        ),
    ] {
        if let Some(s) = flag {
            *dest = if s == "-1" { -1 } else { parse_size(name, s)? };
        }
    }
    if let Some(s) = &f.pids_limit {
        v.pids = parse_int("pids-limit", s)?;
    }
    Ok(v.into_update(None))
}

fn invalid(flag: &str, value: &str, what: &str) -> RuneError {
    RuneError::InvalidArgument {
        flag: format!("invalid value for {flag}"),
        message: format!("{value:?} is not {what}"),
    }
}

fn parse_int(flag: &str, s: &str) -> Result<i64> {
    s.parse().map_err(|_| invalid(flag, s, "an integer"))
}

/// Parses a byte size as runc's flags take it (docker/go-units `RAMInBytes`): digits
/// with optional decimals, an optional space, then an optional binary unit `k`, `m`,
/// `g`, `t` or `p` (any case), optional `i`, optional `b`: `1048576`, `64m`, `1.5g`,
/// `48MiB`, `100 MB`. A fraction of a byte is dropped.
pub fn parse_size(flag: &str, s: &str) -> Result<i64> {
    let bad = || RuneError::InvalidArgument {
        flag: format!("invalid value for {flag}"),
        message: format!("invalid size: '{s}'"),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, mut rest) = s.split_at(number_end);
    let well_formed = number
        .split('.')
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed {
        return Err(bad());
    }
    rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut chars = rest.chars().peekable();
    let shift = match chars.peek().map(|c| c.to_ascii_lowercase()) {
        Some(u @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            chars.next();
            10 * (1 + "kmgtp".find(u).unwrap() as i32)
        }
        _ => 0,
    };
    chars.next_if(|c| c.eq_ignore_ascii_case(&'i'));
    chars.next_if(|c| c.eq_ignore_ascii_case(&'b'));
    if chars.next().is_some() {
        return Err(bad());
    }
    // go-units parses "1.2.3" with the pattern and then fails in ParseFloat.
    let value: f64 = number.parse().map_err(|_| RuneError::InvalidArgument {
        flag: format!("invalid value for {flag}"),
        message: format!("{number:?} is not a number"),
    })?;
    let bytes = value * 2f64.powi(shift);
    if bytes >= i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("m", "1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("m", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("m", "1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("m", "2KB").unwrap(), 2048);
        assert_eq!(parse_size("m", "48MiB").unwrap(), 48 << 20);
        assert_eq!(parse_size("m", "100 MB").unwrap(), 100 << 20);
        assert_eq!(parse_size("m", "10b").unwrap(), 10);
        assert_eq!(parse_size("m", "1p").unwrap(), 1 << 50);
        for bad in ["", "x", "1q", "-5", "nan", "1.2.3m", ".5m", "1  m", "1mm"] {
            assert!(parse_size("m", bad).is_err(), "{bad}");
        }
        let e = parse_size("memory", "x").unwrap_err().to_string();
        assert_eq!(e, "invalid value for memory: invalid size: 'x'");
    }

    #[test]
    fn flags_keep_what_runc_keeps() {
        let flags = ResourceFlags {
            memory: Some("1m".into()),
            memory_swap: Some("-1".into()),
            cpu_shares: Some("512".into()),
            cpu_quota: Some("0".into()),
            pids_limit: Some("0".into()),
            cpuset_cpus: Some(String::new()),
            kernel_memory: Some("1m".into()),
            ..Default::default()
        };
        let u = from_flags(&flags).unwrap();
        let r = &u.resources;
        assert!(u.kernel_memory_ignored);
        let m = r.memory().as_ref().unwrap();
        assert_eq!(
            (m.limit(), m.swap(), m.kernel()),
            (Some(1 << 20), Some(-1), None)
        );
        let c = r.cpu().as_ref().unwrap();
        assert_eq!(
            (c.shares(), c.quota(), c.cpus().as_deref()),
            (Some(512), None, None)
        );
        assert!(r.pids().is_none(), "a zero limit leaves it unchanged");
        let e = from_flags(&ResourceFlags {
            cpu_period: Some("-3".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            e.to_string().starts_with("invalid value for cpu-period: "),
            "{e}"
        );
    }

    #[test]
    fn documents_keep_what_runc_keeps() {
        let u = from_document(
            br#"{"memory":{"limit":100,"swappiness":5},"pids":{"limit":5},
                 "devices":[{"allow":false,"access":"rwm"}],"cpu":{"idle":1,"shares":0}}"#,
        )
        .unwrap();
        let r = &u.resources;
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(100));
        assert_eq!(r.memory().as_ref().unwrap().swappiness(), None);
        assert_eq!(r.pids().as_ref().unwrap().limit(), 5);
        assert!(r.devices().is_none() && r.cpu().is_none());
        let err = from_document(br#"{"memory":{"limit":"x"}}"#).unwrap_err();
        assert!(err.to_string().contains("memory.limit"), "{err}");
    }
}
