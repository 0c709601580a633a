#!/bin/sh
# Build the guest image from the host image: the host's kernel (a PV guest boots the same
# Debian kernel as dom0) and an initramfs of the host's busybox-static whose init prints
# the guest's marker and powers off. Writes $STAGEGATE_OUT/guest.tar (vmlinuz, initrd.gz,
# marker) and guest.lock (the kernel and busybox packages it holds, from the host's lock).
set -eu
: "${STAGEGATE_OUT:?run by stagegate: STAGEGATE_OUT is the output directory}"
. ./recipes/debian.sh
need qemu-img qemu-utils
need debugfs e2fsprogs
need cpio cpio
parent="${STAGEGATE_IMAGE_XEN_HOST_ARTIFACT:?the guest is based on images/xen-host, whose artifact is missing}"
version=${STAGEGATE_IMAGE_XEN_GUEST_VERSION:?the image version is missing}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
qemu-img convert -f qcow2 -O raw "$parent" "$work/disk.raw"
kernel=$(debugfs -R "ls -p /boot" "$work/disk.raw" 2>/dev/null | awk -F/ '$6 ~ /^vmlinuz-/ { print $6 }' | sort -V | tail -n 1)
[ -n "$kernel" ] || { echo "xen-guest: no kernel in /boot of the host image" >&2; exit 1; }
mkdir -p "$work/out" "$work/initrd/bin" "$work/initrd/proc" "$work/initrd/dev"
debugfs -R "dump /boot/$kernel $work/out/vmlinuz" "$work/disk.raw" 2>/dev/null
debugfs -R "dump /usr/bin/busybox $work/initrd/bin/busybox" "$work/disk.raw" 2>/dev/null
[ -s "$work/initrd/bin/busybox" ] || { echo "xen-guest: the host image has no /usr/bin/busybox (busybox-static)" >&2; exit 1; }
chmod 0755 "$work/initrd/bin/busybox"
debugfs -R "cat /etc/stagegate/packages.lock" "$work/disk.raw" 2>/dev/null |
    grep -E "^(linux-image-${kernel#vmlinuz-}|busybox-static) " > "$STAGEGATE_OUT/guest.lock"
[ "$(wc -l < "$STAGEGATE_OUT/guest.lock")" = 2 ] || { echo "xen-guest: the host's package lock does not name its kernel and busybox-static" >&2; exit 1; }
marker="xen-guest $version is up"
echo "$marker" > "$work/out/marker"
cat > "$work/initrd/init" <<INIT
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "$marker: kernel \$(/bin/busybox uname -r)"
/bin/busybox poweroff -f
INIT
chmod 0755 "$work/initrd/init"
(cd "$work/initrd" && find . | sort | cpio -o -H newc --quiet --reproducible) | gzip -9n > "$work/out/initrd.gz"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/out" \
    -cf "$STAGEGATE_OUT/guest.tar" vmlinuz initrd.gz marker
echo "built xen-guest $version: $kernel and a busybox initramfs ($(wc -c < "$work/out/initrd.gz") bytes) from xen-host ${STAGEGATE_IMAGE_XEN_HOST_VERSION:-}"
