#!/usr/bin/env python3
"""Generate a large stagegate state repository, reproducibly, through `git fast-import`.

Two shapes:

* the default, a state repository for the read-path figures of DESIGN.md §7: N items
  (a fifth of them images with a build recipe), M tests each using 3-6 items, C commits of
  history on the stage branches (`stable` an ancestor of `staging`, an ancestor of `new`,
  with a few pending commits on `new` and on `staging` beyond the next stage) and R results
  on `refs/stagegate/results`;
* `--runner J`, a small state repository for the runner figures: two stages
  (`staging` -> `stable`, the gate requiring tests and no baseline), one component used by
  J tests that each run `./t.sh` (`exit 0`), and one pending commit on `staging` bumping
  that component, so `stagegate run --stage stable` has exactly J trivial jobs to run.

Everything comes from `--seed`: the same sizes and seed give the same commit ids.

`--sign KEY` (an ed25519 private key file, its public key in KEY.pub): the pipeline gets a
`trust:` block naming that public key as its runner's (DESIGN.md §4.16), and every commit of
the ledger is signed with it as git signs (`git commit-tree -S` with `gpg.format=ssh`: the
same tree, parents, dates and message). Ed25519 signatures are deterministic, so the same
seed, sizes and key still give the same commit ids.

The ledger holds a few results for real jobs of the repository (the baselines and the
candidate jobs of the oldest pending commit on `staging`), so `status` shows verdicts and
reading a record is exercised; their keys are computed as `src/plan/key.rs` documents. All
other results are for random keys. Only the standard library is used; memory stays small
because everything is streamed into fast-import, which builds the trees.
"""

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

SMALL = {"items": 200, "tests": 20, "commits": 500, "results": 2000}
DEFAULT = {"items": 10_000, "tests": 500, "commits": 50_000, "results": 1_000_000}

# A fixed clock, so commit ids depend on the seed and sizes only.
EPOCH = 1_763_000_000
IDENT = "stagegate-gen <gen@example.invalid>"

PIPELINE = """\
version: 1
stages: [new, staging, stable]
gates:
  staging: {require: [build]}
  stable: {require: [test], baseline: true}
"""

RUNNER_PIPELINE = """\
version: 1
stages: [staging, stable]
gates:
  stable: {require: [test]}
"""

SCRIPT_OK = b"#!/bin/sh\nexit 0\n"
RECIPE = b'#!/bin/sh\n: > "$STAGEGATE_OUT/disk.img"\n'


def git_blob_id(data: bytes) -> str:
    """The id git gives a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def image_manifest(name: str, version: int) -> bytes:
    return (
        f'name: {name}\nversion: "1.{version}"\n'
        "build: {run: ./recipes/build.sh, artifact: disk.img}\n"
    ).encode()


def component_manifest(name: str, version: int) -> bytes:
    return f'name: {name}\nversion: "1.{version}"\n'.encode()


def test_manifest(name: str, uses: list[str], run: str) -> bytes:
    return f"name: {name}\nuses: [{', '.join(uses)}]\nrun: {run}\n".encode()


def artifact_digest(name: str, version: int) -> str:
    """The (made-up) digest of an image version's built artifact."""
    return "sha256:" + hashlib.sha256(f"{name} 1.{version}".encode()).hexdigest()


def built_record(name: str, version: int) -> bytes:
    """`.stagegate/built/images/NAME.yaml`: the image version was built (DESIGN.md §4.3)."""
    digest = artifact_digest(name, version)
    return (
        f"item: images/{name}\nversion: \"1.{version}\"\ndigest: \"{digest}\"\nsize: 0\n"
        f"location: \"file:///nonexistent/{digest[7:]}\"\nbuild-job: generated\n"
        "builder: gen@example.invalid\nbuilt-at: \"2026-01-01T00:00:00Z\"\n"
    ).encode()


def job_key(name: str, test_oid: str, files: dict, items: dict) -> str:
    """A test job's key, as `src/plan/key.rs` defines it: sha256 of canonical JSON.
    `items` maps an item id to (manifest blob id, artifact digest or None)."""
    doc = {
        "v": 1,
        "kind": "test",
        "name": name,
        "manifest": test_oid,
        "files": {p: files[p] for p in sorted(files)},
        "items": {
            i: {"manifest": items[i][0], "artifact": items[i][1]} for i in sorted(items)
        },
    }
    canonical = json.dumps(doc, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


class FastImport:
    """A `git fast-import` process and the commands it reads, buffered."""

    def __init__(self, repo: str, packed: bool = False):
        # A small import is written as loose objects unless told otherwise (packed: as
        # stagegate writes every ledger commit, one pack each).
        limit = ["-c", "fastimport.unpackLimit=0"] if packed else []
        self.proc = subprocess.Popen(
            ["git", "-C", repo, *limit, "fast-import", "--quiet", "--done"],
            stdin=subprocess.PIPE,
            bufsize=1 << 20,
        )
        self.out = self.proc.stdin
        self.clock = EPOCH

    def w(self, text: str) -> None:
        self.out.write(text.encode())

    def data(self, payload: bytes) -> None:
        self.out.write(b"data %d\n" % len(payload))
        self.out.write(payload)
        self.out.write(b"\n")

    def commit(self, ref: str, message: str) -> None:
        self.clock += 60
        self.w(f"commit {ref}\n")
        self.w(f"author {IDENT} {self.clock} +0000\n")
        self.w(f"committer {IDENT} {self.clock} +0000\n")
        self.data(message.encode())

    def put(self, path: str, payload: bytes, mode: str = "100644") -> None:
        self.w(f"M {mode} inline {path}\n")
        self.data(payload)

    def branch(self, ref: str, at: str) -> None:
        """Point `ref` at the current tip of the branch `at` (as fast-import knows it)."""
        self.w(f"reset {ref}\nfrom {at}\n\n")

    def finish(self) -> None:
        self.w("done\n")
        self.out.close()
        if self.proc.wait() != 0:
            sys.exit(f"gen: git fast-import failed with exit code {self.proc.returncode}")


def git(repo: str, *args: str, env: dict | None = None, stdin: str | None = None) -> str:
    return subprocess.run(
        ["git", "-C", repo, *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
    ).stdout.strip()


def git_raw(repo: str, *args: str) -> str:
    """`git` with its output as it is (a commit's message keeps its last newline)."""
    return subprocess.run(
        ["git", "-C", repo, *args], check=True, capture_output=True, text=True
    ).stdout


def trust_block(public_key: str) -> str:
    """`trust:` naming `public_key` ("ssh-ed25519 AAAA…") as the runner's key."""
    return f'trust:\n  runners:\n    - {{name: bench, key: "{public_key}"}}\n'


def read_public_key(key: str) -> str:
    """KEY.pub's type and key, without its comment (a host name would vary)."""
    try:
        with open(key + ".pub", encoding="utf-8") as f:
            parts = f.read().split()
    except OSError as e:
        sys.exit(f"gen: --sign {key}: cannot read its public key {key}.pub: {e}")
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        sys.exit(f"gen: --sign {key}: {key}.pub is not an ssh-ed25519 public key")
    return f"{parts[0]} {parts[1]}"


def sign_ref(repo: str, ref: str, key: str) -> int:
    """Re-create every commit of `ref`, oldest first, signed with `key` as git signs
    (`commit-tree -S`, `gpg.format=ssh`), with the same tree, parents (themselves
    re-created), identities, dates and message; point `ref` at the new tip. Returns how
    many commits were signed."""
    done: dict[str, str] = {}
    for old in git(repo, "rev-list", "--reverse", "--topo-order", ref).split():
        raw = git_raw(repo, "cat-file", "commit", old)
        head, _, message = raw.partition("\n\n")
        tree, parents, who = "", [], {}
        for h in head.split("\n"):
            field, _, value = h.partition(" ")
            if field == "tree":
                tree = value
            elif field == "parent":
                parents.append(done.get(value, value))
            elif field in ("author", "committer"):
                m = re.fullmatch(r"(.*) <(.*)> (\d+ [+-]\d{4})", value)
                who[field] = m.groups()
        env = dict(os.environ)
        for field, (name, email, date) in who.items():
            var = field.upper()
            env[f"GIT_{var}_NAME"], env[f"GIT_{var}_EMAIL"] = name, email
            env[f"GIT_{var}_DATE"] = "@" + date
        args = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit-tree", "-S"]
        for p in parents:
            args += ["-p", p]
        new = git(repo, *args, tree, "-F", "-", env=env, stdin=message)
        signed = git_raw(repo, "cat-file", "commit", new)
        unsigned = re.sub(r"\ngpgsig .*?-----END SSH SIGNATURE-----", "", signed, flags=re.S)
        expected = raw
        for o, n in done.items():
            expected = expected.replace(f"\nparent {o}\n", f"\nparent {n}\n")
        if unsigned != expected:
            sys.exit(f"gen: signing {old} changed more than its signature ({new})")
        done[old] = new
    if done:
        git(repo, "update-ref", ref, done[list(done)[-1]])
    return len(done)


def init_repo(out: str, bare: bool, force: bool) -> None:
    if os.path.exists(out):
        if not force and os.listdir(out):
            sys.exit(f"gen: {out} exists and is not empty (pass --force to replace it)")
        shutil.rmtree(out)
    os.makedirs(out)
    args = ["init", "-q"] + (["--bare"] if bare else [])
    git(out, *args)
    # Objects only: keep git from packing or pruning behind the benchmark's back.
    git(out, "config", "gc.auto", "0")


def record_yaml(
    key: str,
    name: str,
    role: str,
    candidates: list[str],
    verdict: str,
    code: int,
    commit: str,
    env: list[tuple[str, str, bool]],
) -> bytes:
    env_text = ", ".join(
        f'{{item: {i}, version: "{v}", candidate: {"true" if c else "false"}}}'
        for i, v, c in env
    )
    return (
        f"key: {key}\n"
        "kind: test\n"
        f"name: {name}\n"
        f"role: {role}\n"
        f"candidates: [{', '.join(candidates)}]\n"
        f"verdict: {verdict}\n"
        f"exit: {{code: {code}}}\n"
        "tries: 1\n"
        "started: 2026-11-20T10:00:00Z\n"
        "finished: 2026-11-20T10:00:01Z\n"
        "duration-ms: 1000\n"
        "runner: {host: gen, user: gen, pid: 1}\n"
        f"commit: {commit}\n"
        f"env: [{env_text}]\n"
    ).encode()


def key_dir(key: str) -> str:
    return f"{key[0:2]}/{key[2:4]}/{key}"


def record_name(attempt: int, nonce: str, verdict: str) -> str:
    """A result's file name, as `src/ledger/mod.rs` writes it: attempt, nonce, verdict."""
    return f"{attempt:04d}-{nonce}-{verdict}.yaml"


def ledger_path(key: str, nonce: str, verdict: str) -> str:
    return f"{key_dir(key)}/{record_name(1, nonce, verdict)}"


def pipeline(text: str, a: argparse.Namespace) -> bytes:
    """`stagegate.yaml`: `text`, with `trust:` naming the signing key's under `--sign`."""
    if a.sign:
        text += trust_block(read_public_key(a.sign))
    return text.encode()


def generate_state(a: argparse.Namespace) -> dict:
    """The large state repository; returns a summary."""
    rng = random.Random(f"stagegate-gen:{a.seed}")
    n_images = max(1, a.items // 5) if a.items > 1 else 1
    n_components = a.items - n_images
    if n_components < 6:
        sys.exit("gen: need at least 7 items")
    if a.tests < 1:
        sys.exit("gen: need at least one test")
    pending_new, pending_staging = a.pending_new, a.pending_staging
    if a.commits < 1 + pending_new + pending_staging:
        sys.exit(f"gen: need at least {1 + pending_new + pending_staging} commits")

    images = [f"i-{k}" for k in range(n_images)]
    components = [f"c-{k}" for k in range(n_components)]
    # Item ids as tests name them; index < n_images is an image.
    ids = [f"images/{n}" for n in images] + [f"components/{n}" for n in components]
    version = [0] * a.items

    def manifest(idx: int) -> bytes:
        if idx < n_images:
            return image_manifest(images[idx], version[idx])
        return component_manifest(components[idx - n_images], version[idx])

    def path(idx: int) -> str:
        return ids[idx] + ".yaml"

    def built_path(idx: int) -> str:
        return f".stagegate/built/{ids[idx]}.yaml"

    # Tests: one image and 2-5 components each, dealt round-robin from shuffled decks so
    # every item is used by some test when there are enough uses to go round.
    img_deck = list(range(n_images))
    comp_deck = list(range(n_images, a.items))
    rng.shuffle(img_deck)
    rng.shuffle(comp_deck)
    tests = []  # (name, [item idx])
    ip = cp = 0
    for k in range(a.tests):
        n_uses = rng.randint(3, 6)
        uses = [img_deck[ip % n_images]]
        ip += 1
        for _ in range(n_uses - 1):
            uses.append(comp_deck[cp % n_components])
            cp += 1
        uses = list(dict.fromkeys(uses))
        tests.append((f"t-{k}", uses))
    users: dict[int, list[int]] = {}
    for t, (_, uses) in enumerate(tests):
        for u in uses:
            users.setdefault(u, []).append(t)
    used = sorted(users)

    fi = FastImport(a.out)
    # The first commit: every file.
    fi.commit("refs/heads/new", "Start the benchmark state repository\n")
    fi.put("stagegate.yaml", pipeline(PIPELINE, a))
    fi.put("recipes/build.sh", RECIPE, "100755")
    for idx in range(a.items):
        fi.put(path(idx), manifest(idx))
        if idx < n_images:
            fi.put(built_path(idx), built_record(images[idx], version[idx]))
    test_oids = []
    for name, uses in tests:
        body = test_manifest(name, [ids[u] for u in uses], f"./tests/{name}.sh")
        test_oids.append(git_blob_id(body))
        fi.put(f"tests/{name}.yaml", body)
        fi.put(f"tests/{name}.sh", SCRIPT_OK, "100755")

    def bump(ref: str, chosen: list[int], built: bool = True) -> None:
        """Bump `chosen`; `built`: as promoted past the gate that builds images."""
        for idx in chosen:
            version[idx] += 1
        what = ", ".join(f"{ids[i]} to 1.{version[i]}" for i in chosen)
        fi.commit(ref, f"Bump {what}\n")
        for idx in chosen:
            fi.put(path(idx), manifest(idx))
            if built and idx < n_images:
                fi.put(built_path(idx), built_record(images[idx], version[idx]))

    history = a.commits - 1 - pending_new - pending_staging
    for _ in range(history):
        n = rng.choices((1, 2, 3), weights=(70, 20, 10))[0]
        bump("refs/heads/new", rng.sample(range(a.items), n))
    # The stable head is the last history commit (or the first commit).
    stable_versions = list(version)
    fi.branch("refs/heads/stable", "refs/heads/new")

    # Pending on staging: 1-2 items that tests use, so the gate into stable has jobs. A
    # random stream of their own, so repositories that differ only in the length of
    # history have the same candidates and jobs (the history-independence figure).
    prng = random.Random(f"stagegate-gen:{a.seed}:pending")
    staging_pending = []
    for _ in range(pending_staging):
        chosen = prng.sample(used, min(len(used), prng.randint(1, 2)))
        bump("refs/heads/new", chosen)
        staging_pending.append(chosen)
    fi.branch("refs/heads/staging", "refs/heads/new")
    # Pending on new: the first bumps an image (a build for the gate into staging).
    for k in range(pending_new):
        if k == 0:
            chosen = [prng.choice([u for u in used if u < n_images] or [0])]
        else:
            chosen = prng.sample(used, min(len(used), prng.randint(1, 2)))
        bump("refs/heads/new", chosen, built=False)

    # The ledger: results for real jobs first, then random keys up to R.
    script_oid = git_blob_id(SCRIPT_OK)
    real = []  # (key, test name, role, candidates, env)
    if pending_staging:

        def oid_at(idx: int, versions: list[int]) -> str:
            saved = version[idx]
            version[idx] = versions[idx]
            try:
                return git_blob_id(manifest(idx))
            finally:
                version[idx] = saved

        # Candidates are what differs between staging's head and stable's (DESIGN.md
        # §4.5): each judged alone by stable's tests, with a baseline.
        at_staging = list(stable_versions)
        for chosen in staging_pending:
            for idx in chosen:
                at_staging[idx] += 1
        cands = sorted({idx for chosen in staging_pending for idx in chosen})

        def item_at(u: int, versions: list[int]) -> tuple:
            digest = artifact_digest(images[u], versions[u]) if u < n_images else None
            return (oid_at(u, versions), digest)

        for t in sorted({t for idx in cands for t in users.get(idx, [])}):
            name, uses = tests[t]
            files = {f"tests/{name}.sh": script_oid}
            base_items = {ids[u]: item_at(u, stable_versions) for u in uses}
            base_env = [(ids[u], f"1.{stable_versions[u]}", False) for u in uses]
            real.append(
                (job_key(name, test_oids[t], files, base_items), name, "baseline", [], base_env)
            )
            for c in [u for u in uses if u in cands]:
                items = dict(base_items)
                items[ids[c]] = item_at(c, at_staging)
                env = [
                    (ids[u], f"1.{at_staging[u] if u == c else stable_versions[u]}", u == c)
                    for u in uses
                ]
                real.append(
                    (job_key(name, test_oids[t], files, items), name, "candidate", [ids[c]], env)
                )
    real = real[: a.results]

    fi.commit("refs/stagegate/results", f"Record {a.results} generated results\n")
    commit_hex = hashlib.sha1(f"{a.seed}:tested".encode()).hexdigest()
    for key, name, role, cands, env in real:
        nonce = hashlib.sha256(f"{a.seed}:nonce:{key}".encode()).hexdigest()[:8]
        fi.put(
            ledger_path(key, nonce, "pass"),
            record_yaml(key, name, role, cands, "pass", 0, commit_hex, env),
        )
    verdicts = ("pass",) * 17 + ("fail", "flaky", "error")
    seed_b = f"{a.seed}:result:".encode()
    for i in range(a.results - len(real)):
        h = hashlib.sha256(seed_b + str(i).encode()).hexdigest()
        key, nonce = h, hashlib.sha1(h.encode()).hexdigest()[:8]
        t = i % a.tests
        name, uses = tests[t]
        cand = uses[i % len(uses)]
        verdict = verdicts[i % len(verdicts)]
        env = [(ids[u], f"1.{i % 97}", u == cand) for u in uses]
        fi.put(
            ledger_path(key, nonce, verdict),
            record_yaml(
                key,
                name,
                "candidate",
                [ids[cand]],
                verdict,
                0 if verdict in ("pass", "flaky") else 1,
                commit_hex,
                env,
            ),
        )
    fi.finish()
    git(a.out, "symbolic-ref", "HEAD", "refs/heads/new")
    signed = sign_ref(a.out, "refs/stagegate/results", a.sign) if a.sign else 0
    return {
        "items": a.items,
        "images": n_images,
        "components": n_components,
        "tests": a.tests,
        "commits": a.commits,
        "results": a.results,
        "real_results": len(real),
        "pending": {"new": pending_new, "staging": pending_staging},
        "unused_items": a.items - len(used),
        "signed_ledger_commits": signed,
    }


def generate_runner(a: argparse.Namespace) -> dict:
    """The runner repository: J trivial jobs for `run --stage stable`."""
    jobs = a.runner
    fi = FastImport(a.out)
    fi.commit("refs/heads/staging", "Start the runner benchmark repository\n")
    fi.put("stagegate.yaml", pipeline(RUNNER_PIPELINE, a))
    fi.put("t.sh", SCRIPT_OK, "100755")
    fi.put("components/c-0.yaml", component_manifest("c-0", 0))
    for k in range(jobs):
        name = f"t-{k}"
        fi.put(f"tests/{name}.yaml", test_manifest(name, ["components/c-0"], "./t.sh"))
    fi.branch("refs/heads/stable", "refs/heads/staging")
    fi.commit("refs/heads/staging", "Bump components/c-0 to 1.1\n")
    fi.put("components/c-0.yaml", component_manifest("c-0", 1))
    fi.finish()
    git(a.out, "symbolic-ref", "HEAD", "refs/heads/staging")
    if not a.bare:
        git(a.out, "checkout", "-q", "-f", "staging")
    return {"runner_jobs": jobs, "tests": jobs, "items": 1, "commits": 2}


def main() -> None:
    p = argparse.ArgumentParser(
        description="Generate a stagegate state repository for benchmarks (DESIGN.md §7)."
    )
    p.add_argument("--out", required=True, help="directory to create the repository in")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument(
        "--small",
        action="store_true",
        help="quick sizes: %(items)d items, %(tests)d tests, %(commits)d commits, "
        "%(results)d results" % SMALL,
    )
    p.add_argument("--items", type=int, help=f"items (default {DEFAULT['items']})")
    p.add_argument("--tests", type=int, help=f"tests (default {DEFAULT['tests']})")
    p.add_argument(
        "--commits", type=int, help=f"commits of history (default {DEFAULT['commits']})"
    )
    p.add_argument(
        "--results", type=int, help=f"ledger results (default {DEFAULT['results']})"
    )
    p.add_argument("--pending-new", type=int, default=4, help="pending commits on new")
    p.add_argument(
        "--pending-staging", type=int, default=4, help="pending commits on staging"
    )
    p.add_argument(
        "--runner",
        type=int,
        metavar="J",
        help="make the runner repository instead: J trivial test jobs",
    )
    p.add_argument(
        "--bare",
        action="store_true",
        help="with --runner: a bare repository (the default repository is always bare)",
    )
    p.add_argument(
        "--sign",
        metavar="KEY",
        help="an ed25519 private key file (KEY.pub beside it): trust: names it as the "
        "runner's key and every ledger commit is signed with it",
    )
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    a = p.parse_args()
    sizes = SMALL if a.small else DEFAULT
    for k, v in sizes.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.out = os.path.abspath(a.out)
    if a.sign:
        a.sign = os.path.abspath(a.sign)
        read_public_key(a.sign)

    start = time.monotonic()
    if a.runner is not None:
        init_repo(a.out, a.bare, a.force)
        summary = generate_runner(a)
    else:
        init_repo(a.out, True, a.force)
        summary = generate_state(a)
    summary["seed"] = a.seed
    summary["seconds"] = round(time.monotonic() - start, 1)
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
