#!/bin/sh
# Build the host image: a minimal Debian root filesystem from real packages (mmdebstrap
# --variant=minbase plus recipes/debian-host.packages), made into ext4 with `mke2fs -d`
# and converted to qcow2. Writes $STAGEGATE_OUT/disk.qcow2 and packages.lock, the exact
# package set: NAME VERSION ARCH SHA256-OF-THE-DEB, one a line.
#
# Every .deb is kept in the package cache (recipes/debian.sh), so that a rebuild
# reproduces a known package set without the mirror:
#   - a version built before is rebuilt from its own cached set;
#   - with --offline, or when the mirror cannot be reached, a new version is built from
#     the last set that built (latest.lock) and nothing is downloaded;
#   - otherwise packages are resolved from the mirror (point release and security
#     updates), the .debs already cached are not downloaded again.
# Run as root (mmdebstrap's root mode; no loop mounts are needed).
set -eu
: "${STAGEGATE_OUT:?run by stagegate: STAGEGATE_OUT is the output directory}"
. ./recipes/debian.sh
offline=0
for arg in "$@"; do
    case $arg in
    --offline) offline=1 ;;
    *) echo "usage: $0 [--offline]" >&2; exit 2 ;;
    esac
done
need mmdebstrap mmdebstrap
need apt-ftparchive apt-utils
need mke2fs e2fsprogs
need qemu-img qemu-utils
[ "$(id -u)" = 0 ] || cannot_run "debian-host: run the build as root (mmdebstrap root mode)"

image=debian-host
version=${STAGEGATE_IMAGE_DEBIAN_HOST_VERSION:?the image version is missing}
cache=$(deb_cache)
sets="$cache/sets/$image"
mkdir -p "$cache/debs" "$sets"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
packages=$(sed 's/#.*//' recipes/debian-host.packages | tr -s ' \t\n' ',' | sed 's/^,//; s/,$//')

# debfile NAME VERSION ARCH: apt's file name for a package.
debfile() { printf '%s_%s_%s.deb\n' "$1" "$(echo "$2" | sed 's/:/%3a/')" "$3"; }

from=""
if [ -f "$sets/$version.lock" ]; then
    from="$sets/$version.lock"
    echo "debian-host $version was built before: reproducing its package set from the cache"
elif [ "$offline" = 1 ]; then
    from="$sets/latest.lock"
    echo "debian-host $version, --offline: building from the last package set that built"
else
    mirror=$(debian_mirror "$SUITE")
    if ! fetch "$mirror/dists/$SUITE/Release" "$work/Release" 2>"$work/fetch.err"; then
        from="$sets/latest.lock"
        echo "the mirror $mirror is unreachable ($(tail -n 1 "$work/fetch.err")):"
        echo "building from the last package set that built"
    fi
fi

hooks="$work/hooks"
mkdir -p "$hooks" "$work/pool"
# In the image: the boot-test init, and what the image is.
cat > "$hooks/customize.sh" <<HOOK
#!/bin/sh
set -eu
install -m 0755 recipes/stagegate-init "\$1/sbin/stagegate-init"
echo "debian-host $version" > "\$1/etc/stagegate-image"
echo debian-host > "\$1/etc/hostname"
chroot "\$1" dpkg-query -W -f '\${Package} \${Version} \${Architecture}\n' > "$work/installed"
HOOK
chmod +x "$hooks/customize.sh"

if [ -n "$from" ]; then
    [ -f "$from" ] ||
        cannot_run "no package set is cached for $image in $sets: build it once with the mirror reachable"
    # A local repository of exactly the locked .debs, each checked against its sha256.
    while read -r name ver arch sum; do
        case $name in '' | '#'*) continue ;; esac
        f="$cache/debs/$(debfile "$name" "$ver" "$arch")"
        [ -f "$f" ] || cannot_run "$name $ver ($arch) is locked but missing from the cache $cache/debs"
        echo "$sum  $f" | sha256sum -c --quiet - || cannot_run "the cache is corrupt: $f does not match its sha256 in $from"
        ln "$f" "$work/pool/" 2>/dev/null || cp "$f" "$work/pool/"
    done < "$from"
    # apt-ftparchive writes the index and a Release naming the suite, which mmdebstrap
    # selects the minbase packages by.
    (
        cd "$work/pool"
        apt-ftparchive packages . > Packages 2>/dev/null
        apt-ftparchive -o "APT::FTPArchive::Release::Suite=$SUITE" \
            -o "APT::FTPArchive::Release::Codename=$SUITE" release . > Release
    )
    # Every locked package is named: the archive's priorities (which pick minbase's
    # packages) are not in the .debs, so the set is given whole, and only it is there.
    locked=$(grep -v '^#' "$from" | cut -d' ' -f1 | paste -sd, -)
    mmdebstrap --quiet --variant=minbase --include="$locked" \
        --aptopt='Acquire::Languages "none"' \
        --customize-hook="$hooks/customize.sh \"\$1\"" \
        "$SUITE" "$work/root" "deb [trusted=yes] copy://$work/pool ./"
    pool="$work/pool"
else
    # Resolve from the mirror; the last set's .debs are handed to apt, which downloads
    # only what it lacks, and every .deb used is copied back into the cache.
    security=$(debian_mirror "$SUITE-security")
    mkdir -p "$work/archives"
    if [ -f "$sets/latest.lock" ]; then
        while read -r name ver arch sum; do
            case $name in '' | '#'*) continue ;; esac
            f="$cache/debs/$(debfile "$name" "$ver" "$arch")"
            [ -f "$f" ] && { ln "$f" "$work/archives/" 2>/dev/null || cp "$f" "$work/archives/"; }
        done < "$sets/latest.lock"
    fi
    mmdebstrap --quiet --variant=minbase --include="$packages" --skip=essential/unlink \
        --aptopt='Acquire::Languages "none"' \
        --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\"" \
        --setup-hook="sync-in $work/archives /var/cache/apt/archives" \
        --customize-hook="$hooks/customize.sh \"\$1\"" \
        --customize-hook="sync-out /var/cache/apt/archives $work/pool" \
        "$SUITE" "$work/root" \
        "deb $mirror $SUITE main" "deb $mirror $SUITE-updates main" "deb $security $SUITE-security main"
    pool="$work/pool"
fi

# The lock: every installed package and the sha256 of its .deb, which joins the cache.
echo "# $image $version: mmdebstrap --variant=minbase --include=$packages $SUITE" > "$work/packages.lock"
echo "# NAME VERSION ARCH SHA256-OF-THE-DEB" >> "$work/packages.lock"
sort "$work/installed" > "$work/installed.sorted"
while read -r name ver arch; do
    deb=$(debfile "$name" "$ver" "$arch")
    [ -f "$pool/$deb" ] || { echo "no .deb for the installed package $name $ver ($arch)" >&2; exit 1; }
    sum=$(sha256sum "$pool/$deb" | cut -d' ' -f1)
    if [ ! -f "$cache/debs/$deb" ]; then
        cp "$pool/$deb" "$cache/debs/$deb.tmp.$$"
        mv -f "$cache/debs/$deb.tmp.$$" "$cache/debs/$deb"
    fi
    echo "$name $ver $arch $sum" >> "$work/packages.lock"
done < "$work/installed.sorted"
if [ -n "$from" ]; then
    grep -v '^#' "$from" > "$work/want"
    grep -v '^#' "$work/packages.lock" > "$work/got"
    if ! diff -u "$work/want" "$work/got" >&2; then
        echo "the rebuild did not reproduce the package set of $from" >&2
        exit 1
    fi
fi
mkdir -p "$work/root/etc/stagegate"
cp "$work/packages.lock" "$work/root/etc/stagegate/packages.lock"

# ext4 from the directory (no loop mount), a quarter free, then qcow2.
size=$(du -sm "$work/root" | cut -f1)
size=$((size + size / 4 + 64))
mke2fs -q -F -t ext4 -L debian-host -d "$work/root" "$work/disk.raw" "${size}M" >/dev/null
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$STAGEGATE_OUT/disk.qcow2"
cp "$work/packages.lock" "$STAGEGATE_OUT/packages.lock"

# This version's set, and the newest set that built, for rebuilds without the mirror.
cp "$work/packages.lock" "$sets/$version.lock.tmp.$$" && mv -f "$sets/$version.lock.tmp.$$" "$sets/$version.lock"
cp "$work/packages.lock" "$sets/latest.lock.tmp.$$" && mv -f "$sets/latest.lock.tmp.$$" "$sets/latest.lock"
echo "built debian-host $version: $(grep -vc '^#' "$work/packages.lock") packages, kernel $(grep '^linux-image-[0-9]' "$work/packages.lock" | cut -d' ' -f1,2), ${size} MB filesystem"
