#!/bin/sh
# Boot Xen (the component) on the host image under QEMU; dom0 starts a PV guest from the
# guest image (its kernel and initramfs) with `xl create -c`: the guest prints its marker
# on its console and powers off, and `xl create` exits 0.
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
. ./tests/xen-boot.sh
dom0_job
mkdir -p "$work/job/guest"
tar -xf "${STAGEGATE_IMAGE_XEN_GUEST_ARTIFACT:?the guest image has no artifact}" -C "$work/job/guest"
marker=$(cat "$work/job/guest/marker")
cat > "$work/job/guest.cfg" <<CFG
name = "guest"
type = "pv"
kernel = "/run/job/guest/vmlinuz"
ramdisk = "/run/job/guest/initrd.gz"
extra = "console=hvc0 quiet"
memory = 128
vcpus = 1
on_poweroff = "destroy"
on_crash = "destroy"
CFG
cat >> "$work/job/run.sh" <<'RUN'
# A PV guest, its console on ours; `xl create -c` returns when the guest is gone. (No
# pipefail in sh: xl's status is kept through the pipe in a file.)
{ xl create -c ./guest.cfg 2>&1; echo "xl: create exit $?" > /tmp/xl.status; } | sed 's/^/guest: /'
cat /tmp/xl.status
RUN
boot_xen guest-starts "xl: list: Domain-0 " "guest: $marker" "xl: create exit 0"
echo "guest-starts: ok"
