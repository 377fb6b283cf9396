//! `rune events --stats` (runc's `{"type":"stats","data":…}` event, whose data is
//! runc's types/events.go `Stats`) as containerd's cgroup v1 `Metrics`, which `ctr task
//! metrics` and the CRI read.

use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat, Throttle,
};
use containerd_shim::protos::protobuf::MessageField;
use serde_json::Value;

/// Converts one statistics document. Missing fields read as zero, as in cgroupfs.
pub fn metrics_v1(json: &[u8]) -> Result<Metrics, String> {
    let v: Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    // Accept both the bare document and runc's `{"type":"stats","data":…}` event.
    let s = if v.get("data").is_some() {
        &v["data"]
    } else {
        &v
    };
    if !s.is_object() {
        return Err("not a statistics object".into());
    }
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let entry = |m: &Value| {
        MessageField::some(MemoryEntry {
            usage: n(&m["usage"]),
            max: n(&m["max"]),
            limit: n(&m["limit"]),
            failcnt: n(&m["failcnt"]),
            ..Default::default()
        })
    };
    let cpu = &s["cpu"];
    let mem = &s["memory"];
    let raw = |k: &str| n(&mem["raw"][k]);
    Ok(Metrics {
        pids: MessageField::some(PidsStat {
            current: n(&s["pids"]["current"]),
            limit: n(&s["pids"]["limit"]),
            ..Default::default()
        }),
        cpu: MessageField::some(CPUStat {
            usage: MessageField::some(CPUUsage {
                total: n(&cpu["usage"]["total"]),
                user: n(&cpu["usage"]["user"]),
                kernel: n(&cpu["usage"]["kernel"]),
                per_cpu: cpu["usage"]["percpu"]
                    .as_array()
                    .map(|a| a.iter().map(n).collect())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            throttling: MessageField::some(Throttle {
                periods: n(&cpu["throttling"]["periods"]),
                throttled_periods: n(&cpu["throttling"]["throttledPeriods"]),
                throttled_time: n(&cpu["throttling"]["throttledTime"]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(MemoryStat {
            usage: entry(&mem["usage"]),
            swap: entry(&mem["swap"]),
            kernel: entry(&mem["kernel"]),
            kernel_tcp: entry(&mem["kernelTCP"]),
            cache: n(&mem["cache"]),
            rss: raw("rss"),
            mapped_file: raw("mapped_file"),
            inactive_file: raw("inactive_file"),
            active_file: raw("active_file"),
            inactive_anon: raw("inactive_anon"),
            active_anon: raw("active_anon"),
            total_rss: raw("total_rss"),
            total_cache: raw("total_cache"),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    /// A stats event in runc's shape (types/events.go; go-runc's `Stats` reads the same
    /// names).
    fn runcs_stats_event_becomes_v1_metrics() {
        let json = br#"{"type":"stats","id":"c","data":{"cpu":{"usage":{"total":900,
            "percpu":[400,500],"kernel":300,"user":600},"throttling":{"periods":3}},
            "pids":{"current":2,"limit":64},
            "memory":{"cache":12,"usage":{"limit":1048576,"usage":4096,"max":8192,"failcnt":1},
            "swap":{"limit":0,"failcnt":0},"kernel":{"limit":0,"failcnt":0},
            "kernelTCP":{"limit":0,"failcnt":0},"raw":{"rss":99}}}}"#;
        let m = metrics_v1(json).unwrap();
        assert_eq!(m.pids.current, 2);
        assert_eq!(m.pids.limit, 64);
        assert_eq!(m.cpu.usage.total, 900);
        assert_eq!(m.cpu.usage.per_cpu, vec![400, 500]);
        assert_eq!((m.cpu.usage.user, m.cpu.usage.kernel), (600, 300));
        assert_eq!(m.cpu.throttling.periods, 3);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.usage.max, 8192);
        assert_eq!(m.memory.usage.failcnt, 1);
        assert_eq!(m.memory.rss, 99);
        assert_eq!(m.memory.cache, 12);
        assert!(metrics_v1(b"[1]").is_err());
        assert!(metrics_v1(b"{").is_err());
    }
}
