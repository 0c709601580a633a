#!/usr/bin/env python3
"""State repositories derived from one `gen.py` made, in seconds instead of an hour.

Regenerating 50,000 commits and a million results for every shape would take an hour, so
these share the base's objects (`objects/info/alternates`, nothing is copied) and change
only what the case needs:

* `--candidates P`: `gen.py` makes 4 pending commits on `staging` (a handful of
  candidates); users have tens or hundreds waiting. This keeps `stable` and the ledger and
  puts on top of `stable` one commit per candidate, each bumping a different item that
  some test uses (an image gets its build record, as if built on the way in), so that
  `staging` -> `stable` has exactly P candidates, each with its jobs. `new` is `staging`.
* `--attempts N --keys FILE`: the same stages, and a ledger where every job key listed in
  FILE (one a line) that has a result has N attempts of it, as after a flaky job was rerun
  N - 1 times: its record, N - 2 failures (the record with `verdict: fail`), and its
  record again as the newest, each named with its verdict as stagegate names them.

    benches/derive.py --base DIR --out DIR --candidates P [--seed S]
    benches/derive.py --base DIR --out DIR --attempts N --keys FILE

The same arguments give the same commit ids. Prints a JSON summary.
"""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402  (the manifest shapes, the fixed clock and fast-import writer)


def git(repo: str, *args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", "-C", repo, *args], input=data, check=True, capture_output=True
    ).stdout


def cat_files(repo: str, specs: list[str]) -> list[bytes]:
    """The contents of `specs` (`REV:PATH` or ids), read in one `git cat-file --batch`."""
    out = git(repo, "cat-file", "--batch", data="".join(s + "\n" for s in specs).encode())
    contents, pos = [], 0
    for _ in specs:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        contents.append(out[header_end + 1 : header_end + 1 + size])
        pos = header_end + 1 + size + 1
    return contents


def ls_names(repo: str, rev: str, directory: str) -> list[str]:
    names = git(repo, "ls-tree", "--name-only", f"{rev}:{directory}").decode().split()
    return [n for n in names if n.endswith(".yaml")]


def init_derived(base: str, out: str) -> None:
    """An empty bare repository at `out` that reads `base`'s objects."""
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    git(out, "init", "-q", "--bare")
    git(out, "config", "gc.auto", "0")
    with open(os.path.join(out, "objects", "info", "alternates"), "w") as f:
        f.write(os.path.join(base, "objects") + "\n")


def derive_candidates(base: str, out: str, candidates: int, seed: int) -> dict:
    if candidates < 1:
        sys.exit("derive: need at least one candidate")

    # Items some test on stable uses: only those have jobs.
    tests = ls_names(base, "stable", "tests")
    used = set()
    for body in cat_files(base, [f"stable:tests/{t}" for t in tests]):
        m = re.search(rb"^uses: \[(.*)\]$", body, re.M)
        if m:
            used.update(u.strip().decode() for u in m.group(1).split(b","))
    used = sorted(used)
    if len(used) < candidates:
        sys.exit(f"derive: only {len(used)} items are used by tests, asked for {candidates}")
    chosen = random.Random(f"stagegate-candidates:{seed}").sample(used, candidates)
    bodies = cat_files(base, [f"stable:{c}.yaml" for c in chosen])

    init_derived(base, out)
    stable = git(base, "rev-parse", "stable").decode().strip()
    results = git(base, "rev-parse", "refs/stagegate/results").decode().strip()

    fi = gen.FastImport(out)
    fi.clock = gen.EPOCH + 10_000_000
    fi.branch("refs/heads/staging", stable)
    for item, body in zip(chosen, bodies):
        kind, name = item.split("/", 1)
        m = re.search(rb'^version: "1\.(\d+)"$', body, re.M)
        if not m:
            sys.exit(f"derive: {item} on stable has no version gen.py would write")
        version = int(m.group(1)) + 1
        fi.commit("refs/heads/staging", f"Bump {item} to 1.{version}\n")
        if kind == "images":
            fi.put(f"{item}.yaml", gen.image_manifest(name, version))
            fi.put(f".stagegate/built/{item}.yaml", gen.built_record(name, version))
        else:
            fi.put(f"{item}.yaml", gen.component_manifest(name, version))
    fi.branch("refs/heads/new", "refs/heads/staging")
    fi.finish()
    git(out, "update-ref", "refs/heads/stable", stable)
    git(out, "update-ref", "refs/stagegate/results", results)
    git(out, "symbolic-ref", "HEAD", "refs/heads/new")
    return {
        "candidates": candidates,
        "images": sum(c.startswith("images/") for c in chosen),
        "seed": seed,
    }


def derive_attempts(base: str, out: str, attempts: int, keys_file: str) -> dict:
    if attempts < 1:
        sys.exit("derive: need at least one attempt")
    with open(keys_file) as f:
        keys = sorted({k.strip() for k in f if k.strip()})
    results = git(base, "rev-parse", "refs/stagegate/results").decode().strip()
    # Each key's records (one, from gen.py), found with one ls-tree per key directory.
    found = []
    for key in keys:
        listing = subprocess.run(
            ["git", "-C", base, "ls-tree", f"{results}:{gen.key_dir(key)}"],
            capture_output=True,
        )
        if listing.returncode != 0:
            continue  # no result for this key
        first = listing.stdout.decode().splitlines()[0].split()
        found.append((key, first[2], first[3]))
    texts = cat_files(base, [blob for _, blob, _ in found])
    init_derived(base, out)
    fi = gen.FastImport(out, packed=True)
    fi.clock = gen.EPOCH + 20_000_000
    fi.branch("refs/stagegate/results", results)
    fi.commit("refs/stagegate/results", f"Rerun {len(found)} jobs, {attempts} attempts each\n")
    for (key, blob, name), text in zip(found, texts):
        nonce = name.split("-")[1]
        verdict = re.search(rb"^verdict: (\w+)$", text, re.M).group(1).decode()
        failed = re.sub(rb"^verdict: \w+$", b"verdict: fail", text, flags=re.M)
        failed = re.sub(rb"^exit: .*$", b"exit: {code: 1}", failed, flags=re.M)
        for n in range(2, attempts + 1):
            if n == attempts:
                fi.w(f"M 100644 {blob} {gen.key_dir(key)}/{gen.record_name(n, nonce, verdict)}\n")
            else:
                fi.put(f"{gen.key_dir(key)}/{gen.record_name(n, nonce, 'fail')}", failed)
    fi.finish()
    for ref in ("refs/heads/new", "refs/heads/staging", "refs/heads/stable"):
        git(out, "update-ref", ref, git(base, "rev-parse", ref).decode().strip())
    git(out, "symbolic-ref", "HEAD", "refs/heads/new")
    return {"attempts": attempts, "keys": len(keys), "keys_with_results": len(found)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="a state repository made by gen.py")
    p.add_argument("--out", required=True, help="the repository to create")
    p.add_argument("--candidates", type=int, help="pending candidates on staging")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--attempts", type=int, help="attempts of each listed job's result")
    p.add_argument("--keys", help="with --attempts: a file of job keys, one a line")
    a = p.parse_args()
    start = time.monotonic()
    base = os.path.abspath(a.base)
    out = os.path.abspath(a.out)
    if (a.candidates is None) == (a.attempts is None):
        sys.exit("derive: pass --candidates P or --attempts N --keys FILE")
    if a.candidates is not None:
        summary = derive_candidates(base, out, a.candidates, a.seed)
    else:
        if not a.keys:
            sys.exit("derive: --attempts needs --keys FILE")
        summary = derive_attempts(base, out, a.attempts, a.keys)
    summary["base"] = base
    summary["seconds"] = round(time.monotonic() - start, 1)
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
