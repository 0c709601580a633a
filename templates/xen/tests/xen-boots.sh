#!/bin/sh
# Boot Xen (the component) on the host image under QEMU: the banner names the component's
# version, dom0 comes up, installs Xen's tools, starts xenstored and xenconsoled, and
# `xl info` and `xl list` show the hypervisor and Domain-0.
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
. ./tests/xen-boot.sh
dom0_job
boot_xen xen-boots "xen-test: installed /usr/lib/xen-" "xl: info: xen_version " "xl: list: Domain-0 "
echo "xen-boots: ok"
