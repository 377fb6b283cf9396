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

# Enclave overhead: the same program as a plain container and through a PAL (the C
# skeleton test PAL v3, which forks the payload; liberpal-sim replaces it once it lands).
PAL=$WORK/liberpal-skeleton-v3.so
cc -shared -fPIC -O2 -DPAL_VERSION=3 -o "$PAL" crates/pal/tests/skeleton/skeleton.c
busybox_bundle "$WORK/enclave" /bin/true
python3 - "$WORK/enclave/config.json" "$PAL" <<'PY'
import json, sys
path, pal = sys.argv[1], sys.argv[2]
spec = json.load(open(path))
spec["process"]["env"] += ["ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + pal]
json.dump(spec, open(path, "w"), indent=2)
PY
python3 scripts/bench.py "enclave container: the same /bin/true plain and through a PAL v3" \
  "$RUNS" "$WARMUP" "rune run plain" \
  "rune run plain=$RUNE --root $WORK/rune run --bundle $WORK/bundle p{i}" \
  "rune run enclave=$RUNE --root $WORK/rune run --bundle $WORK/enclave e{i}"
