#!/bin/sh
# Boot the host image under QEMU; inside, report the kernel and run the component.
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
. ./tests/boot.sh
job_component
cat > "$work/job/run.sh" <<'RUN'
echo "component: $(sh ./hello/hello.sh)"
RUN
boot_image "${STAGEGATE_IMAGE_DEBIAN_HOST_ARTIFACT:?the host image has no artifact}" host-boots
expect_console "stagegate-init: kernel " "debian-host $STAGEGATE_IMAGE_DEBIAN_HOST_VERSION" "component: hello from the component under test"
echo "host-boots: ok"
