#!/bin/sh
# Print the newest version of Xen's hypervisor package the mirror lists (bookworm, its
# updates and its security updates; or STAGEGATE_XEN_MIRROR). `stagegate poll` runs this:
# a version other than components/xen's becomes a candidate.
set -eu
. ./recipes/debian.sh
. ./recipes/xen-packages.sh
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT INT TERM
xen_index "$tmp"
newest=$(xen_newest "$tmp")
[ -n "$newest" ] || { echo "no xen-hypervisor-4.17-amd64 in $(xen_sources | tr '\n' ' ')" >&2; exit 1; }
echo "$newest"
