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

# WebAssembly enclave (liberpal-wasm, debug mode): a WASI hello world and a ~1 MiB module,
# cold (its compiled-code cache emptied before each run: Cranelift compiles the module) and
# warm (cached), against the same busybox /bin/echo plain and in the sim enclave.
WASM_ROOTFS=$WORK/wasm-rootfs
cp -a "$IMAGES/rootfs" "$WASM_ROOTFS"
python3 scripts/wasm-modules.py "$WORK"
for m in hello big; do
  wat2wasm "$WORK/$m.wat" -o "$WASM_ROOTFS/$m.wasm"
  chmod 0755 "$WASM_ROOTFS/$m.wasm"
done
echo "wasm modules: hello $(stat -c %s "$WASM_ROOTFS/hello.wasm") B, big $(stat -c %s "$WASM_ROOTFS/big.wasm") B;" \
  "liberpal-wasm.so $(stat -c %s "$PWD/target/release/liberpal-wasm.so") B"
wasm_bundle() {
  busybox_bundle "$1" "$2"
  python3 - "$1/config.json" "$WASM_ROOTFS" "$3" <<'PY'
import json, sys
path, rootfs, pal = sys.argv[1:]
spec = json.load(open(path))
spec["root"] = {"path": rootfs, "readonly": True}
spec["process"]["env"] += ["ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + pal, "ENCLAVE_RUNTIME_ARGS=debug"]
json.dump(spec, open(path, "w"), indent=2)
PY
}
wasm_bundle "$WORK/wasm-hello" /hello.wasm "$PWD/target/release/liberpal-wasm.so"
wasm_bundle "$WORK/wasm-big" /big.wasm "$PWD/target/release/liberpal-wasm.so"
busybox_bundle "$WORK/echo" /bin/echo hello
enclave_bundle "$WORK/sim-echo" "$PWD/target/release/liberpal-sim.so" debug
python3 - "$WORK/sim-echo/config.json" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["process"]["args"] = ["/bin/echo", "hello"]
json.dump(spec, open(sys.argv[1], "w"), indent=2)
PY
# Cold runs use a platform directory of their own, so that emptying their cache between
# runs leaves the warm runs' cache (interleaved with them) alone.
COLD="INCLAVARE_SIM_PLATFORM_DIR=$WORK/cold-platform"
WASM_CACHE=$WORK/cold-platform/wasm-cache
# Goal (issue 19): a warm wasm `rune run` within 1.2x of a plain one (the ratio column).
python3 scripts/bench.py "wasm enclave, warm compiled-code cache, against plain echo (goal: ratio <= 1.2)" \
  "$RUNS" "$WARMUP" "rune run plain echo" \
  "rune run plain echo=$RUNE --root $WORK/rune run --bundle $WORK/echo e{i}" \
  "rune run sim enclave echo=$RUNE --root $WORK/rune run --bundle $WORK/sim-echo se{i}" \
  "wasm hello, warm=$RUNE --root $WORK/rune run --bundle $WORK/wasm-hello wh{i}" \
  "wasm 1 MiB, warm=$RUNE --root $WORK/rune run --bundle $WORK/wasm-big bw{i}"
# Goal: the cache cuts the ~1 MiB module's cold start by >= 5x (the cold row's ratio to the
# warm baseline).
python3 scripts/bench.py "wasm enclave: cold (no compiled-code cache: Cranelift compiles) against warm (goal: 1 MiB ratio >= 5)" \
  "$RUNS" "$WARMUP" "wasm 1 MiB, warm" \
  "wasm 1 MiB, warm=$RUNE --root $WORK/rune run --bundle $WORK/wasm-big bw2{i}" \
  "wasm 1 MiB, cold=rm -rf $WASM_CACHE && $COLD $RUNE --root $WORK/rune run --bundle $WORK/wasm-big bc{i}" \
  "wasm hello, warm=$RUNE --root $WORK/rune run --bundle $WORK/wasm-hello wh2{i}" \
  "wasm hello, cold=rm -rf $WASM_CACHE && $COLD $RUNE --root $WORK/rune run --bundle $WORK/wasm-hello wc{i}"

# Throughput: 200 sequential `rune run`s of the warm WASI hello world and of plain echo
# (runwasi's anchor, 330 tasks/s on its hardware, is for `ctr run` through its shim);
# and the peak RSS of one run's processes (the runelet with wasmtime and the module).
python3 - "$RUNE" "$WORK" <<'PY'
import os, subprocess, sys, time
rune, work = sys.argv[1], sys.argv[2]
def burst(bundle, tag, n=200):
    start = time.perf_counter()
    for i in range(n):
        subprocess.run([rune, "--root", f"{work}/rune", "run", "--bundle", f"{work}/{bundle}",
                        f"{tag}-{os.getpid()}-{i}"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
    return n / (time.perf_counter() - start)
print("\n### sequential runs: tasks/s over 200 `rune run`s\n")
print(f"load average {os.getloadavg()[0]:.2f}\n")
print("| bundle | tasks/s |\n|---|---:|")
plain = burst("echo", "tp")
wasm = burst("wasm-hello", "tw")
print(f"| plain echo | {plain:.1f} |\n| wasm hello (warm cache) | {wasm:.1f} ({wasm / plain:.2f}x plain) |")
print("\n(anchor: runwasi's wasmtime shim, 330 tasks/s on its hardware through `ctr run`)")
def peak(bundle, tag):
    # GNU time's %M: the largest RSS among rune and the descendants it reaped (its
    # runelet, with wasmtime and the module), in KiB.
    r = subprocess.run(["/usr/bin/time", "-f", "%M", rune, "--root", f"{work}/rune", "run",
                        "--bundle", f"{work}/{bundle}", tag],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    return r.stderr.strip().splitlines()[-1]
print("\n| one run | peak RSS of its processes, KiB |\n|---|---:|")
for bundle in ("echo", "wasm-hello", "wasm-big"):
    print(f"| {bundle} | {peak(bundle, f'pk-{bundle}-{os.getpid()}')} |")
PY

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

# CRI (kubelet's path): pod sandbox + one container, RunPodSandbox to running, through
# containerd's CRI plugin with handler rune against handler runc, same run, medians of
# CRI_RUNS (crates/shim-rune/tests/cri/bench.rs, a test `cargo test` ignores).
CRI_RUNS=${CRI_RUNS:-20} cargo test --quiet --release --workspace --test cri -- --ignored \
  --exact bench::bench_cri_pod_and_container_start --nocapture --test-threads 1 |
  sed -e '/^running 1 test$/d' -e '/^test result: /d' -e '/^\.$/d'

# Confidential image: pull + verify + decrypt + unpack of a ~100 MiB image from a
# loopback registry inside a sim enclave, against the host path for the same plaintext
# image (skopeo copy to an OCI layout + umoci unpack), same run.
IMG_RUNS=${IMG_RUNS:-$RUNS}
TOOL=$PWD/target/release/enclave-image
B=$WORK/image-bench
mkdir -p "$B/files/data" "$B/kbs/resources"
# Half incompressible, half text (gzip takes it to ~3/4): ~100 MiB unpacked.
head -c 48M /dev/urandom > "$B/files/data/random.bin"
head -c 39M /dev/urandom | base64 -w 76 > "$B/files/data/text.txt"
image_layout "$B/layout" "$B/files" 'true'
rm -rf "$B/files"
start_registry
skopeo copy -q --dest-tls-verify=false "oci:$B/layout:latest" "docker://$REGISTRY/bench/app:plain"
"$PWD/target/release/sim-sign" keygen --out "$B/signer.key" >/dev/null
"$TOOL" keygen --kek "$B/kek.bin" >/dev/null
"$TOOL" keygen --cosign "$B/cosign.key" >/dev/null
"$TOOL" encrypt --insecure-registry "$REGISTRY" --kek-id kbs:///default/image-kek/bench \
  --kek-file "$B/kek.bin" "oci:$B/layout:latest" "$REGISTRY/bench/app:enc" >/dev/null
"$TOOL" sign --insecure-registry "$REGISTRY" --cosign-key "$B/cosign.key" "$REGISTRY/bench/app:enc" >/dev/null
BMR=$(sign_boot "$B/boot" "$B/signer.key")
printf 'allow_software_tees = true\n[expected]\nsim_mr_enclave = ["%s"]\n' "$BMR" > "$B/kbs/attestation.toml"
printf '{"default":[{"type":"reject"}],"transports":{"docker":{"%s/bench":[{"type":"sigstoreSigned","keyPath":"kbs:///default/image-policy/cosign","signedIdentity":{"type":"matchRepository"}}]}}}' \
  "$REGISTRY" > "$B/kbs/resources/default\\x2Fimage-policy\\x2Fcontainers"
cp "$B/cosign.key.pub" "$B/kbs/resources/default\\x2Fimage-policy\\x2Fcosign"
cp "$B/kek.bin" "$B/kbs/resources/default\\x2Fimage-kek\\x2Fbench"
chmod 600 "$B/kbs/resources/"*
printf 'listen = "127.0.0.1:0"\ninsecure_http = true\nresource_policy = "affirming"\nattestation_policy = "attestation.toml"\n[storage]\ntype = "localfs"\ndir = "resources"\n' \
  > "$B/kbs/verdictd.toml"
./target/release/verdictd --config "$B/kbs/verdictd.toml" >"$B/kbs/verdictd.out" 2>"$WORK/verdictd-bench.log" &
PIDS+=($!)
wait_for 30 verdictd grep -q listening "$B/kbs/verdictd.out"
KBS_URL=$(sed -n 's/^listening on //p' "$B/kbs/verdictd.out")
COMMON=(ENCLAVE_TYPE=sim "ENCLAVE_RUNTIME_PATH=$PWD/target/release/liberpal-sim.so"
  "ENCLAVE_IMAGE_INSECURE=$REGISTRY" "ENCLAVE_IMAGE_BOOT=$B/boot/enclave-boot")
image_bundle "$B/plain" "${COMMON[@]}" "ENCLAVE_IMAGE=$REGISTRY/bench/app:plain"
image_bundle "$B/enc" "${COMMON[@]}" "ENCLAVE_IMAGE=$REGISTRY/bench/app:enc" \
  "ENCLAVE_KBS_URL=$KBS_URL" ENCLAVE_IMAGE_POLICY=kbs:///default/image-policy/containers
BYTES=$(curl -fs -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REGISTRY/v2/bench/app/manifests/plain" |
  python3 -c 'import json, sys; m = json.load(sys.stdin); print(sum(l["size"] for l in m["layers"]))')
HOST_PATH="rm -rf $B/host && mkdir $B/host && skopeo copy -q --src-tls-verify=false docker://$REGISTRY/bench/app:plain oci:$B/host/l:v1 && umoci unpack --image $B/host/l:v1 $B/host/b >/dev/null"
BENCH_MIB=$((BYTES / 1048576)) python3 scripts/bench.py \
  "confidential image: $((BYTES / 1048576)) MiB of layers (gzip) from a loopback registry" \
  "$IMG_RUNS" 3 "host: skopeo copy + umoci unpack" \
  "host: skopeo copy + umoci unpack=$HOST_PATH" \
  "rune run, pulled in the sim enclave=$RUNE --root $WORK/rune run --bundle $B/plain i{i}" \
  "rune run, encrypted + cosign-signed, KEK from verdictd=$RUNE --root $WORK/rune run --bundle $B/enc e{i}"
rm -rf "$B/host"
# The boot program's own figure: its peak resident set before it hands over.
"$RUNE" --root "$WORK/rune" run --bundle "$B/enc" peak 2>&1 >/dev/null |
  sed -n 's/^enclave-boot: image \(sha256:.\{12\}\).* ready in \([0-9.]* s\), peak memory \([0-9.]* MiB\).*/\nenclave-boot (encrypted image): ready in \2, peak RSS \3/p'

# Reference values: `shelter rv measure` of the busybox image (an oci-archive read in
# place, its layer checked and unpacked privately, the program hashed and measured as
# liberpal-sim measures it), against hashing the program alone.
python3 scripts/bench.py "reference value: shelter rv measure of the busybox image (oci-archive)" \
  "$RUNS" 3 "sha384sum of the program" \
  "sha384sum of the program=sha384sum $IMAGES/rootfs/bin/busybox" \
  "shelter rv measure=$PWD/target/release/shelter rv measure --image oci-archive:$IMAGES/busybox-oci.tar:latest --runtime-args debug --entrypoint /bin/sh"

# Evidence verification (rats) against the raw dcap-qvl call, same input, same run: DCAP
# quotes cold (no collateral cache) and with cached collateral (goal: ≥ 4× raw dcap-qvl).
./target/release/examples/verify_bench

# Runtime measurements: a sim report and its 1,000-entry event log, replayed (rats).
./target/release/examples/eventlog_bench

# Attested TLS (rats-tls): mutual handshakes with sim evidence against plain rustls
# mutual TLS with ordinary certificates, same run.
./target/release/examples/handshake_bench

# Key broker (verdictd): full RCAR + resource GET cycles with the sample TEE at
# concurrency 1 and 16, against three plain /healthz requests, same run.
./target/release/examples/kbs_bench
