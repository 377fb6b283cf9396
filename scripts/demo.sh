#!/usr/bin/env bash
# The main job: a busybox container through rune directly, in the sim enclave with
# attestation and secrets, a WebAssembly module in the wasm enclave, a confidential
# image, through containerd and through `docker --runtime rune`, each daemon private to
# this run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
need_root "make demo"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "rune run: a busybox container"
busybox_bundle "$WORK/bundle" sh -c 'echo "hello from $(hostname), pid $$ in its own namespace"; exit 3'
set +e
"$RUNE" --root "$WORK/rune" run --bundle "$WORK/bundle" demo
echo "exit code: $? (the program's own)"
set -e

step "rune create / start / state / delete"
busybox_bundle "$WORK/bundle2" sleep 30
"$RUNE" --root "$WORK/rune" create --bundle "$WORK/bundle2" demo2 > /dev/null
"$RUNE" --root "$WORK/rune" state demo2 | grep -E '"(id|status|pid)"'
"$RUNE" --root "$WORK/rune" start demo2
"$RUNE" --root "$WORK/rune" list
"$RUNE" --root "$WORK/rune" delete --force demo2

step "an enclave container: busybox's sh signed and run in the sim enclave (liberpal-sim)"
SIGN=$PWD/target/release/sim-sign
PAL=$PWD/target/release/liberpal-sim.so
export INCLAVARE_SIM_PLATFORM_DIR=$WORK/sim-platform   # the demo's own platform key
busybox_bundle "$WORK/enclave" /bin/sh -c 'echo "hello from inside the enclave"'
cp -a "$IMAGES/rootfs" "$WORK/enclave/rootfs"
python3 - "$WORK/enclave/config.json" "$PAL" <<'PY'
import json, sys
path, pal = sys.argv[1], sys.argv[2]
spec = json.load(open(path))
spec["root"] = {"path": "rootfs", "readonly": True}
spec["process"]["env"] += ["ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + pal]
json.dump(spec, open(path, "w"), indent=2)
PY
"$SIGN" keygen --out "$WORK/signer.key" >/dev/null
"$SIGN" sign --executable "$WORK/enclave/rootfs/bin/busybox" --entrypoint /bin/sh \
  --key "$WORK/signer.key" --out "$WORK/enclave/rootfs/enclave.manifest.json"
echo "expected mr_enclave (recomputed outside): $("$SIGN" measure --executable "$WORK/enclave/rootfs/bin/busybox" --entrypoint /bin/sh)"
"$RUNE" --root "$WORK/rune" run --bundle "$WORK/enclave" enclave-demo
echo "(sim proves nothing about hardware: it runs the confidential-container workflow anywhere)"

step "attestation: a report from the running enclave, checked by the tenant's shelter"
SHELTER=$PWD/target/release/shelter
python3 - "$WORK/enclave/config.json" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["process"]["args"] = ["/bin/sh", "-c", "sleep 30"]
json.dump(spec, open(sys.argv[1], "w"), indent=2)
PY
"$RUNE" --root "$WORK/rune" run -d --bundle "$WORK/enclave" enclave-attest 2>/dev/null
NONCE=$(head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n')
"$RUNE" --root "$WORK/rune" attest --report-data "$NONCE" --report-file "$WORK/report.bin" enclave-attest
MR=$("$SIGN" measure --executable "$WORK/enclave/rootfs/bin/busybox" --entrypoint /bin/sh)
printf 'allow_software_tees = true\n[expected]\nsim_mr_enclave = ["%s"]\n' "$MR" > "$WORK/policy.toml"
echo "-- the default policy (hardware only):"
# Whole outputs are read, then cut: a reader that stops early would race the writer.
OUT=$(refused "sim evidence under the default policy" "$SHELTER" verify --evidence "$WORK/report.bin" --report-data "$NONCE")
sed -n 1,2p <<<"$OUT"
echo "-- a policy that allows sim and pins the measurement:"
OUT=$("$SHELTER" verify --evidence "$WORK/report.bin" --report-data "$NONCE" --policy "$WORK/policy.toml")
sed -n 1p <<<"$OUT"
"$RUNE" --root "$WORK/rune" delete --force enclave-attest

step "a WebAssembly enclave: a WASI module signed and run in liberpal-wasm, its report verified"
# The container's program is a .wasm module: liberpal-wasm runs it under wasmtime, in
# the wasm sandbox (no system calls beyond what WASI grants), measured and signed as the
# sim enclave's programs are. With an argument it stays up (sleeps) to be attested.
WPAL=$PWD/target/release/liberpal-wasm.so
W=$WORK/wasm
mkdir -p "$W"
cat > "$W/app.wat" <<'WAT'
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $argc (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "hello from WebAssembly, in a liberpal-wasm enclave\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 51))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (drop (call $argc (i32.const 16) (i32.const 20)))
    (if (i32.gt_u (i32.load (i32.const 16)) (i32.const 1))
      (then ;; one clock subscription: 60 s on the monotonic clock
        (i32.store8 (i32.const 264) (i32.const 0)) (i32.store (i32.const 272) (i32.const 1))
        (i64.store (i32.const 280) (i64.const 60000000000))
        (drop (call $poll (i32.const 256) (i32.const 320) (i32.const 1) (i32.const 400)))))))
WAT
busybox_bundle "$W" /app.wasm
cp -a "$IMAGES/rootfs" "$W/rootfs"
wat2wasm "$W/app.wat" -o "$W/rootfs/app.wasm"
chmod 755 "$W/rootfs/app.wasm"
python3 - "$W/config.json" "$WPAL" <<'PY'
import json, sys
path, pal = sys.argv[1], sys.argv[2]
spec = json.load(open(path))
spec["root"] = {"path": "rootfs", "readonly": True}
spec["process"]["env"] += ["ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + pal]
json.dump(spec, open(path, "w"), indent=2)
PY
WMR=$("$SIGN" sign --executable "$W/rootfs/app.wasm" --entrypoint /app.wasm \
  --key "$WORK/signer.key" --out "$W/rootfs/enclave.manifest.json" | sed -n 's/^mr_enclave //p')
echo "-- rune run (module mr_enclave $WMR):"
"$RUNE" --root "$WORK/rune" run --bundle "$W" wasm-demo
python3 - "$W/config.json" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["process"]["args"] = ["/app.wasm", "wait"]
json.dump(spec, open(sys.argv[1], "w"), indent=2)
PY
"$RUNE" --root "$WORK/rune" run -d --bundle "$W" wasm-attest >/dev/null 2>"$W/attest.log"
NONCE=$(head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n')
"$RUNE" --root "$WORK/rune" attest --report-data "$NONCE" --report-file "$W/report.bin" wasm-attest
printf 'allow_software_tees = true\n[expected]\nsim_mr_enclave = ["%s"]\n' "$WMR" > "$W/policy.toml"
echo "-- the module's report, with its measurement pinned:"
OUT=$("$SHELTER" verify --evidence "$W/report.bin" --report-data "$NONCE" --policy "$W/policy.toml")
sed -n 1p <<<"$OUT"
"$RUNE" --root "$WORK/rune" delete --force wasm-attest
echo "(the module itself reads evidence binding its own key in /dev/attestation: see the README)"

step "attested TLS end to end: enclave server (sim) <- inclavared <- shelter remoteattestation"
# An RA-TLS server from this workspace runs in a sim enclave container and serves on a
# socket in a shared directory; inclavared relays to it; the tenant's shelter checks the
# enclave's own certificate against its nonce and policy.
SERVER=$PWD/target/release/examples/enclave_server
mkdir -p "$WORK/eaa/sock"
busybox_bundle "$WORK/eaa" /bin/enclave_server --listen unix:///sock/enclave.sock --message "hello from the enclave"
cp -a "$IMAGES/rootfs" "$WORK/eaa/rootfs"
mkdir -p "$WORK/eaa/rootfs/sock"
cp "$SERVER" "$WORK/eaa/rootfs/bin/enclave_server"
for lib in $(ldd "$SERVER" | grep -o '/[^ ]*'); do
  mkdir -p "$WORK/eaa/rootfs$(dirname "$lib")"; cp "$lib" "$WORK/eaa/rootfs$lib"
done
python3 - "$WORK/eaa/config.json" "$PAL" "$WORK/eaa/sock" <<'PY'
import json, sys
path, pal, sock = sys.argv[1:4]
spec = json.load(open(path))
spec["root"] = {"path": "rootfs", "readonly": True}
spec["process"]["env"] += ["ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + pal]
spec["mounts"].append({"destination": "/sock", "type": "bind", "source": sock, "options": ["rbind", "rw"]})
json.dump(spec, open(path, "w"), indent=2)
PY
EMR=$("$SIGN" sign --executable "$WORK/eaa/rootfs/bin/enclave_server" --entrypoint /bin/enclave_server \
  --key "$WORK/signer.key" --out "$WORK/eaa/rootfs/enclave.manifest.json" | sed -n 's/^mr_enclave //p')
# Ready when it says so: a socket file exists between bind(2) and listen(2), when a
# connection is refused.
"$RUNE" --root "$WORK/rune" run -d --bundle "$WORK/eaa" eaa-demo 2>"$WORK/eaa.log"
wait_for 30 "the enclave's RA-TLS server" grep -q 'listening on' "$WORK/eaa.log"
printf 'allow_software_tees = true\n[expected]\nsim_mr_enclave = ["%s"]\n' "$EMR" > "$WORK/eaa-policy.toml"
./target/release/inclavared --listen "unix://$WORK/inclavared.sock" \
  --xfer "unix://$WORK/eaa/sock/enclave.sock" --policy "$WORK/eaa-policy.toml" \
  >"$WORK/inclavared.out" 2>"$WORK/inclavared.log" &
INCLAVARED=$!
PIDS+=("$INCLAVARED")
wait_for 30 inclavared grep -q '^listening on' "$WORK/inclavared.out"
echo "-- shelter remoteattestation, policy pinning mr_enclave $EMR:"
"$SHELTER" remoteattestation --addr "unix://$WORK/inclavared.sock" --policy "$WORK/eaa-policy.toml"
echo "-- the same with the default policy (hardware only):"
OUT=$(refused "a sim enclave under the default policy" "$SHELTER" remoteattestation --addr "unix://$WORK/inclavared.sock")
sed -n 1,2p <<<"$OUT"
kill "$INCLAVARED"; wait "$INCLAVARED" || true
"$RUNE" --root "$WORK/rune" delete --force eaa-demo

step "secrets after attestation: verdictd (KBS 0.4.0) <- attestation-agent in a sim enclave"
# verdictd holds a secret for one sim measurement; the enclave's program is the
# attestation agent, which proves what it is and prints only the secret's digest.
AGENT=$PWD/target/release/attestation-agent
mkdir -p "$WORK/kbs/resources"
printf 'the demo secret' > "$WORK/kbs/resources/default\\x2Fkey\\x2Fdemo"
chmod 600 "$WORK/kbs/resources/default\\x2Fkey\\x2Fdemo"
kbs_bundle() { # DIR TWEAK: the agent's enclave bundle; prints its mr_enclave
  busybox_bundle "$1" /bin/attestation-agent --url URL get-resource kbs:///default/key/demo
  cp -a "$IMAGES/rootfs" "$1/rootfs"
  cp "$AGENT" "$1/rootfs/bin/attestation-agent"
  printf '%s' "$2" >> "$1/rootfs/bin/attestation-agent"
  for lib in $(ldd "$AGENT" | grep -o '/[^ ]*'); do
    mkdir -p "$1/rootfs$(dirname "$lib")"; cp "$lib" "$1/rootfs$lib"
  done
  "$SIGN" sign --executable "$1/rootfs/bin/attestation-agent" --entrypoint /bin/attestation-agent \
    --key "$WORK/signer.key" --out "$1/rootfs/enclave.manifest.json" | sed -n 's/^mr_enclave //p'
}
kbs_url() { # DIR URL: point the bundle at verdictd, on the host's network
  python3 - "$1/config.json" "$PAL" "$2" <<'PY'
import json, sys
path, pal, url = sys.argv[1:4]
spec = json.load(open(path))
spec["root"] = {"path": "rootfs", "readonly": True}
# Idempotent: a bundle is pointed at another verdictd later.
env = [e for e in spec["process"]["env"] if not e.startswith("ENCLAVE_")]
spec["process"]["env"] = env + ["ENCLAVE_TYPE=sim", "ENCLAVE_RUNTIME_PATH=" + pal]
spec["process"]["args"][2] = url
spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
json.dump(spec, open(path, "w"), indent=2)
PY
}
KMR=$(kbs_bundle "$WORK/kbs/good" "")
printf 'allow_software_tees = true\n[expected]\nsim_mr_enclave = ["%s"]\n' "$KMR" > "$WORK/kbs/attestation.toml"
start_verdictd "$WORK/kbs"
kbs_url "$WORK/kbs/good" "$KBS_URL"
echo "-- the enclave verdictd admits (mr_enclave $KMR):"
"$RUNE" --root "$WORK/rune" run --bundle "$WORK/kbs/good" kbs-demo
KMR2=$(kbs_bundle "$WORK/kbs/other" "changed")
echo "-- the same enclave with another executable (mr_enclave $KMR2):"
kbs_url "$WORK/kbs/other" "$KBS_URL"
refused "the changed enclave" "$RUNE" --root "$WORK/rune" run --bundle "$WORK/kbs/other" kbs-demo-other
kill "$VERDICTD"; wait "$VERDICTD" || true

step "reference values from the image: verdictd admits the enclave the tenant's shelter predicted"
# The tenant computes, from the image alone, the mr_enclave its enclave will report,
# signs it (an in-toto statement about the image in a DSSE envelope) and provisions it;
# verdictd's attestation policy pins no measurement: only the reference value admits.
RV=$WORK/rv
mkdir -p "$RV/kbs/resources"
image_layout "$RV/layout" "$WORK/kbs/good/rootfs" 'true'   # the agent's enclave, as an image
"$SHELTER" rv keygen --out "$RV/rv.key" --public-out "$RV/kbs/rv.pub" >/dev/null
echo "-- shelter rv bundle (from the image, nothing run):"
"$SHELTER" rv bundle --image "oci:$RV/layout:latest" --key "$RV/rv.key" --out "$RV/bundle" | grep mr_enclave
echo "   (the enclave's signer printed mr_enclave $KMR when it signed it)"
openssl genpkey -algorithm ed25519 -out "$RV/admin.key" 2>/dev/null
openssl pkey -in "$RV/admin.key" -pubout -out "$RV/kbs/admin.pub"
printf 'the demo secret' > "$RV/kbs/resources/default\\x2Fkey\\x2Fdemo"
chmod 600 "$RV/kbs/resources/"*
printf 'allow_software_tees = true\n' > "$RV/kbs/attestation.toml"
start_verdictd "$RV/kbs" "$ADMIN_JWT_TOML
[rvps]
trusted_keys = [\"rv.pub\"]"
kbs_url "$WORK/kbs/good" "$KBS_URL"
kbs_url "$WORK/kbs/other" "$KBS_URL"
echo "-- before the reference value is provisioned:"
refused "an enclave no reference value names" "$RUNE" --root "$WORK/rune" run --bundle "$WORK/kbs/good" rv-demo-early
echo "-- the signed bundle provisioned, then the same enclave:"
curl -fsS -X POST -H "Authorization: Bearer $(admin_jwt "$RV/admin.key")" -H 'Content-Type: application/json' \
  --data-binary "@$RV/bundle/bundle-message.json" "$KBS_URL/kbs/v0/reference-value" >/dev/null
"$RUNE" --root "$WORK/rune" run --bundle "$WORK/kbs/good" rv-demo
echo "-- the enclave with another executable (mr_enclave $KMR2):"
refused "the changed enclave" "$RUNE" --root "$WORK/rune" run --bundle "$WORK/kbs/other" rv-demo-other
kill "$VERDICTD"; wait "$VERDICTD" || true

step "a confidential image: encrypted and signed by the tenant, decrypted only inside the enclave"
# The tenant encrypts every layer for a key-encryption key (KEK) that only verdictd
# holds and signs the image with cosign; the host's registry keeps ciphertext. In the
# enclave, the signed boot program attests, gets the signature policy and the KEK,
# pulls, checks, decrypts and unpacks into a root only the enclave sees, then runs it.
TOOL=$PWD/target/release/enclave-image
C=$WORK/confidential
mkdir -p "$C/files" "$C/kbs/resources"
SECRET="the tenant's secret $(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "$SECRET" > "$C/files/secret.txt"
image_layout "$C/layout" "$C/files" 'echo "inside the enclave: $(cat /secret.txt)"'
rm -rf "$C/files"
start_registry
"$TOOL" keygen --cosign "$C/cosign.key"
openssl genpkey -algorithm ed25519 -out "$C/admin.key" 2>/dev/null
openssl pkey -in "$C/admin.key" -pubout -out "$C/kbs/admin.pub"
BMR=$(sign_boot "$C/boot" "$WORK/signer.key")
printf 'allow_software_tees = true\n[expected]\nsim_mr_enclave = ["%s"]\n' "$BMR" > "$C/kbs/attestation.toml"
# The signature policy and its key, KBS resources the enclave fetches after attesting.
printf '{"default":[{"type":"reject"}],"transports":{"docker":{"%s/demo":[{"type":"sigstoreSigned","keyPath":"kbs:///default/image-policy/cosign","signedIdentity":{"type":"matchRepository"}}]}}}' \
  "$REGISTRY" > "$C/kbs/resources/default\\x2Fimage-policy\\x2Fcontainers"
cp "$C/cosign.key.pub" "$C/kbs/resources/default\\x2Fimage-policy\\x2Fcosign"
chmod 600 "$C/kbs/resources/"*
start_verdictd "$C/kbs" "$ADMIN_JWT_TOML"
echo "-- tenant: enclave-image encrypt (fresh KEK stored in verdictd) and sign (cosign)"
"$TOOL" encrypt --insecure-registry "$REGISTRY" --kek-id kbs:///default/image-kek/app \
  --kbs "$KBS_URL" --admin-key "$C/admin.key" "oci:$C/layout:latest" "$REGISTRY/demo/app:v1"
"$TOOL" sign --insecure-registry "$REGISTRY" --cosign-key "$C/cosign.key" "$REGISTRY/demo/app:v1"
echo "-- what the host's registry holds:"
curl -fs -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REGISTRY/v2/demo/app/manifests/v1" |
  python3 -c 'import json, sys; [print("  layer", l["digest"][:19], l["mediaType"]) for l in json.load(sys.stdin)["layers"]]'
echo "-- rune run (boot program mr_enclave $BMR):"
image_bundle "$C/bundle" ENCLAVE_TYPE=sim "ENCLAVE_RUNTIME_PATH=$PAL" "ENCLAVE_IMAGE=$REGISTRY/demo/app:v1" \
  "ENCLAVE_IMAGE_INSECURE=$REGISTRY" "ENCLAVE_IMAGE_BOOT=$C/boot/enclave-boot" "ENCLAVE_KBS_URL=$KBS_URL" \
  ENCLAVE_IMAGE_POLICY=kbs:///default/image-policy/containers
if ! "$RUNE" --root "$WORK/rune" run --bundle "$C/bundle" image-demo 2>"$C/run.err"; then
  cat "$C/run.err" >&2; exit 1
fi
cat "$C/run.err" >&2
echo "-- the image pull, as an event in the enclave's runtime measurement log (its evidence carries it):"
grep -o 'PullImage.*' "$C/run.err"
echo "-- verdictd, after the enclave attested:"
sed 's/\x1b\[[0-9;]*m//g' "$C/kbs/verdictd.log" | grep -o 'released.*image-kek/app'
if grep -rqsF "$SECRET" "$C" "$WORK/registry" "$WORK/rune"; then
  echo "the secret reached the host's disk" >&2; exit 1
fi
echo "(the secret is nowhere in the bundle, rune's state or the registry's storage)"
echo "-- an image the host pushed in its place (not signed by the tenant):"
skopeo copy -q --dest-tls-verify=false "oci-archive:$IMAGES/busybox-oci.tar" "docker://$REGISTRY/demo/app:host"
image_bundle "$C/copy" ENCLAVE_TYPE=sim "ENCLAVE_RUNTIME_PATH=$PAL" "ENCLAVE_IMAGE=$REGISTRY/demo/app:host" \
  "ENCLAVE_IMAGE_INSECURE=$REGISTRY" "ENCLAVE_IMAGE_BOOT=$C/boot/enclave-boot" "ENCLAVE_KBS_URL=$KBS_URL" \
  ENCLAVE_IMAGE_POLICY=kbs:///default/image-policy/containers
OUT=$(refused "the unsigned image" "$RUNE" --root "$WORK/rune" run --bundle "$C/copy" image-demo-copy)
grep 'error' <<<"$OUT"
kill "$VERDICTD"; wait "$VERDICTD" || true

step "containerd: ctr run --runc-binary rune"
start_containerd
"${CTR[@]}" run --rm --runc-binary "$RUNE" docker.io/library/busybox:rune ctr-demo \
  sh -c 'echo hello from containerd through rune'

step "containerd: ctr run --runtime io.containerd.rune.v2, an enclave container by RUNE_CARRIER=sim"
# The shim signs the image's program into a liberpal-sim enclave at create; the program
# asks its enclave for a report and prints the measurement in it.
"${CTR[@]}" run --rm --runtime io.containerd.rune.v2 --env RUNE_CARRIER=sim \
  docker.io/library/busybox:rune shim-demo sh -c \
  'printf "%064d" 1 >&"$INCLAVARE_SIM_FD"; dd bs=1k count=1 <&"$INCLAVARE_SIM_FD" 2>/dev/null |
   od -An -v -tx1 -j8 -N48 | tr -d " \n" | sed "s/^/mr_enclave in my report: /"; echo'

step "docker run --runtime rune"
start_dockerd
"${DOCKER[@]}" run --rm --runtime rune --network none --pull=never busybox:rune \
  sh -c 'echo hello from docker through rune; echo "the host kernel: $(uname -r)"'

step "done: every daemon was private to this demo and has been stopped"
