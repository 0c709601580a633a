#!/bin/sh
# Build the host image: a minimal Debian root filesystem from real packages (mmdebstrap
# --variant=minbase plus recipes/IMAGE.packages), made into ext4 with `mke2fs -d` and
# converted to qcow2. IMAGE is the image being built (debian-host; the Xen example's
# xen-host builds with this recipe too); recipes/IMAGE.customize, where there is one, runs
# with the root file system's path as its argument once the packages are installed.
# Writes into $STAGEGATE_OUT:
#   disk.qcow2      the image
#   packages.lock   the exact package set: NAME VERSION ARCH SHA256-OF-THE-DEB, one a line
#   packages.tar    the package cache: packages.lock and debs/, every .deb of the set
#                   (build.cache: stagegate stores it beside the image, by digest)
#
# Where the packages come from:
#   - from the mirror (the point release and its security updates), by default;
#   - from the last-known-good package cache, $STAGEGATE_CACHE (the packages.tar of the
#     build the stage this build is for holds: the last set that passed its gate,
#     fetched from the artifact store by stagegate, on any runner), with --offline, or
#     when the mirror cannot be reached, or when it has moved on to another point
#     release than the one this image is based on. The result is exactly the cached set,
#     each .deb checked against its sha256 in the cached lock; nothing is downloaded.
# A download cache on this runner (recipes/debian.sh: deb_cache) spares downloading a
# .deb twice; nothing depends on it.
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
need tar tar
item=${STAGEGATE_ITEM:-images/debian-host}
image=${item#images/}
[ "$(id -u)" = 0 ] || cannot_run "$image: run the build as root (mmdebstrap root mode)"

version=${STAGEGATE_VERSION:-${STAGEGATE_IMAGE_DEBIAN_HOST_VERSION:?the image version is missing}}
# The point release this image is built from: its version starts with it (12.15-1 is
# built from 12.15, as its based-on says; poll keeps them together).
release=${version%%-*}
downloads="$(deb_cache)/debs"
mkdir -p "$downloads"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
packages=$(sed 's/#.*//' "recipes/$image.packages" | tr -s ' \t\n' ',' | sed 's/^,//; s/,$//')

# debfile NAME VERSION ARCH: apt's file name for a package.
debfile() { printf '%s_%s_%s.deb\n' "$1" "$(echo "$2" | sed 's/:/%3a/')" "$3"; }

# The last-known-good set, when the stage built for holds a build with a cache.
lkg=""
if [ -n "${STAGEGATE_CACHE:-}" ]; then
    lkg="$work/lkg"
    mkdir -p "$lkg"
    tar -xf "$STAGEGATE_CACHE" -C "$lkg" && [ -f "$lkg/packages.lock" ] ||
        cannot_run "the package cache of $image ${STAGEGATE_CACHE_VERSION:-} ($STAGEGATE_CACHE) is not a tar of packages.lock and debs/"
fi

# Why this build takes the cached set rather than the mirror's, if it does.
why=""
mirror=$(debian_mirror "$SUITE")
if [ "$offline" = 1 ]; then
    why="--offline"
elif ! fetch "$mirror/dists/$SUITE/Release" "$work/Release" 2>"$work/fetch.err"; then
    why="the mirror $mirror is unreachable ($(tail -n 1 "$work/fetch.err"))"
else
    served=$(release_version "$work/Release")
    if [ -n "$release" ] && [ "$served" != "$release" ]; then
        why="the mirror $mirror has moved on: it serves Debian ${served:-(no Version)}, this image is based on $release"
    fi
fi

hooks="$work/hooks"
mkdir -p "$hooks" "$work/pool"
# In the image: the boot-test init, and what the image is.
cat > "$hooks/customize.sh" <<HOOK
#!/bin/sh
set -eu
install -m 0755 recipes/stagegate-init "\$1/sbin/stagegate-init"
echo "$image $version" > "\$1/etc/stagegate-image"
echo $image > "\$1/etc/hostname"
if [ -f recipes/$image.customize ]; then sh recipes/$image.customize "\$1"; fi
chroot "\$1" dpkg-query -W -f '\${Package} \${Version} \${Architecture}\n' > "$work/installed"
HOOK
chmod +x "$hooks/customize.sh"

from=""
if [ -n "$why" ]; then
    [ -n "$lkg" ] || cannot_run "$image $version: $why, and no package set is cached for $image: the stage this build is for holds no build of it with a package cache (\$STAGEGATE_CACHE is unset); build it once with the mirror reachable"
    from="$lkg/packages.lock"
    echo "$image $version: $why: building from the last-known-good package set, that of $image ${STAGEGATE_CACHE_VERSION:-}"
    # What the package list asks for must be in the set: an offline build cannot add it.
    for p in $(echo "$packages" | tr ',' ' '); do
        grep -q "^$p " "$from" && continue
        msg="recipes/$image.packages asks for $p, which the last-known-good set ($image ${STAGEGATE_CACHE_VERSION:-}) does not have: build with the mirror to add it"
        [ "$offline" = 1 ] || cannot_run "$msg"
        echo "$msg" >&2
        exit 1
    done
    # A local repository of exactly the locked .debs, each checked against its sha256.
    while read -r name ver arch sum; do
        case $name in '' | '#'*) continue ;; esac
        f="$lkg/debs/$(debfile "$name" "$ver" "$arch")"
        [ -f "$f" ] || cannot_run "$name $ver ($arch) is locked but missing from the package cache of $image ${STAGEGATE_CACHE_VERSION:-}"
        echo "$sum  $f" | sha256sum -c --quiet - ||
            cannot_run "the package cache of $image ${STAGEGATE_CACHE_VERSION:-} is corrupt: $f does not match its sha256 in packages.lock"
        ln "$f" "$work/pool/"
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
else
    # Resolve from the mirror. apt is handed the .debs at hand (the last-known-good set,
    # this runner's downloads) and downloads only what it lacks.
    security=$(debian_mirror "$SUITE-security")
    mkdir -p "$work/archives"
    for f in "$downloads"/*.deb "$work"/lkg/debs/*.deb; do
        [ -f "$f" ] && { ln -f "$f" "$work/archives/" 2>/dev/null || cp "$f" "$work/archives/"; }
    done
    mmdebstrap --quiet --variant=minbase --include="$packages" --skip=essential/unlink \
        --aptopt='Acquire::Languages "none"' \
        --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\"" \
        --setup-hook="sync-in $work/archives /var/cache/apt/archives" \
        --customize-hook="$hooks/customize.sh \"\$1\"" \
        --customize-hook="sync-out /var/cache/apt/archives $work/pool" \
        "$SUITE" "$work/root" \
        "deb $mirror $SUITE main" "deb $mirror $SUITE-updates main" "deb $security $SUITE-security main"
fi

# The lock: every installed package and the sha256 of its .deb; the cache: those .debs.
echo "# $image $version: mmdebstrap --variant=minbase --include=$packages $SUITE" > "$work/packages.lock"
echo "# NAME VERSION ARCH SHA256-OF-THE-DEB" >> "$work/packages.lock"
mkdir -p "$work/cache/debs"
sort "$work/installed" > "$work/installed.sorted"
while read -r name ver arch; do
    deb=$(debfile "$name" "$ver" "$arch")
    [ -f "$work/pool/$deb" ] || { echo "no .deb for the installed package $name $ver ($arch)" >&2; exit 1; }
    sum=$(sha256sum "$work/pool/$deb" | cut -d' ' -f1)
    ln "$work/pool/$deb" "$work/cache/debs/$deb"
    if [ ! -f "$downloads/$deb" ]; then
        cp "$work/pool/$deb" "$downloads/$deb.tmp.$$" && mv -f "$downloads/$deb.tmp.$$" "$downloads/$deb"
    fi
    echo "$name $ver $arch $sum" >> "$work/packages.lock"
done < "$work/installed.sorted"
if [ -n "$from" ]; then
    grep -v '^#' "$from" > "$work/want"
    grep -v '^#' "$work/packages.lock" > "$work/got"
    if ! diff -u "$work/want" "$work/got" >&2; then
        echo "the rebuild did not reproduce the last-known-good package set of $image ${STAGEGATE_CACHE_VERSION:-}" >&2
        exit 1
    fi
fi
mkdir -p "$work/root/etc/stagegate"
cp "$work/packages.lock" "$work/root/etc/stagegate/packages.lock"
# The cache's lock is the set alone (no comments naming the version): the same set makes
# the same cache.
grep -v '^#' "$work/packages.lock" > "$work/cache/packages.lock"

# ext4 from the directory (no loop mount), a quarter free, then qcow2.
size=$(du -sm "$work/root" | cut -f1)
size=$((size + size / 4 + 64))
mke2fs -q -F -t ext4 -L "$image" -d "$work/root" "$work/disk.raw" "${size}M" >/dev/null
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$STAGEGATE_OUT/disk.qcow2"
cp "$work/packages.lock" "$STAGEGATE_OUT/packages.lock"
# The same set makes the same bytes (names sorted, no times, no owners): the store keeps
# one copy of a set however often it is rebuilt.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=a+rX,u+w,go-w \
    -C "$work/cache" -cf "$STAGEGATE_OUT/packages.tar" packages.lock debs
echo "built $image $version: $(grep -vc '^#' "$work/packages.lock") packages, kernel $(grep '^linux-image-[0-9]' "$work/packages.lock" | cut -d' ' -f1,2), ${size} MB filesystem"
