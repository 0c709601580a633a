#!/bin/sh
# Build the host image: a root filesystem laid out in a directory, made into ext4 with
# `mke2fs -d`, converted to qcow2. Writes $STAGEGATE_OUT/disk.qcow2 and packages.lock.
set -eu
: "${STAGEGATE_OUT:?run by stagegate: STAGEGATE_OUT is the output directory}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
root="$work/root"
mkdir -p "$root/etc" "$root/usr/bin" "$root/var/lib/stagegate" "$root/boot"
cat > "$root/etc/os-release" <<OS
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION_CODENAME=bookworm
OS
echo "debian-host ${STAGEGATE_IMAGE_DEBIAN_HOST_VERSION:-unknown}" > "$root/etc/stagegate-image"
cp recipes/host-packages.txt "$root/var/lib/stagegate/packages"
echo "stand-in for a kernel" > "$root/boot/vmlinuz"
mke2fs -q -F -t ext4 -L debian-host -d "$root" "$work/disk.raw" 16M
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$STAGEGATE_OUT/disk.qcow2"
cp recipes/host-packages.txt "$STAGEGATE_OUT/packages.lock"
echo "built debian-host ${STAGEGATE_IMAGE_DEBIAN_HOST_VERSION:-} ($(wc -l < recipes/host-packages.txt) packages)"
