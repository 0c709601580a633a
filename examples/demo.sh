#!/usr/bin/env bash
# Build stagegate and run the bundled example pipeline end to end, on real disk images:
#
#   1. init      a state repository with two images (a host built with mke2fs -d and
#                qemu-img, a guest derived from it), a component whose history lives on the
#                repository's own branches hello/main and hello/master, and two tests that
#                inspect the images with e2fsck/debugfs;
#   2. cycle     builds the images on new -> staging (artifacts stored by sha256, package
#                locks recorded), tests them on staging -> stable, promotes both moves;
#   3. upstream  someone pushes a new commit to hello/main, the branch the component tracks;
#   4. cycle     poll bumps the component, it is tested against the stable images,
#                promoted, and hello/master is fast-forwarded to the tested commit (push gate);
#   5. log       the audit trail, from git history alone.
#
# Usage: examples/demo.sh [DIR]   (default: a new temporary directory)
#
# STAGEGATE_BIN=PATH runs that stagegate instead of building one with cargo (the test
# suite runs this script with the binary it has just built).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

# Debian keeps mke2fs and e2fsck in /usr/sbin, off an ordinary user's PATH.
export PATH="/usr/sbin:/sbin:$PATH"
for tool in mke2fs debugfs e2fsck qemu-img git; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "demo: $tool is missing; install it (Debian: apt-get install e2fsprogs qemu-utils git)" >&2
        exit 2
    }
done

if [ -n "${STAGEGATE_BIN:-}" ]; then
    sg=$STAGEGATE_BIN
    [ -x "$sg" ] || {
        echo "demo: STAGEGATE_BIN=$sg is not an executable; unset it to build stagegate with cargo" >&2
        exit 2
    }
    echo "== using $sg (STAGEGATE_BIN)"
else
    command -v cargo >/dev/null 2>&1 || {
        echo "demo: cargo is missing; install Rust (https://rustup.rs), or set STAGEGATE_BIN to a stagegate binary" >&2
        exit 2
    }
    target=${CARGO_TARGET_DIR:-$here/target}
    if [ -x "$target/release/stagegate" ]; then
        echo "== building stagegate (incremental)"
    else
        echo "== building stagegate (a first build compiles ~400 crates: several minutes on 2 cores)"
    fi
    cargo build --release --manifest-path "$here/Cargo.toml"
    sg="$target/release/stagegate"
    [ -x "$sg" ] || {
        echo "demo: cargo finished but $sg is not there; if cargo is configured to build elsewhere, set CARGO_TARGET_DIR to that directory" >&2
        exit 2
    }
fi

work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/stagegate-demo.XXXXXX")}
repo="$work/state"
echo "== working in $work"
# Commits need an identity; use the demo's own where none is configured.
git config user.name >/dev/null 2>&1 || export GIT_AUTHOR_NAME="stagegate demo" GIT_COMMITTER_NAME="stagegate demo"
git config user.email >/dev/null 2>&1 || export GIT_AUTHOR_EMAIL="demo@stagegate.invalid" GIT_COMMITTER_EMAIL="demo@stagegate.invalid"

step() { printf '\n== %s\n' "$*"; }

step "stagegate init $repo --example"
"$sg" init "$repo" --example

step "stagegate status"
"$sg" -C "$repo" status

step "stagegate cycle   (build the images, test them, promote new -> staging -> stable)"
"$sg" -C "$repo" cycle -j 2

# The component's upstream is the state repository itself (its manifest says `git: .`):
# a developer clones the tracked branch and pushes a commit to it.
step "upstream: a new commit on hello/main, the branch the component tracks"
git clone -q -b hello/main "$repo" "$work/hello"
printf 'echo "hello, now with a second line"\n' >> "$work/hello/hello.sh"
git -C "$work/hello" commit -q -am "hello: say more"
git -C "$work/hello" push -q origin HEAD:hello/main
git -C "$work/hello" log --oneline -1

step "stagegate cycle   (poll bumps the component; tested against the stable images; promoted)"
"$sg" -C "$repo" cycle -j 2

step "hello/master, fast-forwarded by the push gate to the tested commit"
git -C "$repo" log --oneline hello/master

step "git log --first-parent stable"
git -C "$repo" log --first-parent --format='%h %s%n%(trailers:key=Stagegate-Decision,key=Stagegate-Tested,key=Stagegate-Results,key=Stagegate-Built,key=Stagegate-Pushed)' stable

step "stagegate log   (the audit trail)"
"$sg" -C "$repo" log
