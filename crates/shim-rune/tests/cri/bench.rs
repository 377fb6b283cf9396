//! `make bench`'s CRI row (ignored by `cargo test`; scripts/bench.sh runs it): a pod
//! sandbox and one container, from RunPodSandbox to the container running
//! (StartContainer returned), through handler `rune` against handler `runc` (Debian's
//! Go runc shim), interleaved in one containerd. Printed as scripts/bench.py prints.

use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;

use crate::client::Cri;
use crate::common::*;
use crate::node::*;

/// RunPodSandbox + CreateContainer + StartContainer, timed; then the pod is removed
/// (not timed) and nothing is left.
fn pod_start(c: &Ctrd, client: &Cri, handler: &str) -> Duration {
    let config = pod_config(c, &format!("bench-{handler}"));
    let waiting = ["/bin/sh", "-c", "while :; do sleep 1; done"];
    let t = Instant::now();
    let pod = client.must_run_pod_sandbox(&config, handler);
    let ctr = start_container(client, &pod, &config, "app", &waiting);
    let elapsed = t.elapsed();
    let (st, _) = client.container_status(&ctr);
    assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
    remove_pod(c, client, &pod, &config);
    elapsed
}

fn loadavg() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().next().unwrap_or("?").to_string()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
#[ignore = "a benchmark: make bench (scripts/bench.sh) runs it"]
fn bench_cri_pod_and_container_start() {
    if !root_or_skip("bench_cri_pod_and_container_start") {
        return;
    }
    let runs: usize = std::env::var("CRI_RUNS").map_or(20, |v| v.parse().unwrap());
    let warmup = 3;
    let (c, client) = start_cri();
    let cases = [
        ("runc handler (Go shim + runc)", "runc"),
        ("rune handler (Rust shim + rune)", "rune"),
    ];
    let mut times = vec![Vec::new(); cases.len()];
    let load_before = loadavg();
    for i in 0..warmup + runs {
        for (n, (_, handler)) in cases.iter().enumerate() {
            let t = pod_start(&c, &client, handler);
            if i >= warmup {
                times[n].push(ms(t));
            }
        }
    }
    let load_after = loadavg();
    let median = |t: &[f64]| {
        let n = t.len();
        (t[(n - 1) / 2] + t[n / 2]) / 2.0
    };
    for t in &mut times {
        t.sort_by(f64::total_cmp);
    }
    let base = median(&times[0]);
    println!("\n### CRI: pod sandbox + one container, RunPodSandbox to running, per handler\n");
    println!(
        "{runs} runs after {warmup} warm-ups, interleaved; {} CPUs; load average {load_before} before, {load_after} after\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| command | median ms | p90 ms | min ms | median / {} |",
        cases[0].0
    );
    println!("|---|---:|---:|---:|---:|");
    for ((name, _), t) in cases.iter().zip(&times) {
        let p90 = t[(t.len() * 9 / 10).min(t.len() - 1)];
        let med = median(t);
        println!(
            "| {name} | {med:.2} | {p90:.2} | {:.2} | {:.2} |",
            t[0],
            med / base
        );
    }
}
