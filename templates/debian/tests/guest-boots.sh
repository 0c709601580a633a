#!/bin/sh
# Boot the guest image under QEMU; inside, report the kernel and the guest preparation,
# and run the component.
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
. ./tests/boot.sh
job_component
cat > "$work/job/run.sh" <<'RUN'
echo "hostname: $(cat /etc/hostname)"
echo "component: $(sh ./hello/hello.sh)"
RUN
boot_image "${STAGEGATE_IMAGE_DEBIAN_GUEST_ARTIFACT:?the guest image has no artifact}" guest-boots
expect_console "stagegate-init: kernel " "stagegate-init: debian-guest" "hostname: debian-guest" "component: hello from the component under test"
echo "guest-boots: ok"
