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

# wait_for SECONDS WHAT CMD...: polls CMD every 0.1 s; after SECONDS fails in one line.
wait_for() {
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): $what did not become ready within $secs s" >&2
  return 1
}

# refused WHAT CMD...: CMD must fail (a refusal being shown); prints what it said.
refused() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    printf '%s\n' "$out"
    echo "$(basename "$0"): $what was not refused" >&2
    return 1
  fi
  printf '%s\n' "$out" | sed 's/^/   (refused, as it should be) /'
}

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
  wait_for 60 dockerd "${DOCKER[@]}" info
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
  wait_for 30 containerd "${CTR[@]}" version
  "${CTR[@]}" images import --index-name docker.io/library/busybox:rune "$IMAGES/busybox-oci.tar" >/dev/null
}

# start_registry: Debian's docker-registry on a free loopback port, storage in the work
# dir; sets REGISTRY=127.0.0.1:PORT.
start_registry() {
  local d=$WORK/registry port
  mkdir -p "$d"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$d/data" "$port" > "$d/config.yml"
  /usr/bin/docker-registry serve "$d/config.yml" > "$WORK/registry.log" 2>&1 &
  PIDS+=($!)
  REGISTRY=127.0.0.1:$port
  wait_for 15 docker-registry curl -fs "http://$REGISTRY/v2/"
}

# image_layout DIR FILES CMD: an OCI layout DIR:latest, the busybox image plus a layer
# holding the tree FILES, whose command is CMD (one shell command line for sh -c).
image_layout() {
  local dir=$1 files=$2 cmd=$3 unpacked
  mkdir -p "$dir"
  tar -C "$dir" -xf "$IMAGES/busybox-oci.tar"
  unpacked=$(mktemp -d "$WORK/unpack.XXXXXX")
  umoci unpack --image "$dir:latest" "$unpacked/b" >/dev/null
  cp -a "$files/." "$unpacked/b/rootfs/"
  umoci repack --image "$dir:latest" "$unpacked/b" >/dev/null
  umoci config --image "$dir:latest" --config.cmd /bin/sh --config.cmd -c --config.cmd "$cmd"
  umoci gc --layout "$dir"
  rm -rf "$unpacked"
}

# sign_boot DIR KEY: the statically linked boot program signed for /.rune/enclave-boot
# into DIR (with its manifest beside it); prints its mr_enclave.
sign_boot() {
  mkdir -p "$1"
  cp "$PWD/target/release/enclave-boot" "$1/enclave-boot"
  "$PWD/target/release/sim-sign" sign --executable "$1/enclave-boot" --entrypoint /.rune/enclave-boot \
    --key "$2" --out "$1/enclave-boot.manifest.json" | sed -n 's/^mr_enclave //p'
}

# image_bundle DIR ENV...: a bundle on the host's network whose program is the
# confidential image's (the boot program in its place), with NAME=value settings ENV.
image_bundle() {
  local dir=$1; shift
  busybox_bundle "$dir" /.rune/enclave-boot
  cp -a "$IMAGES/rootfs" "$dir/rootfs"
  python3 - "$dir/config.json" "$@" <<'PY'
import json, sys
path, env = sys.argv[1], sys.argv[2:]
spec = json.load(open(path))
spec["root"] = {"path": "rootfs", "readonly": False}
spec["process"]["env"] += env
spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
json.dump(spec, open(path, "w"), indent=2)
PY
}

# admin_jwt KEY: a 5-minute token for verdictd's `bearer_jwt` admin API (role admin),
# signed by openssl with the Ed25519 private KEY (PEM), as `enclave-image --admin-key`
# signs its own (scripts/admin-jwt.sh, which operators use too).
admin_jwt() {
  "$PWD/scripts/admin-jwt.sh" "$1" 300
}

# The admin API of the demo's brokers: admin tokens signed by the key beside admin.pub.
ADMIN_JWT_TOML='[admin]
mode = "bearer_jwt"
public_keys = ["admin.pub"]
roles = ["admin"]'

# start_verdictd DIR [TOML]: verdictd on a loopback port of its choosing, configured by
# DIR/verdictd.toml (plain HTTP, attestation policy DIR/attestation.toml, resources in
# DIR/resources, then TOML), logging to DIR/verdictd.log; sets VERDICTD (its pid, stopped
# at exit) and KBS_URL.
start_verdictd() {
  printf '%s\n%s\n' 'listen = "127.0.0.1:0"
insecure_http = true
resource_policy = "affirming"
attestation_policy = "attestation.toml"
[storage]
type = "localfs"
dir = "resources"' "${2:-}" > "$1/verdictd.toml"
  ./target/release/verdictd --config "$1/verdictd.toml" >"$1/verdictd.out" 2>"$1/verdictd.log" &
  VERDICTD=$!
  PIDS+=("$VERDICTD")
  wait_for 30 verdictd grep -q listening "$1/verdictd.out"
  KBS_URL=$(sed -n 's/^listening on //p' "$1/verdictd.out")
}
