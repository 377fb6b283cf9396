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
