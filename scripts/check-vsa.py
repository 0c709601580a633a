#!/usr/bin/env python3
"""Check a stagegate verification summary (SLSA VSA in a DSSE envelope) without stagegate.

For people who only pull artifacts: given the runner's public key (an OpenSSH ed25519
`.pub` line, as `trust.runners` lists it), check with securesystemslib's DSSE verifier
that the summary is signed by that key, that it is about the artifact you have (its
sha256), that it says PASSED, and (with --stage) that it names the stage you expect.

    pip install 'securesystemslib[crypto]'
    # from a registry store (referrers API, else the referrers tag schema):
    check-vsa.py --key runner.pub --digest sha256:HEX --stage stable \
        --registry http://registry.lan:5000 --repository team/artifacts
    # or a summary you have as a file (a directory store's <hex>.<stage>.vsa.json):
    check-vsa.py --key runner.pub --digest sha256:HEX --envelope FILE

What it cannot check without the state repository: that the policy and results the
summary names are the pipeline and the ledger the promotion really rested on (`stagegate
verify --artifact` does). Exit 0 when a summary holds, 1 when none does.
"""

import argparse
import base64
import hashlib
import json
import sys
import urllib.error
import urllib.request

from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

PREDICATE = "https://slsa.dev/verification_summary/v1"
DSSE = "application/vnd.dsse.envelope.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def fingerprint(line):
    """`SHA256:…` of an OpenSSH public key line, as `ssh-keygen -l` prints it."""
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def get(url, accept):
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req) as r:
        return r.read(), r.headers.get("Docker-Content-Digest")


def from_registry(base, repo, hexdigest):
    """The DSSE envelopes attached to the artifact's manifest (stagegate tags it
    `sg-<hex>`; stores written before 0.2, `sha256-<hex>`)."""
    subject = None
    for tag in ("sg-" + hexdigest, "sha256-" + hexdigest):
        try:
            body, digest = get(f"{base}/v2/{repo}/manifests/{tag}", MANIFEST)
            subject = digest or "sha256:" + hashlib.sha256(body).hexdigest()
            break
        except urllib.error.HTTPError:
            continue
    if subject is None:
        return []
    try:
        index, _ = get(f"{base}/v2/{repo}/referrers/{subject}?artifactType={DSSE}", INDEX)
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
        try:
            index, _ = get(f"{base}/v2/{repo}/manifests/{subject.replace(':', '-')}", INDEX)
        except urllib.error.HTTPError:
            return []
    out = []
    for entry in json.loads(index).get("manifests", []):
        if entry.get("artifactType") != DSSE:
            continue
        body, _ = get(f"{base}/v2/{repo}/manifests/{entry['digest']}", MANIFEST)
        layer = json.loads(body)["layers"][0]["digest"]
        blob, _ = get(f"{base}/v2/{repo}/blobs/{layer}", "*/*")
        if "sha256:" + hashlib.sha256(blob).hexdigest() == layer:
            out.append(blob)
    return out


def check(raw, key, hexdigest, stage):
    """Why the envelope does not hold, or None and a one-line summary (None too when it
    holds for another stage than `stage`)."""
    try:
        env = Envelope.from_dict(json.loads(raw))
        env.verify([key], 1)
    except Exception as e:  # noqa: BLE001 - any failure is a refusal, with its reason
        return f"signature: {e}", None
    st = json.loads(env.payload)
    pred = st.get("predicate", {})
    if st.get("predicateType") != PREDICATE:
        return f"not a verification summary: {st.get('predicateType')}", None
    subjects = [s.get("digest", {}).get("sha256") for s in st.get("subject", [])]
    if hexdigest not in subjects:
        return f"subject: about {subjects}, not sha256:{hexdigest}", None
    if pred.get("verificationResult") != "PASSED":
        return f"result: {pred.get('verificationResult')}", None
    reached = pred.get("stagegate", {}).get("stage")
    if stage and f"STAGEGATE_STAGE_{stage}" not in pred.get("verifiedLevels", []):
        return None, None  # a summary of another stage: not the one asked about
    return None, (
        f"ok   sha256:{hexdigest[:12]} passed into {reached} at {pred.get('timeVerified')}, "
        f"signed by {pred.get('verifier', {}).get('id')}; policy {pred.get('policy', {}).get('uri')}"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--key", required=True, help="the runner's OpenSSH ed25519 public key file")
    p.add_argument("--digest", required=True, help="the artifact's sha256:HEX")
    p.add_argument("--stage", help="the stage it must have reached")
    p.add_argument("--envelope", help="a summary in a file")
    p.add_argument("--registry", help="http(s)://HOST[:PORT] of the registry store")
    p.add_argument("--repository", help="the store's repository in that registry")
    a = p.parse_args()
    line = open(a.key).read().strip()
    key = SSlibKey.from_crypto(load_ssh_public_key(line.encode()), keyid=fingerprint(line))
    hexdigest = a.digest.removeprefix("sha256:")
    if a.envelope:
        found = [open(a.envelope, "rb").read()]
    elif a.registry and a.repository:
        found = from_registry(a.registry.rstrip("/"), a.repository, hexdigest)
    else:
        p.error("give --envelope FILE, or --registry URL and --repository NAME")
    ok = failed = False
    for raw in found:
        why, summary = check(raw, key, hexdigest, a.stage)
        if why:
            failed = True
            print(f"FAIL {why}")
        elif summary:
            ok = True
            print(summary)
    if not ok and not failed:
        into = f" into {a.stage}" if a.stage else ""
        print(f"FAIL no verification summary of sha256:{hexdigest}{into} found")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
