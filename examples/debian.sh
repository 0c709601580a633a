#!/usr/bin/env bash
# The Debian example end to end, on real packages and a real kernel:
#
#   1. init      `stagegate init --example debian`: a host image built with mmdebstrap
#                from the mirror this machine's apt uses, a guest derived from it, a
#                component in its own local repository, and two tests that boot the
#                images under QEMU and run the component inside;
#   2. cycle     builds the host (its lock: every package with the sha256 of its .deb;
#                the .debs stored beside the image as its last-known-good package cache)
#                and the guest, boots both, promotes new -> staging -> stable;
#   3. offline   rebuilds the host with --offline: only the package cache staging holds
#                is used, and the package set is the same (`stagegate why` says so);
#   4. packages  adds a package to the host; `stagegate why` and `stagegate diff` list
#                the packages the rebuild added, removed and upgraded;
#   5. log       the audit trail.
#
# Needs root (mmdebstrap's root mode), mmdebstrap, apt-utils, qemu-system-x86,
# qemu-utils, e2fsprogs and git, and the Debian mirror for the first build. What this
# machine downloaded is kept in ~/.cache/stagegate/debian (STAGEGATE_DEB_CACHE moves it).
# The boots use KVM only where it works (a KVM that aborts or hangs, as nested KVM can,
# costs a few seconds and the boot runs under TCG); STAGEGATE_DEBIAN_KVM=off skips it,
# =try tries it even without a usable /dev/kvm (templates/debian/tests/boot.sh).
#
# Usage: examples/debian.sh [DIR]   (default: a new temporary directory)
#        STAGEGATE_BIN=path/to/stagegate examples/debian.sh   (use that binary, build nothing)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="/usr/sbin:/sbin:$PATH"

for tool in mmdebstrap apt-ftparchive qemu-system-x86_64 qemu-img mke2fs debugfs e2fsck git; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "debian example: $tool is missing; install it (Debian: apt-get install mmdebstrap apt-utils qemu-system-x86 qemu-utils e2fsprogs git, in one command)" >&2
        exit 2
    }
done
[ "$(id -u)" = 0 ] || { echo "debian example: run it as root (mmdebstrap builds the root file system in root mode)" >&2; exit 2; }

if [ -n "${STAGEGATE_BIN:-}" ]; then
    sg=$STAGEGATE_BIN
else
    echo "== building stagegate"
    cargo build --release --quiet --manifest-path "$here/Cargo.toml"
    sg="${CARGO_TARGET_DIR:-$here/target}/release/stagegate"
fi
# The state repository's pre-commit hook checks manifests with stagegate from PATH.
PATH="$(cd "$(dirname "$sg")" && pwd):$PATH"

work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/stagegate-debian.XXXXXX")}
repo="$work/state"
git config user.name >/dev/null 2>&1 || export GIT_AUTHOR_NAME="stagegate demo" GIT_COMMITTER_NAME="stagegate demo"
git config user.email >/dev/null 2>&1 || export GIT_AUTHOR_EMAIL="demo@stagegate.invalid" GIT_COMMITTER_EMAIL="demo@stagegate.invalid"

step() { printf '\n== %s\n' "$*"; }
timed() {
    local start=$SECONDS
    "$@"
    echo "-- $((SECONDS - start)) s"
}

step "stagegate init --example debian $repo"
"$sg" init --example debian "$repo"

step "stagegate status"
"$sg" -C "$repo" status

step "stagegate cycle   (poll the mirror; build host and guest; boot both; promote to stable)"
timed "$sg" -C "$repo" cycle -j 2

step "the host's lock on stable: every package and the sha256 of its .deb"
git -C "$repo" show stable:.stagegate/built/images/debian-host.yaml | sed -n '1,/^lock:/p'
git -C "$repo" show stable:.stagegate/built/images/debian-host.yaml | grep -E '^  (linux-image-[0-9][^ ]*|libc6|base-files) ' || true

step "rebuild the host --offline: the package cache only, no mirror"
git -C "$repo" checkout -q new
sed -i -e 's|^version: .*|version: "12.15-1+offline"|' \
    -e 's|run: ./recipes/debian-host.sh$|run: ./recipes/debian-host.sh --offline|' "$repo/images/debian-host.yaml"
git -C "$repo" commit -qam "debian-host: rebuild from the last-known-good package cache"
timed "$sg" -C "$repo" run -j 2
"$sg" -C "$repo" why images/debian-host

step "stagegate cycle   (the rebuilt host boots with the stable component and guest; promoted)"
timed "$sg" -C "$repo" cycle -j 2 --no-poll

step "a package more on the host: why and diff list the package changes"
echo strace >> "$repo/recipes/debian-host.packages"
sed -i -e 's|^version: .*|version: "12.15-2"|' \
    -e 's|run: ./recipes/debian-host.sh --offline$|run: ./recipes/debian-host.sh|' "$repo/images/debian-host.yaml"
git -C "$repo" commit -qam "debian-host: add strace"
stable_before=$(git -C "$repo" rev-parse stable)
timed "$sg" -C "$repo" cycle -j 2 --no-poll
"$sg" -C "$repo" diff "$stable_before" stable

step "stagegate log   (the audit trail)"
"$sg" -C "$repo" log
