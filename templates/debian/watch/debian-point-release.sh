#!/bin/sh
# Print the newest Debian point release of the suite the images are built from, read from
# the mirror's Release file (its `Version:` field, e.g. 12.12). `stagegate poll` runs this:
# a newer point release than images/debian-host's `based-on` version becomes a candidate.
set -eu
. ./recipes/debian.sh
mirror=$(debian_mirror "$SUITE")
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT INT TERM
fetch "$mirror/dists/$SUITE/Release" "$tmp" || {
    echo "cannot read $mirror/dists/$SUITE/Release" >&2
    exit 1
}
version=$(release_version "$tmp")
[ -n "$version" ] || {
    echo "$mirror/dists/$SUITE/Release has no Version: field" >&2
    exit 1
}
echo "$version"
