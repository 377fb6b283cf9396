#!/usr/bin/env bash
# `make bench`: rune against Debian's runc on the same busybox bundle, same run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
need_root "make bench"
RUNS=${RUNS:-40}
WARMUP=${WARMUP:-5}

echo "host: $(uname -r), cgroup: $(stat -fc %T /sys/fs/cgroup), $(nproc) CPUs"
echo "rune: $("$RUNE" --version | head -1); runc: $(runc --version | head -1)"
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

# Evidence verification (rats) against the raw dcap-qvl call, same input, same run.
cargo run --quiet --release -p rats --example verify_bench
