#!/bin/sh
# Build the guest image on top of the host image: copy the parent's disk, write the
# preparation into it with `debugfs -w`, check it with `e2fsck`, convert back to qcow2.
set -eu
: "${STAGEGATE_OUT:?run by stagegate: STAGEGATE_OUT is the output directory}"
parent="${STAGEGATE_IMAGE_DEBIAN_HOST_ARTIFACT:?the guest is based on images/debian-host, whose artifact is missing}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
qemu-img convert -f qcow2 -O raw "$parent" "$work/disk.raw"
echo "debian-guest ${STAGEGATE_IMAGE_DEBIAN_GUEST_VERSION:-unknown} on debian-host ${STAGEGATE_IMAGE_DEBIAN_HOST_VERSION:-unknown}" > "$work/prepared"
printf 'cd /etc\nwrite %s stagegate-guest\n' "$work/prepared" > "$work/cmds"
debugfs -w -f "$work/cmds" "$work/disk.raw" >/dev/null 2>&1
e2fsck -fn "$work/disk.raw" >/dev/null
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$STAGEGATE_OUT/disk.qcow2"
debugfs -R "cat /var/lib/stagegate/packages" "$work/disk.raw" 2>/dev/null > "$STAGEGATE_OUT/packages.lock"
echo "built debian-guest on host ${STAGEGATE_IMAGE_DEBIAN_HOST_VERSION:-}"
