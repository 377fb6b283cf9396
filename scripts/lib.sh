# Shared by demo.sh and bench.sh: private daemons in a temp dir, stopped by pid on exit.
# shellcheck shell=bash

RUNE=${RUNE:-$PWD/target/release/rune}
IMAGES=${IMAGES:-$PWD/target/images}
WORK=$(mktemp -d /tmp/rune-work.XXXXXX)
PIDS=()

cleanup() {
  local status=$?
  # A failed run shows what its daemons said: their logs go with the work dir.
  if [[ $status != 0 ]]; then
    for log in "$WORK"/*.log; do
      [[ -s $log ]] || continue
      echo "--- $(basename "$log") (last lines)"; tail -n 20 "$log"
    done >&2
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  # Unmount what the daemons left, deepest first, then remove the work dir.
  awk -v d="$WORK" '$5 ~ "^"d {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need_root() {
  if [[ $(id -u) != 0 ]]; then echo "$1 needs root (namespaces, cgroups, mounts)"; exit 1; fi
}

# busybox_bundle DIR ARGS...: a bundle running ARGS on the shared busybox rootfs.
busybox_bundle() {
  local dir=$1; shift
  mkdir -p "$dir"
  "$RUNE" spec --bundle "$dir"
  python3 - "$dir/config.json" "$IMAGES/rootfs" "$@" <<'PY'
import json, sys
path, rootfs, args = sys.argv[1], sys.argv[2], sys.argv[3:]
spec = json.load(open(path))
spec["root"] = {"path": rootfs, "readonly": True}
spec["process"]["terminal"] = False
spec["process"]["args"] = args
json.dump(spec, open(path, "w"), indent=2)
PY
}

start_dockerd() {
  local d=$WORK/dockerd
  mkdir -p "$d"
  printf '{"runtimes":{"rune":{"path":"%s"}}}\n' "$RUNE" > "$d/daemon.json"
  /usr/sbin/dockerd --data-root "$d/data" --exec-root "$d/exec" -H "unix://$d/d.sock" \
    --pidfile "$d/d.pid" --config-file "$d/daemon.json" --iptables=false --ip-masq=false \
    --bridge=none --storage-driver vfs > "$d/log" 2>&1 &
  PIDS+=($!)
  DOCKER=(/usr/bin/docker -H "unix://$d/d.sock")
  for _ in $(seq 300); do "${DOCKER[@]}" info >/dev/null 2>&1 && break; sleep 0.1; done
  "${DOCKER[@]}" import "$IMAGES/rootfs.tar" busybox:rune >/dev/null
}

start_containerd() {
  local d=$WORK/containerd
  mkdir -p "$d"
  cat > "$d/config.toml" <<EOT
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/c.sock"
[ttrpc]
  address = "$d/c.sock.ttrpc"
[debug]
  address = "$d/debug.sock"
EOT
  # containerd-shim-rune-v2 on containerd's PATH, with a private configuration.
  mkdir -p "$d/bin"
  ln -sf "$PWD/target/release/containerd-shim-rune-v2" "$d/bin/"
  "$PWD/target/release/sim-sign" keygen --out "$d/sim-signer.key" >/dev/null
  SHIM_CONFIG=$d/shim.toml
  cat > "$SHIM_CONFIG" <<EOT
rune = "$RUNE"
rune_root = "$d/rune"
[enclave_runtime.sim]
enclave_runtime_path = "$PWD/target/release/liberpal-sim.so"
signing_key = "$d/sim-signer.key"
cache_dir = "$d/sim-cache"
EOT
  PATH="$d/bin:$PATH" INCLAVARE_CONTAINERS_CONFIG=$SHIM_CONFIG INCLAVARE_SIM_PLATFORM_DIR=$d/sim \
    /usr/bin/containerd --config "$d/config.toml" > "$d/log" 2>&1 &
  PIDS+=($!)
  CTR=(/usr/bin/ctr -a "$d/c.sock")
  for _ in $(seq 200); do [[ -S $d/c.sock ]] && break; sleep 0.1; done
  "${CTR[@]}" images import --index-name docker.io/library/busybox:rune "$IMAGES/busybox-oci.tar" >/dev/null
}
