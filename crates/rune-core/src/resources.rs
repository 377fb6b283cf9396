//! `update`'s resource changes: a `LinuxResources` document (`-r FILE`, `-` for stdin)
//! with runc's individual flags applied on top.

use libcontainer::oci_spec::runtime::{LinuxPids, LinuxResources};

use crate::error::{Result, RuneError};

/// runc's `update` flags. `None` leaves a value as the document has it.
#[derive(Debug, Clone, Default)]
pub struct ResourceFlags {
    pub memory: Option<String>,
    pub memory_reservation: Option<String>,
    pub memory_swap: Option<String>,
    pub cpu_shares: Option<u64>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
    /// `--cpu-rt-period`, microseconds.
    pub cpu_rt_period: Option<u64>,
    /// `--cpu-rt-runtime`, microseconds.
    pub cpu_rt_runtime: Option<i64>,
}

/// Parses a `LinuxResources` JSON document, naming the field that does not fit.
pub fn parse_document(bytes: &[u8]) -> Result<LinuxResources> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| RuneError::InvalidArgument {
        flag: format!("resources {}", e.path()),
        message: e.into_inner().to_string(),
    })
}

/// Applies the flags on top of `base`.
pub fn apply_flags(mut base: LinuxResources, f: &ResourceFlags) -> Result<LinuxResources> {
    if f.memory.is_some() || f.memory_reservation.is_some() || f.memory_swap.is_some() {
        let mut m = base.memory().unwrap_or_default();
        if let Some(v) = &f.memory {
            m.set_limit(Some(parse_size("--memory", v)?));
        }
        if let Some(v) = &f.memory_reservation {
            m.set_reservation(Some(parse_size("--memory-reservation", v)?));
        }
        if let Some(v) = &f.memory_swap {
            m.set_swap(Some(parse_size("--memory-swap", v)?));
        }
        base.set_memory(Some(m));
    }
    let cpu_flags = f.cpu_shares.is_some()
        || f.cpu_rt_period.is_some()
        || f.cpu_rt_runtime.is_some()
        || f.cpu_period.is_some()
        || f.cpu_quota.is_some()
        || f.cpuset_cpus.is_some()
        || f.cpuset_mems.is_some();
    if cpu_flags {
        let mut c = base.cpu().clone().unwrap_or_default();
        if f.cpu_shares.is_some() {
            c.set_shares(f.cpu_shares);
        }
        if f.cpu_period.is_some() {
            c.set_period(f.cpu_period);
        }
        if f.cpu_rt_period.is_some() {
            c.set_realtime_period(f.cpu_rt_period);
        }
        if f.cpu_rt_runtime.is_some() {
            c.set_realtime_runtime(f.cpu_rt_runtime);
        }
        if f.cpu_quota.is_some() {
            c.set_quota(f.cpu_quota);
        }
        if f.cpuset_cpus.is_some() {
            c.set_cpus(f.cpuset_cpus.clone());
        }
        if f.cpuset_mems.is_some() {
            c.set_mems(f.cpuset_mems.clone());
        }
        base.set_cpu(Some(c));
    }
    if let Some(limit) = f.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        base.set_pids(Some(p));
    }
    if let Some(w) = f.blkio_weight {
        let mut b = base.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        base.set_block_io(Some(b));
    }
    Ok(base)
}

/// Parses a byte size the way runc's flags take it: `1048576`, `512k`, `64m`, `1g`,
/// `1.5g` (binary units, optional trailing `b`), or `-1` for unlimited.
pub fn parse_size(flag: &str, s: &str) -> Result<i64> {
    let bad = || RuneError::InvalidArgument {
        flag: flag.to_string(),
        message: format!("invalid size {s:?}"),
    };
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let value: f64 = num.parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    let bytes = value * mult as f64;
    if bytes > i64::MAX as f64 {
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
        assert_eq!(parse_size("m", "-1").unwrap(), -1);
        for bad in ["", "x", "1q", "-5", "nan"] {
            assert!(parse_size("m", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_document() {
        let doc = parse_document(br#"{"memory":{"limit":100},"pids":{"limit":5}}"#).unwrap();
        let flags = ResourceFlags {
            memory: Some("1m".into()),
            cpu_shares: Some(512),
            ..Default::default()
        };
        let r = apply_flags(doc, &flags).unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(1 << 20));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 5);
        assert_eq!(r.cpu().as_ref().unwrap().shares(), Some(512));
        let err = parse_document(br#"{"memory":{"limit":"x"}}"#).unwrap_err();
        assert!(err.to_string().contains("memory.limit"), "{err}");
    }
}
