#!/bin/sh
# Build the Xen component: fetch the exact Debian package set of the hypervisor and its
# tools at the component's version (recipes/xen-packages.sh: XEN_PACKAGES) from the
# mirror's package index, each .deb checked against the index's sha256. Writes into
# $STAGEGATE_OUT:
#   xen.lock   the set: NAME VERSION ARCH SHA256-OF-THE-DEB, one a line (as an image's)
#   xen.tar    the artifact: xen.lock, debs/ (every .deb of the set) and xen.cmdline (the
#              hypervisor's command line the boot tests give it: part of the component)
# A version the mirror no longer lists cannot be built here, which is not the version's
# fault: exit 125, "could not test" (poll proposes the version the mirror has).
set -eu
: "${STAGEGATE_OUT:?run by stagegate: STAGEGATE_OUT is the output directory}"
. ./recipes/debian.sh
. ./recipes/xen-packages.sh
need tar tar
need dpkg dpkg
need xz xz-utils
version=${STAGEGATE_VERSION:-${STAGEGATE_COMPONENT_XEN_VERSION:?the component version is missing}}
downloads="$(deb_cache)/debs"
mkdir -p "$downloads"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
xen_index "$work/index" || cannot_run "xen $version: cannot read the package index ($(xen_sources | tr '\n' ' '))"
mkdir -p "$work/out/debs"
echo "# xen $version: the Debian packages of the hypervisor and its tools" > "$work/lock"
echo "# NAME VERSION ARCH SHA256-OF-THE-DEB" >> "$work/lock"
for p in $XEN_PACKAGES; do
    sum=$(xen_field "$work/index" "$p" "$version" SHA256)
    file=$(xen_field "$work/index" "$p" "$version" Filename)
    repo=$(xen_field "$work/index" "$p" "$version" Repository)
    arch=$(xen_field "$work/index" "$p" "$version" Architecture)
    [ -n "$sum" ] && [ -n "$file" ] ||
        cannot_run "xen $version: $p $version is not in the package index of $(xen_sources | tr '\n' ' ')(the newest there: $(xen_newest "$work/index")); poll proposes what the mirror has"
    deb=${file##*/}
    if [ -f "$downloads/$deb" ] && echo "$sum  $downloads/$deb" | sha256sum -c --quiet - 2>/dev/null; then
        cp "$downloads/$deb" "$work/out/debs/$deb"
    else
        fetch "$repo/$file" "$work/out/debs/$deb" || cannot_run "xen $version: cannot download $repo/$file"
        echo "$sum  $work/out/debs/$deb" | sha256sum -c --quiet - || {
            echo "xen $version: $repo/$file does not match the sha256 of the package index" >&2
            exit 1
        }
        cp "$work/out/debs/$deb" "$downloads/$deb.tmp.$$" && mv -f "$downloads/$deb.tmp.$$" "$downloads/$deb"
    fi
    echo "$p $version $arch $sum" >> "$work/lock"
done
cp "$work/lock" "$work/out/xen.lock"
cp recipes/xen.cmdline "$work/out/xen.cmdline"
cp "$work/lock" "$STAGEGATE_OUT/xen.lock"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=a+rX,u+w,go-w \
    -C "$work/out" -cf "$STAGEGATE_OUT/xen.tar" xen.lock xen.cmdline debs
echo "built xen $version: $(grep -vc '^#' "$work/lock") packages, hypervisor command line: $(cat recipes/xen.cmdline)"
