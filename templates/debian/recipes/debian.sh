# Helpers shared by the Debian recipes, the watch and the tests (sourced, not run).
#
# The mirror is the one this machine's apt uses (/etc/apt/sources.list and
# sources.list.d, one-line or deb822 format), deb.debian.org where none is configured;
# STAGEGATE_DEBIAN_MIRROR overrides it where the runner passes that variable on.
#
# The last-known-good package cache is a build output (build.cache: packages.tar), kept
# by stagegate in its artifact store beside the image and given to the next build as
# $STAGEGATE_CACHE. Apart from it, a runner keeps what it downloaded, so that no .deb is
# fetched twice: $(deb_cache)/debs/NAME_VERSION_ARCH.deb (apt's file names; an epoch's ':'
# is written %3a). Its place: STAGEGATE_DEB_CACHE, else ~/.cache/stagegate/debian.

SUITE=bookworm

# debian_mirror SUITE: the URI apt uses for SUITE, or deb.debian.org's.
debian_mirror() {
    if [ -n "${STAGEGATE_DEBIAN_MIRROR:-}" ]; then
        case $1 in
        *-security) echo "${STAGEGATE_DEBIAN_MIRROR%/}-security" ;;
        *) echo "${STAGEGATE_DEBIAN_MIRROR%/}" ;;
        esac
        return
    fi
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        case $f in
        *.sources)
            uri=$(awk -v suite="$1" 'BEGIN { RS = "" }
                {
                    t = u = s = ""; off = 0
                    n = split($0, L, "\n")
                    for (i = 1; i <= n; i++) {
                        if (L[i] ~ /^Types:/) t = " " substr(L[i], 7) " "
                        if (L[i] ~ /^URIs:/) u = substr(L[i], 6)
                        if (L[i] ~ /^Suites:/) s = " " substr(L[i], 8) " "
                        if (L[i] ~ /^Enabled:[ \t]*no/) off = 1
                    }
                    gsub(/[ \t]+/, " ", s); split(u, U, " ")
                    if (!off && t ~ / deb / && index(s, " " suite " ")) { print U[1]; exit }
                }' "$f") ;;
        *)
            uri=$(awk -v suite="$1" '$1 == "deb" {
                    i = 2
                    if ($2 ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == suite) { print $i; exit }
                }' "$f") ;;
        esac
        if [ -n "$uri" ]; then
            echo "${uri%/}"
            return
        fi
    done
    case $1 in
    *-security) echo http://deb.debian.org/debian-security ;;
    *) echo http://deb.debian.org/debian ;;
    esac
}

# fetch URL FILE: download (http, https, file) with curl, else apt's own helper.
fetch() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 2 --max-time 60 -o "$2" "$1"
    else
        /usr/lib/apt/apt-helper -qq download-file "$1" "$2"
    fi
}

# release_version RELEASE-FILE: the point release a suite's Release file names (Version:).
release_version() {
    sed -n 's/^Version:[[:space:]]*//p' "$1" | head -n 1
}

deb_cache() {
    echo "${STAGEGATE_DEB_CACHE:-${HOME:?HOME is not set}/.cache/stagegate/debian}"
}

# need TOOL PACKAGE: exit 125 when TOOL is missing, with the package that brings it.
need() {
    command -v "$1" >/dev/null 2>&1 || cannot_run "$1 is missing: install it (Debian: apt-get install $2)"
}

# cannot_run MESSAGE: this runner cannot do the job, which is not the image's fault: exit
# 125, stagegate's (and `git bisect run`'s) "could not test", recorded as an `error`. An
# error leaves the candidate waiting for a runner that can, where a failure would reject
# it.
cannot_run() {
    echo "$1" >&2
    exit 125
}
