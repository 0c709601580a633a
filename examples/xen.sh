#!/usr/bin/env bash
# The Xen example end to end: Debian's Xen packages tested on a Debian host image, booted
# under QEMU (KVM where it works, else TCG), a guest started from dom0:
#
#   1. init      `stagegate init --example xen`: images/xen-host (mmdebstrap minbase, the
#                dom0 kernel; its .deb lock and package cache kept with the build),
#                images/xen-guest (a PV guest made from it), components/xen (built: the
#                exact Debian package set of the hypervisor and tools at its version,
#                sha256-locked), and the tests xen-boots and guest-starts;
#   2. mirror    a local file:// mirror that lists the Xen of the Debian release (bookworm's
#                own) — STAGEGATE_XEN_MIRROR points the component's watch and build at it;
#   3. cycle     builds host, guest and Xen, boots Xen on the host (dom0 up, `xl info`,
#                `xl list`), starts the guest from dom0, promotes new -> staging -> stable;
#   4. new Xen   the mirror gains Xen's security update (Debian's real bookworm-security
#                packages): poll makes it a candidate, it is built, tested on the stable
#                host image and promoted;
#   5. broken    a Xen command line that starves dom0 (dom0_mem=64M) and, beside it, an
#                unrelated host-image bump (a rebuild from the stored package cache): the
#                host moves to stable, the broken Xen is rejected with the console's end in
#                `stagegate why`;
#   6. log       the audit trail shows both.
#
# Needs root (mmdebstrap's root mode), mmdebstrap, apt-utils, qemu-system-x86, qemu-utils,
# e2fsprogs, cpio, curl and git, and the Debian mirror this machine's apt uses. What this
# machine downloaded is kept in ~/.cache/stagegate/debian (STAGEGATE_DEB_CACHE moves it),
# shared with the Debian example. STAGEGATE_DEBIAN_KVM=off skips trying KVM.
#
# Usage: examples/xen.sh [DIR]   (default: a new temporary directory)
#        STAGEGATE_BIN=path/to/stagegate examples/xen.sh   (use that binary, build nothing)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="/usr/sbin:/sbin:$PATH"

for tool in mmdebstrap apt-ftparchive qemu-system-x86_64 qemu-img mke2fs debugfs cpio curl git; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "xen example: $tool is missing; install it (Debian: apt-get install mmdebstrap apt-utils qemu-system-x86 qemu-utils e2fsprogs cpio curl git, in one command)" >&2
        exit 2
    }
done
[ "$(id -u)" = 0 ] || { echo "xen example: run it as root (mmdebstrap builds the root file system in root mode)" >&2; exit 2; }

if [ -n "${STAGEGATE_BIN:-}" ]; then
    sg=$STAGEGATE_BIN
else
    echo "== building stagegate"
    cargo build --release --quiet --manifest-path "$here/Cargo.toml"
    sg="${CARGO_TARGET_DIR:-$here/target}/release/stagegate"
fi
PATH="$(cd "$(dirname "$sg")" && pwd):$PATH"

work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/stagegate-xen.XXXXXX")}
repo="$work/state"
mirror="$work/mirror"
git config user.name >/dev/null 2>&1 || export GIT_AUTHOR_NAME="stagegate demo" GIT_COMMITTER_NAME="stagegate demo"
git config user.email >/dev/null 2>&1 || export GIT_AUTHOR_EMAIL="demo@stagegate.invalid" GIT_COMMITTER_EMAIL="demo@stagegate.invalid"

step() { printf '\n== %s\n' "$*"; }
timed() {
    local start=$SECONDS
    "$@"
    echo "-- $((SECONDS - start)) s"
}

step "stagegate init --example xen $repo"
"$sg" init --example xen "$repo"

# The local mirror: Xen's packages at a version, copied from the machine's Debian mirror
# (the download cache first) into pool/, indexed by apt-ftparchive.
real() (
    unset STAGEGATE_XEN_MIRROR
    cd "$repo"
    . ./recipes/debian.sh
    . ./recipes/xen-packages.sh
    "$@"
)
index="$work/xen-index"
real xen_index "$index"
xen_of() { awk -v suite="$1" 'BEGIN { RS = "" } index($0, "Filename: pool/" suite) { print }' "$index"; }
# bookworm's own Xen (pool/main) and its security update (pool/updates/main), as Debian has them now.
old=$(real xen_newest <(xen_of main))
new=$(real xen_newest <(xen_of updates))
[ -n "$old" ] && [ -n "$new" ] && [ "$old" != "$new" ] || {
    echo "xen example: the Debian mirror has no Xen security update over bookworm's own ($old / $new) to show as a new version" >&2
    exit 1
}
mirror_add() {
    local v=$1 p file sum repo_url deb cache
    mkdir -p "$mirror/pool" "$mirror/dists/bookworm/main/binary-amd64"
    cache="$(real deb_cache)/debs"
    mkdir -p "$cache"
    for p in $(real sh -c '. ./recipes/xen-packages.sh; echo $XEN_PACKAGES'); do
        file=$(real xen_field "$index" "$p" "$v" Filename)
        sum=$(real xen_field "$index" "$p" "$v" SHA256)
        repo_url=$(real xen_field "$index" "$p" "$v" Repository)
        deb=${file##*/}
        if ! { [ -f "$cache/$deb" ] && echo "$sum  $cache/$deb" | sha256sum -c --quiet - 2>/dev/null; }; then
            curl -fsSL --retry 2 -o "$cache/$deb" "$repo_url/$file"
        fi
        cp "$cache/$deb" "$mirror/pool/$deb"
    done
    (cd "$mirror" && apt-ftparchive packages pool > dists/bookworm/main/binary-amd64/Packages 2>/dev/null)
}
export STAGEGATE_XEN_MIRROR="file://$mirror"

step "a local mirror with bookworm's Xen $old: STAGEGATE_XEN_MIRROR=$STAGEGATE_XEN_MIRROR"
mirror_add "$old"
grep -c '^Package:' "$mirror/dists/bookworm/main/binary-amd64/Packages"

step "stagegate cycle   (poll; build host, guest and Xen; boot Xen, start the guest; promote to stable)"
timed "$sg" -C "$repo" cycle -j 2
git -C "$repo" show stable:.stagegate/built/components/xen.yaml | sed -n '/^lock:/,$p'

step "the mirror gains Xen $new (Debian's security update)"
mirror_add "$new"

step "stagegate cycle   (poll: the new Xen is a candidate; built, tested on the stable host, promoted)"
timed "$sg" -C "$repo" cycle -j 2
"$sg" -C "$repo" log -n 3 components/xen

step "a broken Xen (its command line starves dom0) and an unrelated host-image bump, together"
git -C "$repo" checkout -q new
sed -i 's/dom0_mem=[^ ]*/dom0_mem=64M,max:64M/' "$repo/recipes/xen.cmdline"
git -C "$repo" commit -qam "xen: give dom0 64M"
sed -i -e 's|^version: .*|version: "12.15-2"|' \
    -e 's|run: ./recipes/debian-host.sh$|run: ./recipes/debian-host.sh --offline|' "$repo/images/xen-host.yaml"
git -C "$repo" commit -qam "xen-host: rebuild from the last-known-good package cache"
timed "$sg" -C "$repo" cycle -j 2 --no-poll || true
"$sg" -C "$repo" status || true
"$sg" -C "$repo" why components/xen || true

step "stagegate log   (the audit trail)"
"$sg" -C "$repo" log
