#!/usr/bin/env python3
"""Interleaved timing of whole commands: medians over N runs after W warm-ups.

usage: bench.py TITLE RUNS WARMUP BASELINE_NAME NAME=CMD [NAME=CMD ...]
Each CMD is run through /bin/sh with {i} replaced by a fresh run number (for container ids).
Prints a Markdown table with median, p90 and min in ms, and each median's ratio to the
baseline's, plus the load average before and after. With BENCH_MIB=N in the environment
(the MiB each command moves), a MiB/s column at the median follows.
"""
import os
import statistics
import subprocess
import sys
import time


def main() -> None:
    title, runs, warmup, baseline = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    cases = [arg.split("=", 1) for arg in sys.argv[5:]]
    times = {name: [] for name, _ in cases}
    load_before = os.getloadavg()
    devnull = open(os.devnull, "wb")
    out = open(os.environ.get("BENCH_OUT", "/tmp/bench.out"), "wb")
    for i in range(warmup + runs):
        for name, cmd in cases:
            c = cmd.replace("{i}", f"{os.getpid()}-{i}")
            start = time.perf_counter()
            rc = subprocess.run(["/bin/sh", "-c", c], stdout=out, stderr=out, stdin=devnull).returncode
            elapsed = (time.perf_counter() - start) * 1000
            if rc != 0:
                sys.exit(f"{name}: exit {rc}: {c}")
            if i >= warmup:
                times[name].append(elapsed)
    load_after = os.getloadavg()
    base = statistics.median(times[baseline])
    print(f"\n### {title}\n")
    print(f"{runs} runs after {warmup} warm-ups, interleaved; {os.cpu_count()} CPUs; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after\n")
    mib = float(os.environ["BENCH_MIB"]) if os.environ.get("BENCH_MIB") else None
    print("| command | median ms | p90 ms | min ms | median / " + baseline + " |"
          + (" MiB/s |" if mib else ""))
    print("|---|---:|---:|---:|---:|" + ("---:|" if mib else ""))
    for name, _ in cases:
        t = sorted(times[name])
        med = statistics.median(t)
        p90 = t[min(len(t) - 1, int(len(t) * 0.9))]
        rate = f" {mib / (med / 1000):.1f} |" if mib else ""
        print(f"| {name} | {med:.2f} | {p90:.2f} | {t[0]:.2f} | {med / base:.2f} |{rate}")


if __name__ == "__main__":
    main()
