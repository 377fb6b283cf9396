#!/usr/bin/env bash
# `make bench`: rune against Debian's runc on the same busybox bundle, same run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
need_root "make bench"
RUNS=${RUNS:-40}
WARMUP=${WARMUP:-5}

echo "host: $(uname -r), cgroup: $(stat -fc %T /sys/fs/cgroup), $(nproc) CPUs"
echo "rune: $("$RUNE" --version | sed -n 1p); runc: $(runc --version | sed -n 1p)"
busybox_bundle "$WORK/bundle" /bin/true
mkdir -p "$WORK/rune" "$WORK/runc"
python3 scripts/bench.py "container run: create + start + wait + delete of /bin/true" \
  "$RUNS" "$WARMUP" "runc run" \
  "runc run=runc --root $WORK/runc run --bundle $WORK/bundle b{i}" \
  "rune run=$RUNE --root $WORK/rune run --bundle $WORK/bundle b{i}" \
  "namespace floor=unshare -fpmnu --mount-proc /bin/true"

# Enclave overhead: the same busybox program as a plain container, in the sim enclave
# (liberpal-sim, debug mode: measured at create, no manifest), and through the C skeleton
# test PAL v3.
export INCLAVARE_SIM_PLATFORM_DIR=$WORK/sim-platform
SKELETON=$WORK/liberpal-skeleton-v3.so
cc -shared -fPIC -O2 -DPAL_VERSION=3 -o "$SKELETON" crates/pal/tests/skeleton/skeleton.c
enclave_bundle() {
  busybox_bundle "$1" /bin/true
  python3 - "$1/config.json" "$2" "$3" <<'PY'
import json, sys
path, pal, args = sys.argv[1], sys.argv[2], sys.argv[3]
spec = json.load(open(path))
spec["process"]["env"] += ["ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + pal, "ENCLAVE_RUNTIME_ARGS=" + args]
json.dump(spec, open(path, "w"), indent=2)
PY
}
enclave_bundle "$WORK/sim" "$PWD/target/release/liberpal-sim.so" debug
enclave_bundle "$WORK/skeleton" "$SKELETON" ""
python3 scripts/bench.py "enclave container: the same /bin/true plain and in an enclave" \
  "$RUNS" "$WARMUP" "rune run plain" \
  "rune run plain=$RUNE --root $WORK/rune run --bundle $WORK/bundle p{i}" \
  "rune run sim enclave=$RUNE --root $WORK/rune run --bundle $WORK/sim s{i}" \
  "rune run skeleton PAL v3=$RUNE --root $WORK/rune run --bundle $WORK/skeleton k{i}"

# containerd: the rune shim (io.containerd.rune.v2, Rust, driving rune) against Debian's
# Go runc shim (io.containerd.runc.v2, driving runc), whole `ctr run --rm` of /bin/true.
start_containerd
IMG=docker.io/library/busybox:rune
CACHE=$WORK/containerd/sim-cache
python3 scripts/bench.py "containerd: ctr run --rm of /bin/true through each shim" \
  "$RUNS" "$WARMUP" "runc.v2 (Go shim + runc)" \
  "runc.v2 (Go shim + runc)=${CTR[*]} run --rm --runtime io.containerd.runc.v2 $IMG g{i} /bin/true" \
  "rune.v2 (Rust shim + rune)=${CTR[*]} run --rm --runtime io.containerd.rune.v2 $IMG r{i} /bin/true" \
  "rune.v2 sim carrier, cached manifest=${CTR[*]} run --rm --runtime io.containerd.rune.v2 --env RUNE_CARRIER=sim $IMG s{i} /bin/true" \
  "rune.v2 sim carrier, signed at create=rm -rf $CACHE && ${CTR[*]} run --rm --runtime io.containerd.rune.v2 --env RUNE_CARRIER=sim $IMG c{i} /bin/true"

# Peak RSS of each shim serving one running container (after an exec).
echo
echo "### shim memory: one running container, after one exec"
echo
echo "| shim | VmHWM (peak RSS) KiB | VmRSS KiB |"
echo "|---|---:|---:|"
for rt in io.containerd.runc.v2 io.containerd.rune.v2; do
  id=mem-${rt//./-}
  "${CTR[@]}" run -d --runtime "$rt" "$IMG" "$id" sleep 1000 >/dev/null
  "${CTR[@]}" task exec --exec-id e "$id" /bin/true
  shim=$(pgrep -f -- "-id $id -address" | sed -n 1p)
  hwm=$(awk '/VmHWM/{print $2}' "/proc/$shim/status")
  rss=$(awk '/VmRSS/{print $2}' "/proc/$shim/status")
  echo "| $rt | $hwm | $rss |"
  "${CTR[@]}" task kill -s SIGKILL "$id"
  for _ in $(seq 100); do "${CTR[@]}" task ls | grep -q "^$id .*STOPPED" && break; sleep 0.1; done
  "${CTR[@]}" task delete "$id" >/dev/null
  "${CTR[@]}" container delete "$id"
done

# Evidence verification (rats) against the raw dcap-qvl call, same input, same run.
cargo run --quiet --release -p rats --example verify_bench

# Attested TLS (rats-tls): mutual handshakes with sim evidence against plain rustls
# mutual TLS with ordinary certificates, same run.
cargo run --quiet --release -p rats-tls --example handshake_bench

# Key broker (verdictd): full RCAR + resource GET cycles with the sample TEE at
# concurrency 1 and 16, against three plain /healthz requests, same run.
cargo run --quiet --release -p verdictd --example kbs_bench
