#!/bin/sh
# Installs rune, containerd-shim-rune-v2, sim-sign and the enclave runtimes (PALs) on a
# node and registers the CRI handler `rune` with containerd. Run by the node installer
# DaemonSet (deploy/node/daemonset.yaml) with the host's root at $HOST_ROOT; also usable
# by hand on a node: HOST_ROOT=/ ARTIFACTS=<dir with bin/ and lib/rune/> sh install.sh
# (optional: KBS_CA=<the KBS's CA file>, default /kbs-ca/ca.crt, skipped when absent;
# RESTART_CONTAINERD=1 to restart containerd through pid 1, else restart it yourself
# when the installer says the handler was written).
#
# Idempotent: a second run changes nothing. Files are replaced by rename, so a running
# shim keeps its binary. The handler is written into containerd's main config between
# marker lines (replaced on every run); anything else in that file is kept as it is.
set -eu

HOST_ROOT=${HOST_ROOT:-/host}
ARTIFACTS=${ARTIFACTS:-/opt/inclavare}
CONFIG_DIR=${CONFIG_DIR:-$(dirname "$0")}
CONTAINERD_CONFIG_VERSION=${CONTAINERD_CONFIG_VERSION:-2}
RESTART_CONTAINERD=${RESTART_CONTAINERD:-0}

die() { echo "rune-installer: $*" >&2; exit 1; }

# install_file SRC DEST MODE: copy to DEST.new, then rename over DEST.
install_file() {
    cp "$1" "$2.new" && chmod "$3" "$2.new" && mv -f "$2.new" "$2"
}

case $CONTAINERD_CONFIG_VERSION in
    2|3) ;;
    *) die "CONTAINERD_CONFIG_VERSION must be 2 (containerd 1.6, 1.7) or 3 (containerd 2.x), not $CONTAINERD_CONFIG_VERSION" ;;
esac
[ -d "$ARTIFACTS/bin" ] || die "no $ARTIFACTS/bin: the installer image carries the binaries there"

main=$HOST_ROOT/etc/containerd/config.toml
begin='# BEGIN inclavare-containers: CRI handler rune, written by the rune node installer'
end='# END inclavare-containers'
# Decided before anything is installed: a config this script must not edit stops it here.
# The handler goes into the main config, between markers: containerd 1.6 and 1.7 replace a
# whole plugin section with an imported file's, so a drop-in would drop the node's own CRI
# settings (sandbox image, runc's SystemdCgroup, registries).
if [ -s "$main" ]; then
    have=$(sed -n 's/^[[:space:]]*version[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$main" | head -n 1)
    if [ -n "$have" ] && [ "$have" != "$CONTAINERD_CONFIG_VERSION" ]; then
        die "$main is config version $have; set CONTAINERD_CONFIG_VERSION=$have (2: containerd 1.6, 1.7; 3: containerd 2.x)"
    fi
    if sed "/^$begin\$/,/^$end\$/d" "$main" | grep -q 'runtimes\.rune\]'; then
        die "$main already defines a runtime handler rune outside this installer's markers: remove it and run again"
    fi
fi

bin=$HOST_ROOT/usr/local/bin
lib=$HOST_ROOT/usr/local/lib/rune
etc=$HOST_ROOT/etc/inclavare-containers
mkdir -p "$bin" "$lib" "$etc" "$HOST_ROOT/etc/containerd"

for b in rune containerd-shim-rune-v2 sim-sign; do
    [ -f "$ARTIFACTS/bin/$b" ] || die "the installer image lacks bin/$b"
    install_file "$ARTIFACTS/bin/$b" "$bin/$b" 0755
done
for f in "$ARTIFACTS"/lib/rune/*; do
    [ -f "$f" ] || continue
    install_file "$f" "$lib/$(basename "$f")" 0755
done

# The key that signs sim enclaves on this node (when no signature server is configured).
# Generated once, readable by root only.
if [ ! -e "$etc/sim-signer.key" ]; then
    (umask 077 && "$bin/sim-sign" keygen --out "$etc/sim-signer.key" >/dev/null)
fi

# The KBS's CA certificates, which confidential-image containers name as ENCLAVE_KBS_CA
# (the shim lets a container name only host files its configuration lists). From the
# optional ConfigMap kbs-ca (key ca.crt); the shim's configuration is written once to list
# it, and is the operator's afterwards.
KBS_CA=${KBS_CA:-/kbs-ca/ca.crt}
if [ -f "$KBS_CA" ]; then
    install_file "$KBS_CA" "$etc/kbs-ca.pem" 0644
    if [ ! -e "$etc/config.toml" ]; then
        cat > "$etc/config.toml.new" <<'TOML'
# The shim's configuration (crates/shim-rune/src/config.rs lists every key). Written once
# by the rune node installer; yours to edit, it is not rewritten.
[enclave_image]
kbs_ca = ["/etc/inclavare-containers/kbs-ca.pem"]
TOML
        mv -f "$etc/config.toml.new" "$etc/config.toml"
    elif ! grep -q 'kbs-ca\.pem' "$etc/config.toml"; then
        echo "rune-installer: $etc/config.toml does not list /etc/inclavare-containers/kbs-ca.pem under [enclave_image] kbs_ca: containers cannot name it as ENCLAVE_KBS_CA" >&2
    fi
fi

# The main config without the installer's previous block, then the block: a second run
# writes the same bytes.
{
    if [ -s "$main" ]; then
        sed "/^$begin\$/,/^$end\$/d" "$main"
        # a last line without its newline must not run into the marker
        [ -z "$(tail -c 1 "$main")" ] || echo
    else
        printf 'version = %s\n' "$CONTAINERD_CONFIG_VERSION"
    fi
    echo "$begin"
    grep -v '^version[[:space:]]*=' "$CONFIG_DIR/containerd-rune-v$CONTAINERD_CONFIG_VERSION.toml"
    echo "$end"
} > "$main.new"
if cmp -s "$main.new" "$main"; then
    rm -f "$main.new"
else
    mv -f "$main.new" "$main"
fi

# containerd reads its config only at start; binaries, PALs and the shim's configuration
# are read at each container's start. So containerd is restarted only when the config it
# last started with (after a restart by this installer, recorded in a stamp) is not this
# one: a recreated installer pod (node reboot, eviction, rollout) leaves it alone, and a
# restart that failed is tried again on the next run.
stamp=$etc/.containerd-config-applied
applied=$(cksum < "$main")
if [ "$RESTART_CONTAINERD" = 1 ] && [ "$(cat "$stamp" 2>/dev/null)" != "$applied" ]; then
    # Running pods keep running: their shims outlive containerd.
    nsenter --target 1 --mount --uts --ipc --net --pid -- systemctl restart containerd \
        || die "could not restart containerd on the node"
    echo "$applied" > "$stamp.new" && mv -f "$stamp.new" "$stamp"
    echo "rune-installer: installed; containerd handler rune in /etc/containerd/config.toml, containerd restarted"
else
    echo "rune-installer: installed; containerd handler rune in /etc/containerd/config.toml"
fi
