#!/usr/bin/env bash
# The git plumbing that reads what `stagegate status` and `plan` read (DESIGN.md §7): for
# each stage move T <- S, `git diff --name-only T S`, then `git cat-file --batch` of every
# changed file at both S and T (a candidate's two manifests: its new and its old version).
#
# usage: plumbing.sh DIR T S [T S ...]      e.g. plumbing.sh repo.git staging new stable staging
set -euo pipefail
dir=$1
shift
while [ $# -ge 2 ]; do
    t=$1 s=$2
    shift 2
    git -C "$dir" diff --name-only "$t" "$s" |
        awk -v s="$s" -v t="$t" '{ print s ":" $0; print t ":" $0 }' |
        git -C "$dir" cat-file --batch >/dev/null
done
