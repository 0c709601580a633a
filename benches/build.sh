#!/usr/bin/env bash
# Builds and image use (DESIGN.md §7): a build job whose recipe writes a large artifact,
# against the same recipe run by hand; a test job using that stored image, against the same
# test script run by hand with the image already in place.
#
#   benches/build.sh [--size MIB] [--runs N] [--out DIR] [--no-build | --bin PATH]
#
#   build: `stagegate run --job BUILD` in a fresh copy of a repository whose recipe writes
#          SIZE MiB (`fallocate`, then a few random blocks, so the digest is a real hash
#          of real bytes), hashing, storing and recording included, against `sh build.sh`
#          with `STAGEGATE_OUT` set to an empty directory.
#   test:  `stagegate run --job TEST` (the image stored by a build of its own), against
#          `sh test.sh` with `STAGEGATE_IMAGE_DISK_ARTIFACT` pointing at the same file.
#          The test script reads the first and last MiB of the image, as a boot would.
#
# Commands of a ratio run alternately (stagegate, by hand, ...). Prints min/median/max and
# the median ratio with the target (≤ 1.1×); exits 1 on a miss.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
size=1024
runs=5
out="$root/target/bench/build"
bin=""
build=1
while [ $# -gt 0 ]; do
    case "$1" in
    --size) size=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --bin) bin=$2; build=0; shift 2 ;;
    --small) size=16; runs=1; shift ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ $build = 1 ]; then
    (cd "$root" && cargo build --release --quiet)
fi
bin=${bin:-${CARGO_TARGET_DIR:-$root/target}/release/stagegate}
[ -x "$bin" ] || { echo "build.sh: no binary at $bin" >&2; exit 2; }

mkdir -p "$out"
work=$(mktemp -d "$out/run.XXXXXX")
trap 'rm -rf "$work"' EXIT
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@localhost

# The template repository: a build of images/disk writing SIZE MiB, a test reading it.
tpl="$work/tpl"
git init -q -b staging "$tpl"
mkdir -p "$tpl/images" "$tpl/tests"
cat >"$tpl/build.sh" <<SH
#!/bin/sh
set -e
f="\$STAGEGATE_OUT/disk.img"
fallocate -l ${size}M "\$f" 2>/dev/null || dd if=/dev/zero of="\$f" bs=1M count=$size status=none
for off in 0 $((size / 3)) $((size / 2)) $((size - 1)); do
    dd if=/dev/urandom of="\$f" bs=1M count=1 seek=\$off conv=notrunc status=none
done
SH
cat >"$tpl/test.sh" <<SH
#!/bin/sh
set -e
dd if="\$STAGEGATE_IMAGE_DISK_ARTIFACT" of=/dev/null bs=1M count=1 status=none
dd if="\$STAGEGATE_IMAGE_DISK_ARTIFACT" of=/dev/null bs=1M skip=$((size - 1)) count=1 status=none
SH
chmod +x "$tpl/build.sh" "$tpl/test.sh"
printf 'name: disk\nversion: "1"\nbuild:\n  run: ./build.sh\n  artifact: disk.img\n' >"$tpl/images/disk.yaml"
printf 'name: boots\nuses: [images/disk]\nrun: ./test.sh\n' >"$tpl/tests/boots.yaml"
printf 'version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [build, test]}\n' >"$tpl/stagegate.yaml"
git -C "$tpl" add -A
git -C "$tpl" commit -q -m start
git -C "$tpl" branch stable
sed -i 's/"1"/"2"/' "$tpl/images/disk.yaml"
git -C "$tpl" commit -q -am bump
keys=$("$bin" -C "$tpl" plan --format json | python3 -c '
import json, sys
jobs = json.load(sys.stdin)[0]["jobs"]
print(next(j["key"] for j in jobs if j["kind"] == "build"), next(j["key"] for j in jobs if j["kind"] == "test"))')
read -r build_key test_key <<<"$keys"

fresh() { rm -rf "$work/r"; cp -a "$tpl" "$work/r"; }
secs() { # CMD...: run it, print wall seconds
    local s e
    s=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    e=$(date +%s.%N)
    awk -v s="$s" -v e="$e" 'BEGIN {printf "%.3f", e - s}'
}
by_hand_build() { rm -rf "$work/hand"; mkdir -p "$work/hand"; STAGEGATE_OUT="$work/hand" sh "$tpl/build.sh"; }

declare -a sg_b hand_b sg_t hand_t
for i in $(seq 1 "$runs"); do
    echo "run $i/$runs" >&2
    fresh; sync
    sg_b+=("$(secs "$bin" -C "$work/r" run --job "$build_key")")
    [ -n "$(ls "$work/r/.git/stagegate/artifacts/sha256/")" ] || { echo "build.sh: nothing stored" >&2; exit 1; }
    sync
    hand_b+=("$(secs by_hand_build)")
    # The image stays stored in $work/r from the build above: the test uses it.
    image=$(ls "$work/r/.git/stagegate/artifacts/sha256/"* | head -1)
    sync
    sg_t+=("$(secs "$bin" -C "$work/r" run --job "$test_key")")
    hand_t+=("$(secs env STAGEGATE_IMAGE_DISK_ARTIFACT="$image" sh "$tpl/test.sh")")
    rm -rf "$work/hand"
done

stats() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%s/%s/%s", a[1], m, a[NR]}'; }
median() { stats "$@" | cut -d/ -f2; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
ok() { awk -v r="$1" -v t="$2" 'BEGIN {print (r <= t) ? 1 : 0}'; }
status=0
report() { # name value target ok detail
    printf '%-44s %-8s %-10s %-4s %s\n' "$1" "$2" "$3" "$([ "$4" = 1 ] && echo ok || echo MISS)" "$5"
    [ "$4" = 1 ] || status=1
}
{
    echo "builds and images: ${size} MiB artifact, $runs runs, min/median/max seconds"
    r=$(ratio "$(median "${sg_b[@]}")" "$(median "${hand_b[@]}")")
    report "build job / its recipe by hand" "${r}x" "<= 1.1x" "$(ok "$r" 1.1)" \
        "run $(stats "${sg_b[@]}") s, recipe $(stats "${hand_b[@]}") s"
    r=$(ratio "$(median "${sg_t[@]}")" "$(median "${hand_t[@]}")")
    report "test job with a stored image / by hand" "${r}x" "<= 1.1x" "$(ok "$r" 1.1)" \
        "run $(stats "${sg_t[@]}") s, script $(stats "${hand_t[@]}") s"
} >"$out/last-report.txt"
cat "$out/last-report.txt"
exit $status
