#!/bin/sh
# Inspect the host image (e2fsck, debugfs) and run the component.
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
. ./tests/lib.sh
raw=$(raw_of "${STAGEGATE_IMAGE_DEBIAN_HOST_ARTIFACT:?the host image has no artifact}")
e2fsck -fn "$raw" >/dev/null
debugfs -R "cat /etc/os-release" "$raw" 2>/dev/null | grep -q bookworm
debugfs -R "cat /etc/stagegate-image" "$raw" 2>/dev/null | grep -q "$STAGEGATE_IMAGE_DEBIAN_HOST_VERSION"
run_component
echo "host-boots: ok"
