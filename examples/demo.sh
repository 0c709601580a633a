#!/usr/bin/env bash
# Build stagegate and run the bundled example pipeline end to end, on real disk images:
#
#   1. init      a state repository with two images (a host built with mke2fs -d and
#                qemu-img, a guest derived from it), a component in its own local git
#                repository, and two tests that inspect the images with e2fsck/debugfs;
#   2. cycle     builds the images on new -> staging (artifacts stored by sha256, package
#                locks recorded), tests them on staging -> stable, promotes both moves;
#   3. upstream  the component gets a new commit on its tracked branch;
#   4. cycle     poll bumps the component, it is tested against the stable images,
#                promoted, and its own repository's master is fast-forwarded (push gate);
#   5. log       the audit trail, from git history alone.
#
# Usage: examples/demo.sh [DIR]   (default: a new temporary directory)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

for tool in mke2fs debugfs e2fsck qemu-img git; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "demo: $tool is missing; install it (Debian: apt-get install e2fsprogs qemu-utils git)" >&2
        exit 2
    }
done
export PATH="/usr/sbin:/sbin:$PATH"

target=${CARGO_TARGET_DIR:-$here/target}
if [ -x "$target/release/stagegate" ]; then
    echo "== building stagegate (incremental)"
else
    echo "== building stagegate (a first build compiles ~400 crates: several minutes on 2 cores)"
fi
cargo build --release --manifest-path "$here/Cargo.toml"
sg="$target/release/stagegate"

work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/stagegate-demo.XXXXXX")}
repo="$work/state"
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

step "upstream: a new commit on the component's tracked branch (main)"
git clone -q "$repo/upstream/hello.git" "$work/hello"
printf 'echo "hello, now with a second line"\n' >> "$work/hello/hello.sh"
git -C "$work/hello" commit -q -am "hello: say more"
git -C "$work/hello" push -q origin HEAD:main
git -C "$work/hello" log --oneline -1

step "stagegate cycle   (poll bumps the component; tested against the stable images; promoted)"
"$sg" -C "$repo" cycle -j 2

step "the component's own master, advanced by the push gate"
git -C "$repo/upstream/hello.git" log --oneline master

step "git log --first-parent stable"
git -C "$repo" log --first-parent --format='%h %s%n%(trailers:key=Stagegate-Decision,key=Stagegate-Tested,key=Stagegate-Results,key=Stagegate-Built,key=Stagegate-Pushed)' stable

step "stagegate log   (the audit trail)"
"$sg" -C "$repo" log
