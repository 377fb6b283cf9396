//! `rune events --stats` (libcgroups' statistics as JSON) as containerd's cgroup v1
//! `Metrics`, which `ctr task metrics` and the CRI read.

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
            max: n(&m["max_usage"]),
            limit: n(&m["limit"]),
            failcnt: n(&m["fail_count"]),
            ..Default::default()
        })
    };
    let cpu = &s["cpu"];
    let mem = &s["memory"];
    let stat = |k: &str| n(&mem["stats"][k]);
    Ok(Metrics {
        pids: MessageField::some(PidsStat {
            current: n(&s["pids"]["current"]),
            limit: n(&s["pids"]["limit"]),
            ..Default::default()
        }),
        cpu: MessageField::some(CPUStat {
            usage: MessageField::some(CPUUsage {
                total: n(&cpu["usage"]["usage_total"]),
                user: n(&cpu["usage"]["usage_user"]),
                kernel: n(&cpu["usage"]["usage_kernel"]),
                per_cpu: cpu["usage"]["per_core_usage_total"]
                    .as_array()
                    .map(|a| a.iter().map(n).collect())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            throttling: MessageField::some(Throttle {
                periods: n(&cpu["throttling"]["periods"]),
                throttled_periods: n(&cpu["throttling"]["throttled_periods"]),
                throttled_time: n(&cpu["throttling"]["throttled_time"]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(MemoryStat {
            usage: entry(&mem["memory"]),
            swap: entry(&mem["memswap"]),
            kernel: entry(&mem["kernel"]),
            kernel_tcp: entry(&mem["kernel_tcp"]),
            cache: n(&mem["cache"]),
            rss: stat("rss"),
            mapped_file: stat("mapped_file"),
            inactive_file: stat("inactive_file"),
            active_file: stat("active_file"),
            inactive_anon: stat("inactive_anon"),
            active_anon: stat("active_anon"),
            total_rss: stat("total_rss"),
            total_cache: stat("total_cache"),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libcgroups_statistics_become_v1_metrics() {
        let json = br#"{"cpu":{"usage":{"usage_total":900,"usage_user":600,"usage_kernel":300,
            "per_core_usage_total":[400,500]},"throttling":{"periods":3}},
            "pids":{"current":2,"limit":64},
            "memory":{"memory":{"usage":4096,"max_usage":8192,"limit":1048576,"fail_count":1},
            "cache":12,"stats":{"rss":99}}}"#;
        let m = metrics_v1(json).unwrap();
        assert_eq!(m.pids.current, 2);
        assert_eq!(m.pids.limit, 64);
        assert_eq!(m.cpu.usage.total, 900);
        assert_eq!(m.cpu.usage.per_cpu, vec![400, 500]);
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
