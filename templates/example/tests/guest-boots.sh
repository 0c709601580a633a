#!/bin/sh
# Inspect the guest image: it must carry the host's files plus its own preparation.
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
. ./tests/lib.sh
raw=$(raw_of "${STAGEGATE_IMAGE_DEBIAN_GUEST_ARTIFACT:?the guest image has no artifact}")
e2fsck -fn "$raw" >/dev/null
debugfs -R "cat /etc/os-release" "$raw" 2>/dev/null | grep -q bookworm
debugfs -R "cat /etc/stagegate-guest" "$raw" 2>/dev/null | grep -q "debian-guest"
run_component
echo "guest-boots: ok"
