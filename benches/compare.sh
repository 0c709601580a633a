#!/usr/bin/env bash
# Two stagegate binaries on the commands of benches/run.sh, alternating run by run, so that a
# change can be shown to cost nothing: each command of the one, then of the other, N times,
# on the repositories run.sh generates (`run.sh --generate-only`, called first: it makes
# those missing and reuses the rest). Prints, per command, the median
# and min-max wall time of each binary, the ratio of the medians and the peak RSS of each.
#
#   benches/compare.sh --before PATH --after PATH [--small] [--out DIR] [--runs N] [--tolerance P]
#                      [--instructions]
#
# A command whose `after` median is more than P percent (default 5) above its `before`
# median is marked `worse`, and the script then exits 1.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

usage() {
    cat <<'EOF'
usage: benches/compare.sh --before PATH --after PATH [--small] [--out DIR] [--runs N]
                          [--tolerance P] [--instructions]

  --before PATH   the stagegate binary to compare against
  --after PATH    the stagegate binary to measure
  --small         the repositories of `benches/run.sh --small`
  --out DIR       where run.sh generated them (default: target/bench)
  --runs N        timed runs of each command and binary (default 5; at least 5), after one
                  untimed warm-up run of each
  --tolerance P   percent by which `after` may exceed `before` (default 5)
  --instructions  count the instructions each binary executes (valgrind's callgrind, one
                  run each; the jobs a `run` starts are not counted) instead of timing:
                  the same on a busy machine as on a quiet one
EOF
}

before="" after="" small=0 out="" runs=5 tolerance=5 instructions=0
while [ $# -gt 0 ]; do
    case $1 in
    --before) before=${2:?--before needs a path}; shift ;;
    --before=*) before=${1#--before=} ;;
    --after) after=${2:?--after needs a path}; shift ;;
    --after=*) after=${1#--after=} ;;
    --small) small=1 ;;
    --instructions) instructions=1 ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    --out=*) out=${1#--out=} ;;
    --runs) runs=${2:?--runs needs a number}; shift ;;
    --runs=*) runs=${1#--runs=} ;;
    --tolerance) tolerance=${2:?--tolerance needs a number}; shift ;;
    --tolerance=*) tolerance=${1#--tolerance=} ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for b in "$before" "$after"; do
    if [ -z "$b" ] || ! [ -x "$b" ]; then
        echo "compare.sh: --before and --after must name executable stagegate binaries (got '${b}')" >&2
        usage >&2
        exit 2
    fi
done
[ "$runs" -ge 5 ] || { echo "compare.sh: --runs must be at least 5" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "compare.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
if [ "$instructions" = 1 ] && ! command -v valgrind >/dev/null; then
    echo "compare.sh: --instructions needs valgrind (apt-get install valgrind)" >&2
    exit 2
fi
before=$(cd "$(dirname "$before")" && pwd)/$(basename "$before")
after=$(cd "$(dirname "$after")" && pwd)/$(basename "$after")

# The repositories, named as run.sh names them.
seed=1
if [ "$small" = 1 ]; then
    items=200 tests=20 commits=500 results=2000 short_commits=50 jobs=100
    many_items=5000 many_commits=50 many_results=200 pending=30
else
    items=10000 tests=500 commits=50000 results=1000000 short_commits=5000 jobs=1000
    many_items=50000 many_commits=500 many_results=1000 pending=300
fi
out=${out:-$root/target/bench}
gen_hash=$(sha256sum "$here/gen.py" | cut -c1-10)
derive_hash=$(cat "$here/gen.py" "$here/derive.py" | sha256sum | cut -c1-10)
state_name=state-i$items-t$tests-c$commits-r$results-s$seed-$gen_hash
state=$out/$state_name
short=$out/state-i$items-t$tests-c$short_commits-r$results-s$seed-$gen_hash
runner=$out/runner-j$jobs-s$seed-$gen_hash
many=$out/state-i$many_items-t$tests-c$many_commits-r$many_results-s$seed-$gen_hash
pending_dir=$out/$state_name-p$pending-$derive_hash
# run.sh makes those missing (minutes at the full sizes, the first time) and reuses the rest.
gen_args=(--generate-only --bin "$after" --out "$out")
[ "$small" = 1 ] && gen_args+=(--small)
"$here/run.sh" "${gen_args[@]}"
attempts=$(compgen -G "$out/$state_name-a8-*-$derive_hash" | head -n 1 || true)
for dir in "$state" "$short" "$runner" "$many" "$pending_dir" "$attempts"; do
    if [ -z "$dir" ] || ! [ -f "$dir.done" ]; then
        echo "compare.sh: ${dir:-the 8-attempt repository} is missing after run.sh --generate-only" >&2
        exit 2
    fi
done

work=$(mktemp -d "$out/compare.XXXXXX")
trap 'rm -rf "$work"' EXIT

# children_cpu: $children_us, the CPU time (user + system, in microseconds, to the
# millisecond `times` prints) of this shell's finished children. Never call it in $(...).
children_cpu() {
    times >"$work/times"
    children_us=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); sub(/s$/, "", p[2]); t += p[1] * 60 + p[2] } printf "%d", t * 1e6 }' "$work/times")
}

# time_once PREPARE CMD...: $wall_us, $cpu_us and $rss_kb of one run of CMD, after PREPARE (a
# bash snippet, untimed; what it wrote is synced first). The fork of /usr/bin/time is the
# same for both binaries.
time_once() {
    local prep=$1 t0 t1
    shift
    [ -n "$prep" ] && eval "$prep" >/dev/null 2>&1
    sync
    children_cpu
    local c0=$children_us
    t0=${EPOCHREALTIME/./}
    if ! /usr/bin/time -f '%M' -o "$work/time" "$@" >/dev/null 2>"$work/err"; then
        echo "compare.sh: failed: $*" >&2
        sed 's/^/    /' "$work/err" >&2
        return 1
    fi
    t1=${EPOCHREALTIME/./}
    children_cpu
    wall_us=$((t1 - t0))
    cpu_us=$((children_us - c0))
    rss_kb=$(tail -n 1 "$work/time")
}

# stats MICROSECONDS...: "median min max" in milliseconds.
stats() {
    printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END {
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        printf "%.1f %.1f %.1f", m / 1e3, a[1] / 1e3, a[NR] / 1e3 }'
}
max_of() { printf '%s\n' "$@" | sort -n | tail -n 1; }

worse=0 records=0
if [ "$instructions" = 1 ]; then
    printf 'stagegate before/after, %s: instructions executed (callgrind, one run each)\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
else
    printf 'stagegate before/after, %s, %s cores, load %s; %s runs of each, alternating, after a warm-up\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$runs"
fi
printf 'before: %s\nafter:  %s\n' "$before" "$after"
if [ "$instructions" = 1 ]; then
    printf '%-40s %-26s %-26s %s\n' command "before" "after" after/b
else
    printf '%-40s %-26s %-26s %-7s %-8s %s\n' command "before ms (min-max)" "after ms (min-max)" after/b "cpu a/b" "peak RSS before -> after"
fi

# count LABEL PREPARE ARGS...: the instructions `BIN ARGS` executes for each binary (after
# PREPARE), under callgrind.
count() {
    local label=$1 prep=$2 b n=()
    shift 2
    for b in "$before" "$after"; do
        [ -n "$prep" ] && eval "$prep" >/dev/null 2>&1
        if ! valgrind --tool=callgrind --callgrind-out-file=/dev/null "$b" "$@" >/dev/null 2>"$work/err"; then
            echo "compare.sh: failed under valgrind: $b $*" >&2
            tail -n 5 "$work/err" | sed 's/^/    /' >&2
            worse=1
            return 0
        fi
        n+=("$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/err" | tail -n 1)")
    done
    local r verdict=""
    r=$(awk -v a="${n[1]}" -v b="${n[0]}" 'BEGIN { printf "%.3f", a / b }')
    if [ "$records" = 1 ]; then
        # How many results share a ledger commit depends on when they arrive (a 250 ms
        # window), and valgrind's slowness changes that from one run to the next: such a
        # count says what a run did, not what it costs. Compare these rows by time.
        verdict=" (batching: not judged)"
    elif awk -v r="$r" -v t="$tolerance" 'BEGIN { exit !(r > 1 + t / 100) }'; then
        verdict=" worse"
        worse=1
    fi
    printf '%-40s %-26s %-26s %s\n' "$label" "$(awk -v n="${n[0]}" 'BEGIN { printf "%.1f M", n / 1e6 }')" \
        "$(awk -v n="${n[1]}" 'BEGIN { printf "%.1f M", n / 1e6 }')" "${r}x$verdict"
}

# compare LABEL PREPARE ARGS...: ARGS run as `BIN ARGS` for each binary in turn.
compare() {
    if [ "$instructions" = 1 ]; then
        count "$@"
        return
    fi
    local label=$1 prep=$2 i b
    shift 2
    local wb=() wa=() cb=() ca=() rb=() ra=()
    for ((i = 0; i <= runs; i++)); do
        for b in before after; do
            local bin=$before
            [ "$b" = after ] && bin=$after
            time_once "$prep" "$bin" "$@" || { worse=1; return 0; }
            [ "$i" = 0 ] && continue
            if [ "$b" = before ]; then wb+=("$wall_us") cb+=("$cpu_us") rb+=("$rss_kb")
            else wa+=("$wall_us") ca+=("$cpu_us") ra+=("$rss_kb"); fi
        done
    done
    local sb sa mb ma r cr verdict=""
    sb=$(stats "${wb[@]}") sa=$(stats "${wa[@]}")
    read -r mb _ <<<"$sb"
    read -r ma _ <<<"$sa"
    r=$(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.3f", a / b }')
    cr=$(awk -v a="$(stats "${ca[@]}" | cut -d' ' -f1)" -v b="$(stats "${cb[@]}" | cut -d' ' -f1)" \
        'BEGIN { printf "%.3f", (b > 0) ? a / b : 1 }')
    if awk -v r="$r" -v t="$tolerance" 'BEGIN { exit !(r > 1 + t / 100) }'; then
        verdict=" worse"
        worse=1
    fi
    read -r m lo hi <<<"$sb"
    local fb="$m ($lo-$hi)"
    read -r m lo hi <<<"$sa"
    local fa="$m ($lo-$hi)"
    printf '%-40s %-26s %-26s %-7s %-8s %s\n' "$label" "$fb" "$fa" "${r}x$verdict" "${cr}x" \
        "$(awk -v b="$(max_of "${rb[@]}")" -v a="$(max_of "${ra[@]}")" 'BEGIN { printf "%.1f -> %.1f MiB", b / 1024, a / 1024 }')"
}

q() { printf '%q' "$1"; }

compare "status" "" -C "$state" status
compare "plan" "" -C "$state" plan
compare "status, $short_commits commits" "" -C "$short" status
compare "status, $pending candidates" "" -C "$pending_dir" status
compare "plan, $pending candidates" "" -C "$pending_dir" plan
compare "status, 8 attempts per result" "" -C "$attempts" status
compare "run --dry-run" "" -C "$state" run --dry-run
compare "report" "rm -rf $(q "$work/site")" -C "$state" report --out "$work/site"

fresh="rm -rf $(q "$work/run") && cp -a $(q "$runner") $(q "$work/run")"
# The runs that record results (their instruction counts depend on how results batch).
records=1
compare "run of $jobs jobs -j 2" "$fresh" -C "$work/run" run -j 2 --stage stable
records=0
eval "$fresh"
"$after" -C "$work/run" run -j 2 --stage stable >/dev/null 2>&1
compare "second run (nothing to do)" "" -C "$work/run" run -j 2 --stage stable

many_copy=$work/many
fresh_many="rm -rf $(q "$many_copy") && cp -a $(q "$many") $(q "$many_copy")"
eval "$fresh_many"
read -r -a many_sel < <("$after" -C "$many_copy" run --dry-run --format json |
    python3 -c 'import json,sys; print(" ".join("--job " + j["key"] for j in json.load(sys.stdin)["would_run"] if j["job"].startswith("build ")))')
records=1
compare "run of $((${#many_sel[@]} / 2)) jobs on $many_items items" "$fresh_many" \
    -C "$many_copy" run -j 2 "${many_sel[@]}"

big=$work/big
fresh_big="rm -rf $(q "$big") && cp -a $(q "$runner") $(q "$big") && mkdir -p $(q "$big/.git/objects/info") &&
    echo $(q "$state/objects") >>$(q "$big/.git/objects/info/alternates") &&
    git -C $(q "$big") update-ref refs/stagegate/results $(git -C "$state" rev-parse refs/stagegate/results)"
compare "run of $jobs jobs into the $results ledger" "$fresh_big" -C "$big" run -j 2 --stage stable

if [ "$worse" = 1 ]; then
    echo "a command of --after is more than $tolerance% slower than --before (or failed)"
    exit 1
fi
echo "no command of --after is more than $tolerance% slower than --before"
