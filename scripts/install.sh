#!/usr/bin/env bash
# Install stagegate for the GitHub Action (action.yml): the released static binary that
# matches the action's own ref, verified against the release's SHA256SUMS; a build from the
# action's source only when no such release exists (a branch, an unreleased commit, another
# operating system or architecture).
#
# The ref is a release tag (v0.1.0), the commit of a release (what `stagegate init
# --github` pins: the release's SOURCE_COMMIT must name it), or a floating major tag (v0):
# the newest release vMAJOR.MINOR.PATCH among the action repository's tags, found with
# `git ls-remote` (no API call, so no rate limit and no token).
#
# Environment (action.yml sets it):
#   STAGEGATE_ACTION_PATH   the action's checkout (its Cargo.toml names the version)
#   STAGEGATE_REF           the ref the workflow used: a tag (v0.1.0), a commit SHA, a branch
#   STAGEGATE_RELEASES      where releases are downloaded from, without the tag:
#                           https://github.com/OWNER/stagegate/releases/download
#                           (without /releases/download: the repository's git URL)
#   STAGEGATE_INSTALL_DIR   where the binary goes (its bin/ is added to GITHUB_PATH)
#   STAGEGATE_PROVENANCE    auto (default): where the GitHub CLI (gh) is installed, check
#                           the release's build provenance (attested by release.yml) with
#                           `gh attestation verify`; require: refuse to install without that
#                           check; off: the checksum only
#   GH_TOKEN                for gh (action.yml passes the workflow's token)
#   GITHUB_PATH             the file GitHub reads PATH additions from (optional)
#
# A checksum or provenance that does not verify is never installed and never "fixed" by
# building: it means the download is not what was released, and the step fails.
set -euo pipefail

say() { printf 'stagegate install: %s\n' "$*" >&2; }
die() { printf '::error title=stagegate install::%s\n' "$*"; exit 3; }

action_path="${STAGEGATE_ACTION_PATH:?STAGEGATE_ACTION_PATH is not set}"
ref="${STAGEGATE_REF:-}"
releases="${STAGEGATE_RELEASES:-}"
root="${STAGEGATE_INSTALL_DIR:-${RUNNER_TEMP:-${TMPDIR:-/tmp}}/stagegate}"
bin="$root/bin"

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$action_path/Cargo.toml" | head -n 1)"
[ -n "$version" ] || die "no version in $action_path/Cargo.toml"
tag="v$version"

target=""
if [ "$(uname -s)" = Linux ]; then
    case "$(uname -m)" in
        x86_64 | amd64) target=x86_64-unknown-linux-musl ;;
        aarch64 | arm64) target=aarch64-unknown-linux-musl ;;
    esac
fi

# Which release matches the ref: the tag itself, or — for a commit SHA — the release of the
# action's version, if that release was built from this very commit (its SOURCE_COMMIT).
expect_commit=""
floating=""
case "$ref" in
    "$tag") ;;
    v[0-9]*)
        if [[ "$ref" =~ ^v[0-9]+$ ]]; then
            floating="$ref"
        else
            say "the action is used at $ref, but its Cargo.toml says $version"
        fi
        tag=""
        ;;
    *)
        if [[ "$ref" =~ ^[0-9a-f]{40}$ ]]; then
            expect_commit="$ref"
        else
            tag=""
        fi
        ;;
esac

fetch() { # URL FILE: 0 fetched, 1 not there (404), 2 any other failure
    local code
    code="$(curl --silent --show-error --location --proto '=https,http' --retry 3 \
        --connect-timeout 15 --output "$2" --write-out '%{http_code}' "$1" 2>/dev/null)" || code=000
    case "$code" in
        200) return 0 ;;
        404) return 1 ;;
        *) say "downloading $1 failed (HTTP $code)"; return 2 ;;
    esac
}

# Succeeds (and installs) with the released binary; fails when no usable release exists.
install_release() {
    [ -n "$tag" ] || return 1
    [ -n "$target" ] || { say "no release binary for $(uname -s) $(uname -m)"; return 1; }
    [ -n "$releases" ] || { say "STAGEGATE_RELEASES is not set"; return 1; }
    command -v curl >/dev/null || { say "curl is not installed"; return 1; }
    local dir asset
    dir="$(mktemp -d)"
    asset="stagegate-$target.tar.gz"
    if ! fetch "$releases/$tag/SHA256SUMS" "$dir/SHA256SUMS"; then
        say "no release $tag"
        return 1
    fi
    if ! fetch "$releases/$tag/$asset" "$dir/$asset"; then
        say "release $tag has no $asset"
        return 1
    fi
    local want got
    want="$(awk -v f="$asset" '$2 == f || $2 == "*" f { print $1 }' "$dir/SHA256SUMS")"
    [ -n "$want" ] || die "SHA256SUMS of $tag does not list $asset; refusing to install it"
    got="$(sha256sum "$dir/$asset" | cut -d ' ' -f 1)"
    [ "$want" = "$got" ] ||
        die "checksum mismatch for $asset of $tag: SHA256SUMS says $want, the download is $got; refusing to install it"
    if [ -n "$expect_commit" ]; then
        if ! fetch "$releases/$tag/SOURCE_COMMIT" "$dir/SOURCE_COMMIT"; then
            say "release $tag does not say which commit it was built from"
            return 1
        fi
        want="$(awk '$2 == "SOURCE_COMMIT" { print $1 }' "$dir/SHA256SUMS")"
        got="$(sha256sum "$dir/SOURCE_COMMIT" | cut -d ' ' -f 1)"
        [ -n "$want" ] && [ "$want" = "$got" ] ||
            die "checksum mismatch for SOURCE_COMMIT of $tag; refusing to install it"
        if [ "$(tr -d '[:space:]' < "$dir/SOURCE_COMMIT")" != "$expect_commit" ]; then
            say "release $tag was built from $(cat "$dir/SOURCE_COMMIT"), not $expect_commit"
            return 1
        fi
    fi
    verify_provenance "$dir" "$asset"
    tar -xzf "$dir/$asset" -C "$dir" stagegate
    mkdir -p "$bin"
    install -m 0755 "$dir/stagegate" "$bin/stagegate"
    rm -rf "$dir"
    say "installed the released stagegate $tag ($target), checksum verified"
}

# The build provenance of release $tag's $2 (in directory $1), as release.yml attested it:
# signed by this repository's release workflow. The release's provenance.sigstore.json
# bundle is used when it has one (no API call); otherwise gh asks GitHub's attestation API.
verify_provenance() {
    local dir="$1" asset="$2" mode="${STAGEGATE_PROVENANCE:-auto}" repo out
    case "$mode" in
        off) say "build provenance not checked (STAGEGATE_PROVENANCE=off)"; return 0 ;;
        auto | require) ;;
        *) die "STAGEGATE_PROVENANCE is '$mode': use auto, require or off" ;;
    esac
    if ! command -v gh >/dev/null; then
        [ "$mode" = require ] &&
            die "STAGEGATE_PROVENANCE=require, but the GitHub CLI (gh) is not installed: install it before this step, or set STAGEGATE_PROVENANCE=auto"
        say "build provenance not checked: the GitHub CLI (gh) is not installed"
        return 0
    fi
    # OWNER/NAME of https://HOST/OWNER/NAME/releases/download.
    repo="$(sed -E 's#^[a-z]+://[^/]+/##; s#/releases/download/?$##' <<< "$releases")"
    [[ "$repo" =~ ^[^/]+/[^/]+$ ]] ||
        die "cannot tell the repository from STAGEGATE_RELEASES ($releases) to check the build provenance; set STAGEGATE_PROVENANCE=off to install on the checksum alone"
    local args=("$dir/$asset" --repo "$repo" --signer-workflow "$repo/.github/workflows/release.yml")
    if fetch "$releases/$tag/provenance.sigstore.json" "$dir/provenance.sigstore.json"; then
        args+=(--bundle "$dir/provenance.sigstore.json")
    fi
    if ! out="$(gh attestation verify "${args[@]}" 2>&1)"; then
        printf '%s\n' "$out" >&2
        die "the build provenance of $asset of $tag does not verify (gh attestation verify, signer $repo/.github/workflows/release.yml); refusing to install it"
    fi
    say "build provenance verified: $asset was built by $repo's release workflow"
}

# The release tags of major version $1 (v0) in the action's repository, newest first.
release_tags() {
    local repo="${releases%/releases/download}"
    [ -n "$releases" ] && [ "$repo" != "$releases" ] ||
        { say "STAGEGATE_RELEASES does not end in /releases/download"; return 1; }
    command -v git >/dev/null || { say "git is not installed"; return 1; }
    local refs
    # Never a password prompt on a runner, and no waiting forever on a stalled server.
    if ! refs="$(GIT_TERMINAL_PROMPT=0 git -c http.lowSpeedLimit=1000 -c http.lowSpeedTime=30 \
        ls-remote --tags --refs "$repo" "refs/tags/$1.*" 2>&1)"; then
        say "listing the tags of $repo failed: $refs"
        return 1
    fi
    # Releases only: vMAJOR.MINOR.PATCH, no pre-releases (v0.2.0-rc1).
    sed -n "s|^[0-9a-f]*[[:space:]]*refs/tags/\($1\.[0-9][0-9]*\.[0-9][0-9]*\)\$|\1|p" <<< "$refs" |
        sort -t . -k 2,2nr -k 3,3nr
}

# A floating major tag: the newest of its releases that has its binaries. A tag whose
# release is not published yet (its workflow still running) gives way to the one before.
install_floating() {
    local tags candidate tried=0
    tags="$(release_tags "$floating")" || return 1
    [ -n "$tags" ] || { say "no release $floating.x.y"; return 1; }
    for candidate in $tags; do
        tried=$((tried + 1))
        [ "$tried" -le 3 ] || break
        tag="$candidate"
        say "$floating: trying the newest release, $tag"
        if install_release; then
            return 0
        fi
    done
    say "none of the newest releases of $floating could be installed"
    tag=""
    return 1
}

build_from_source() {
    say "building stagegate $version from source (${ref:-no ref}): this takes minutes"
    command -v cargo >/dev/null ||
        die "cargo is not installed on this runner; add a Rust toolchain step before this action, or use a released tag (e.g. @$tag)"
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stagegate-target}" \
        cargo install --path "$action_path" --locked --root "$root" --quiet
}

if [ -n "$floating" ]; then
    install_floating || build_from_source
else
    install_release || build_from_source
fi
"$bin/stagegate" --version
if [ -n "${GITHUB_PATH:-}" ]; then
    echo "$bin" >> "$GITHUB_PATH"
fi
