# Helpers for the Xen component (sourced, not run; needs recipes/debian.sh first): which
# packages are Xen's, where the mirror's package index is, and a package set's lock.
#
# The package index is read from the Debian mirror this machine's apt uses (bookworm,
# bookworm-updates and bookworm-security, where Xen's security updates arrive), or from
# STAGEGATE_XEN_MIRROR alone where the runner passes it on: an apt repository URL (file://
# works) whose dists/bookworm/main/binary-amd64/Packages (or .xz or .gz) lists the
# packages; the example's story uses such a local mirror to make a new Xen version appear.

# The packages of source xen that make the hypervisor and its tools in dom0: the
# component's content. Their other dependencies (libyajl2, libncurses6, ...) are the host's.
XEN_PACKAGES="xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common xenstore-utils
libxencall1 libxendevicemodel1 libxenevtchn1 libxenforeignmemory1 libxengnttab1
libxenhypfs1 libxenmisc4.17 libxenstore4 libxentoolcore1 libxentoollog1"

# xen_sources: the repositories to read, one "URL SUITE" a line.
xen_sources() {
    if [ -n "${STAGEGATE_XEN_MIRROR:-}" ]; then
        echo "${STAGEGATE_XEN_MIRROR%/} $SUITE"
        return
    fi
    echo "$(debian_mirror "$SUITE") $SUITE"
    echo "$(debian_mirror "$SUITE") $SUITE-updates"
    echo "$(debian_mirror "$SUITE-security") $SUITE-security"
}

# xen_index FILE: the packages of source xen from every source, as stanzas with the
# repository's URL added (Repository: URL), written to FILE.
xen_index() {
    : > "$1"
    xen_sources | while read -r url suite; do
        got=""
        for ext in xz gz ""; do
            if fetch "$url/dists/$suite/main/binary-amd64/Packages${ext:+.$ext}" "$1.part" 2>/dev/null; then
                got=$ext
                break
            fi
            got=none
        done
        case $got in
        none) echo "cannot read the package index of $url $suite" >&2; exit 1 ;;
        xz) xz -dc "$1.part" ;;
        gz) gzip -dc "$1.part" ;;
        *) cat "$1.part" ;;
        esac | awk -v url="$url" 'BEGIN { RS = ""; ORS = "\n\n" }
            /(^|\n)Source: xen( |\n|$)/ { print $0 "\nRepository: " url }' >> "$1"
        rm -f "$1.part"
    done
}

# xen_field STANZAS PACKAGE VERSION FIELD: FIELD of PACKAGE at VERSION in the index.
xen_field() {
    awk -v p="$2" -v v="$3" -v f="$4" 'BEGIN { RS = "" }
        {
            n = split($0, L, "\n"); pk = ve = val = ""
            for (i = 1; i <= n; i++) {
                if (L[i] ~ /^Package: /) pk = substr(L[i], 10)
                if (L[i] ~ /^Version: /) ve = substr(L[i], 10)
                if (index(L[i], f ": ") == 1) val = substr(L[i], length(f) + 3)
            }
            if (pk == p && ve == v) { print val; exit }
        }' "$1"
}

# xen_newest STANZAS: the newest version of the hypervisor package in the index.
xen_newest() {
    newest=""
    for v in $(awk '/^Package: xen-hypervisor-4.17-amd64$/ { p = 1; next } p && /^Version: / { print $2; p = 0 }' "$1"); do
        if [ -z "$newest" ] || dpkg --compare-versions "$v" gt "$newest"; then
            newest=$v
        fi
    done
    echo "$newest"
}
