#!/usr/bin/env bash
# The shared store (DESIGN.md §7): push and pull a large artifact through an OCI registry
# with stagegate, against curl doing the same to the same registry, and stagegate's peak RSS.
#
#   benches/store.sh [--size MIB] [--runs N] [--out DIR] [--no-build | --bin PATH]
#
# The registry is Debian's docker-registry (the CNCF distribution registry) on 127.0.0.1,
# storing on disk in DIR; each measurement gets a fresh registry, so nothing is ever "already
# there". Commands of a ratio run alternately (stagegate, curl, stagegate, curl, ...).
#
#   push: `stagegate store put FILE` (hashes the file while copying it into the local
#         cache, then streams it up in one PUT, and tags a manifest for it), against
#         curl's POST + `PUT --upload-file` of the same blob with its digest known.
#   pull: `stagegate store get DIGEST` with an empty cache (streams it into the cache,
#         verifying the digest as it arrives), against `curl -o` of the blob.
#
# Prints medians and ratios with the targets (≤ 1.5× curl, < 200 MiB); exits 1 on a miss.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
size=1024
runs=3
out="$root/target/bench/store"
bin=""
build=1
while [ $# -gt 0 ]; do
    case "$1" in
    --size) size=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --bin) bin=$2; build=0; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "store.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

command -v docker-registry >/dev/null || {
    echo "store.sh: docker-registry is not installed (apt-get install docker-registry)" >&2
    exit 2
}
if [ $build = 1 ]; then
    (cd "$root" && cargo build --release --quiet)
fi
bin=${bin:-${CARGO_TARGET_DIR:-$root/target}/release/stagegate}
[ -x "$bin" ] || { echo "store.sh: no binary at $bin" >&2; exit 2; }

mkdir -p "$out"
work=$(mktemp -d "$out/run.XXXXXX")
registry_pid=""
cleanup() {
    [ -z "$registry_pid" ] || kill "$registry_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A fresh registry on a port of the kernel's choosing; sets $addr.
start_registry() {
    [ -z "$registry_pid" ] || { kill "$registry_pid"; wait "$registry_pid" 2>/dev/null || true; }
    rm -rf "$work/registry"
    mkdir -p "$work/registry"
    cat >"$work/registry/config.yml" <<EOF
version: 0.1
log: {level: info}
storage:
  filesystem: {rootdirectory: $work/registry/data}
http: {addr: "127.0.0.1:0", secret: bench}
EOF
    : >"$work/registry/log"
    docker-registry serve "$work/registry/config.yml" >/dev/null 2>>"$work/registry/log" &
    registry_pid=$!
    addr=""
    for _ in $(seq 1 200); do
        addr=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$work/registry/log" | head -1)
        [ -n "$addr" ] && return 0
        sleep 0.05
    done
    echo "store.sh: the registry did not start:" >&2
    cat "$work/registry/log" >&2
    exit 2
}

# The state repository the stagegate commands run in; its store is set per measurement.
state="$work/state"
git init -q -b main "$state"
set_store() {
    printf 'version: 1\nstages: [a, b]\nartifacts: {store: "oci://%s/bench/store"}\n' "$1" \
        >"$state/stagegate.yaml"
    git -C "$state" add stagegate.yaml
    git -C "$state" -c user.name=bench -c user.email=bench@localhost commit -q -m store
    rm -rf "$state/.git/stagegate/artifacts"
}

file="$work/artifact.bin"
echo "writing a ${size} MiB artifact..." >&2
head -c "$((size * 1024 * 1024))" /dev/urandom >"$file"
digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
sync

# time_of CMD...: run it, print "SECONDS PEAK_KIB".
time_of() {
    /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null
    cat "$work/time"
}

curl_push() {
    local loc
    loc=$(curl -sS -f -X POST -D - -o /dev/null "http://$addr/v2/bench/curl/blobs/uploads/" |
        tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    case "$loc" in http*) ;; *) loc="http://$addr$loc" ;; esac
    case "$loc" in *\?*) loc="$loc&digest=$digest" ;; *) loc="$loc?digest=$digest" ;; esac
    curl -sS -f -X PUT -H 'Content-Type: application/octet-stream' --upload-file "$file" "$loc"
}
curl_pull() {
    curl -sS -f -L -o "$work/pulled.bin" "http://$addr/v2/bench/curl/blobs/$digest"
}
export -f curl_push curl_pull
export file digest work

declare -a sg_push sg_pull curl_up curl_down rss
for i in $(seq 1 "$runs"); do
    echo "run $i/$runs" >&2
    start_registry
    set_store "$addr"
    sync
    read -r t m < <(time_of "$bin" -C "$state" store put "$file")
    sg_push+=("$t"); rss+=("$m")
    rm -rf "$state/.git/stagegate/artifacts"
    sync
    read -r t m < <(time_of "$bin" -C "$state" store get "$digest")
    sg_pull+=("$t"); rss+=("$m")
    cmp -s "$file" "$state/.git/stagegate/artifacts/sha256/${digest#sha256:}" ||
        { echo "store.sh: stagegate pulled something else" >&2; exit 1; }
    sync
    export addr
    read -r t _ < <(time_of bash -c curl_push)
    curl_up+=("$t")
    sync
    read -r t _ < <(time_of bash -c curl_pull)
    curl_down+=("$t")
    rm -f "$work/pulled.bin"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
max() { printf '%s\n' "$@" | sort -g | tail -1; }

p_sg=$(median "${sg_push[@]}"); p_curl=$(median "${curl_up[@]}")
g_sg=$(median "${sg_pull[@]}"); g_curl=$(median "${curl_down[@]}")
peak=$(max "${rss[@]}")
status=0
report() { # name value target ok
    printf '%-44s %-22s %s\n' "$1" "$2" "$3$([ "$4" = 1 ] || echo '  MISS')"
    [ "$4" = 1 ] || status=1
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
ok() { awk -v r="$1" -v t="$2" 'BEGIN {print (r <= t) ? 1 : 0}'; }
{
    echo "store: ${size} MiB artifact, $runs runs, docker-registry on 127.0.0.1"
    r=$(ratio "$p_sg" "$p_curl")
    report "push: stagegate ${p_sg}s / curl ${p_curl}s" "${r}×" "target ≤ 1.5×" "$(ok "$r" 1.5)"
    r=$(ratio "$g_sg" "$g_curl")
    report "pull: stagegate ${g_sg}s / curl ${g_curl}s" "${r}×" "target ≤ 1.5×" "$(ok "$r" 1.5)"
    mib=$((peak / 1024))
    report "peak RSS of store put/get" "${mib} MiB" "target < 200 MiB" "$([ "$mib" -lt 200 ] && echo 1 || echo 0)"
} >"$out/last-report.txt"
cat "$out/last-report.txt"
exit $status
