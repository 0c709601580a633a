#!/bin/sh
# Build the guest image on top of the host image: a copy of the host's disk with the
# guest preparation written into it (`debugfs -w`, no mounts), checked with `e2fsck`:
# the snapshot of a host after preparation, which guest tests boot. Its lock is the
# host's package set, which the host recipe wrote into /etc/stagegate/packages.lock.
set -eu
: "${STAGEGATE_OUT:?run by stagegate: STAGEGATE_OUT is the output directory}"
. ./recipes/debian.sh
need qemu-img qemu-utils
need debugfs e2fsprogs
need e2fsck e2fsprogs
parent="${STAGEGATE_IMAGE_DEBIAN_HOST_ARTIFACT:?the guest is based on images/debian-host, whose artifact is missing}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
qemu-img convert -f qcow2 -O raw "$parent" "$work/disk.raw"
echo "debian-guest ${STAGEGATE_IMAGE_DEBIAN_GUEST_VERSION:-unknown} on debian-host ${STAGEGATE_IMAGE_DEBIAN_HOST_VERSION:-unknown}" > "$work/prepared"
echo debian-guest > "$work/hostname"
cat > "$work/cmds" <<CMDS
cd /etc
write $work/prepared stagegate-guest
rm hostname
write $work/hostname hostname
CMDS
debugfs -w -f "$work/cmds" "$work/disk.raw" >/dev/null 2>&1
e2fsck -fn "$work/disk.raw" >/dev/null 2>&1 || { echo "debian-guest: the prepared file system does not check clean" >&2; exit 1; }
debugfs -R "cat /etc/stagegate-guest" "$work/disk.raw" 2>/dev/null | grep -q debian-guest || {
    echo "debian-guest: the preparation was not written into the image" >&2
    exit 1
}
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$STAGEGATE_OUT/disk.qcow2"
debugfs -R "cat /etc/stagegate/packages.lock" "$work/disk.raw" 2>/dev/null > "$STAGEGATE_OUT/packages.lock"
grep -q '^linux-image' "$STAGEGATE_OUT/packages.lock" || {
    echo "debian-guest: the host image carries no package lock in /etc/stagegate/packages.lock" >&2
    exit 1
}
echo "built debian-guest ${STAGEGATE_IMAGE_DEBIAN_GUEST_VERSION:-} on debian-host ${STAGEGATE_IMAGE_DEBIAN_HOST_VERSION:-}"
