#!/usr/bin/env bash
# Builds the busybox test image from Debian's busybox-static, with no registry:
#   $OUT/rootfs/            a rootfs (/bin/busybox plus applet links)
#   $OUT/rootfs.tar         the rootfs as a tar, for `docker import` / `podman import`
#   $OUT/busybox-oci.tar    an OCI image layout tar, for `ctr images import`
# Idempotent: does nothing when the outputs are newer than /bin/busybox.
set -euo pipefail
OUT=${1:-target/images}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [[ -f $OUT/busybox-oci.tar && $OUT/busybox-oci.tar -nt /bin/busybox ]]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rootfs=$tmp/rootfs
mkdir -p "$rootfs"/{bin,etc,proc,sys,dev,tmp,root}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
  [[ $applet == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$rootfs/etc/group"
tar -C "$rootfs" -cf "$tmp/rootfs.tar" .

layout=$tmp/layout
umoci init --layout "$layout"
umoci new --image "$layout:latest"
umoci unpack --rootless --image "$layout:latest" "$tmp/bundle" >/dev/null
cp -a "$rootfs/." "$tmp/bundle/rootfs/"
umoci repack --image "$layout:latest" "$tmp/bundle"
umoci config --image "$layout:latest" --config.cmd /bin/sh \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
tar -C "$layout" -cf "$tmp/busybox-oci.tar" .

rm -rf "$OUT/rootfs"
mv "$rootfs" "$OUT/rootfs"
mv "$tmp/rootfs.tar" "$OUT/rootfs.tar"
mv "$tmp/busybox-oci.tar" "$OUT/busybox-oci.tar"
echo "busybox image in $OUT"
