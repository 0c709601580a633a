# boot_xen NAME CHECK...: boot Xen under qemu-system-x86_64 on a copy-on-write overlay of
# the host image, with the component's packages installed into it, and decide the run by
# its serial console (tests/xen-console.sh). Sourced by the boot tests; needs $work, and
# $work/job/run.sh, which dom0's init (/sbin/stagegate-init) runs from a second disk.
#
# What boots: the hypervisor from the component's artifact (xen.tar: its
# xen-hypervisor package's xen.gz, uncompressed: a multiboot ELF QEMU loads with -kernel)
# with the component's command line (xen.cmdline); dom0's kernel and initramfs from the
# host image's /boot, as multiboot modules; dom0's root is a qcow2 overlay on the host
# image (the image itself is never written). The job disk carries the component's packages
# unpacked (xen/), which dom0 installs into the overlay before it starts Xen's daemons.
#
# Whose fault it is. The run is bounded (BOOT_TIMEOUT seconds, default 400). A run that
# hangs, or crashes (the console shows a dom0 crash, a kernel panic, an unhandled
# exception), or does not show what the test expects is the candidate's failure (exit 1),
# with the end of the console. What this runner lacks is not: a missing tool, or an
# emulator that cannot start or crashes, exits 125 ("could not test", recorded as
# `error`), so the candidate waits for a runner that can test it.
#
# KVM or TCG: as the Debian example's boots (STAGEGATE_DEBIAN_KVM: auto, try or off), KVM
# only where it works: a KVM boot that ends before dom0's job finished, stays silent for
# 10 s or stops for 60 s is taken for an unusable KVM and the run starts again under TCG,
# where the CPU is `qemu64,+svm` (`max` crashes dom0 under TCG: SMAP).
. ./recipes/debian.sh
. ./tests/xen-console.sh
. ./tests/qemu.sh

boot_xen() {
    name=$1
    shift
    need qemu-img qemu-utils
    need debugfs e2fsprogs
    need mke2fs e2fsprogs
    need dpkg-deb dpkg
    host=${STAGEGATE_IMAGE_XEN_HOST_ARTIFACT:?the host image has no artifact}
    xen_version=${STAGEGATE_COMPONENT_XEN_VERSION:?}
    bound=${BOOT_TIMEOUT:-400}
    kvm_wanted
    emulator_starts

    # The component: its packages unpacked for dom0, the hypervisor and its command line.
    mkdir -p "$work/xen" "$work/job/xen"
    tar -xf "${STAGEGATE_COMPONENT_XEN_ARTIFACT:?the component xen has no artifact}" -C "$work/xen"
    for deb in "$work"/xen/debs/*.deb; do
        dpkg-deb -x "$deb" "$work/job/xen"
    done
    hv=$(ls "$work"/job/xen/boot/xen-*-amd64.gz 2>/dev/null | head -n 1)
    [ -n "$hv" ] || { echo "$name: the component's packages hold no hypervisor (boot/xen-*-amd64.gz)" >&2; exit 1; }
    gzip -dc "$hv" > "$work/xen.elf"
    rm -rf "$work/job/xen/boot" "$work/job/xen/usr/share/doc" "$work/job/xen/usr/share/man"
    xen_cmdline=$(grep -v '^#' "$work/xen/xen.cmdline" | tr '\n' ' ' | sed 's/ *$//')

    # dom0's kernel and initramfs, from the host image.
    qemu-img convert -f qcow2 -O raw "$host" "$work/root.raw"
    kernel=$(debugfs -R "ls -p /boot" "$work/root.raw" 2>/dev/null | awk -F/ '$6 ~ /^vmlinuz-/ { print $6 }' | sort -V | tail -n 1)
    [ -n "$kernel" ] || { echo "$name: no kernel in /boot of $host" >&2; exit 1; }
    debugfs -R "dump /boot/$kernel $work/vmlinuz" "$work/root.raw" 2>/dev/null
    debugfs -R "dump /boot/initrd.img-${kernel#vmlinuz-} $work/initrd" "$work/root.raw" 2>/dev/null
    [ -s "$work/initrd" ] || { echo "$name: no initrd.img-${kernel#vmlinuz-} in /boot of $host" >&2; exit 1; }
    rm -f "$work/root.raw"

    qemu-img create -q -f qcow2 -b "$host" -F qcow2 "$work/overlay.qcow2"
    size=$(du -sm "$work/job" | cut -f1)
    mke2fs -q -F -t ext4 -d "$work/job" "$work/job.img" "$((size + size / 2 + 16))M" >/dev/null 2>&1

    console=$work/console.log
    dom0="$work/vmlinuz root=/dev/vda rw console=hvc0 init=/sbin/stagegate-init panic=-1"
    start=$(date +%s)
    qemu=""
    if [ "$kvm" = yes ]; then
        echo "$name: booting Xen $xen_version ($xen_cmdline) with dom0 $kernel under KVM (at most ${bound}s)"
        run_vm "-enable-kvm -cpu host" probe
        unusable=""
        case $qemu in
        silent) unusable="nothing on the console in ${KVM_SILENT}s" ;;
        stalled) unusable="the console stopped for ${KVM_STALLED}s" ;;
        kvm-error) unusable="QEMU reported: $(grep -m 1 'KVM' "$work/qemu.err")" ;;
        timeout) ;;
        *) finished || unusable="QEMU ended with status $qemu before dom0's job finished" ;;
        esac
        if [ -n "$unusable" ]; then
            echo "$name: KVM is unusable here ($unusable); booting under TCG instead"
            qemu=""
        fi
    fi
    if [ -z "$qemu" ]; then
        echo "$name: booting Xen $xen_version ($xen_cmdline) with dom0 $kernel under TCG (at most ${bound}s)"
        run_vm "-accel tcg -cpu qemu64,+svm" ""
    fi
    took=$(($(date +%s) - start))
    touch "$console"
    if [ "$qemu" = timeout ]; then
        crash=$(console_crash "$console")
        echo "$name: Xen did not finish within ${bound}s${crash:+ ($crash)} (Xen $xen_version, command line: $xen_cmdline); the end of the console:"
        tail -n 12 "$console" | tr -d '\r'
        exit 1
    fi
    if ! finished && [ -z "$(console_crash "$console")" ]; then
        # Not the candidate: the emulator could not execute (126, 127) or crashed (a signal).
        if [ "$qemu" -eq 126 ] || [ "$qemu" -eq 127 ] || [ "$qemu" -gt 128 ]; then
            cannot_run "$name: qemu-system-x86_64 ended with status $qemu after ${took}s: the emulator could not run or crashed (its messages are above), not the candidate"
        fi
    fi
    if ! why=$(console_verdict "$console" "$xen_version" "$@"); then
        echo "$name: $why (Xen $xen_version, command line: $xen_cmdline; QEMU status $qemu after ${took}s); the end of the console:"
        tail -n 12 "$console" | tr -d '\r'
        exit 1
    fi
    echo "$name: Xen booted, dom0 ran its checks and powered off in ${took}s; what it reported:"
    tr -d '\r' < "$console" |
        grep -E '^\(XEN\) Xen version |^stagegate-init: |^xen-test: |^xl: (info: xen_(version|commandline)|list|create)|^guest: '
}

# finished: dom0's init reported the job's exit status, or something crashed.
finished() {
    grep -q '^stagegate-init: exit \|Hardware Dom0 crashed\|Kernel panic' "$console" 2>/dev/null
}

# run_vm ACCEL [probe]: run the machine and watch it (watch_vm in tests/qemu.sh): $qemu
# becomes its exit status, or `timeout`, or with probe (KVM) `silent`, `stalled` or
# `kvm-error`.
run_vm() {
    rm -f "$console" "$work/qemu.err"
    # shellcheck disable=SC2086
    (exec qemu-system-x86_64 $1 -m 1536 -smp 2 -no-reboot \
        -display none -monitor none -serial "file:$console" \
        -kernel "$work/xen.elf" -append "$xen_cmdline" \
        -initrd "$dom0,$work/initrd" \
        -drive "file=$work/overlay.qcow2,format=qcow2,if=virtio" \
        -drive "file=$work/job.img,format=raw,if=virtio,readonly=on" \
        -device virtio-rng-pci 2>"$work/qemu.err") &
    watch_vm "$!" "$2"
}

# dom0_job: the start of the job dom0 runs (run.sh on the job disk): install the
# component's packages (unpacked on the job disk) into the overlay, start Xen's daemons,
# show `xl info` and `xl list`.
dom0_job() {
    mkdir -p "$work/job"
    cat > "$work/job/run.sh" <<'RUN'
set -u
# The component's files over the host's (/lib is a link to /usr/lib: keep such links).
tar -C ./xen -cf - . | tar -C / -xf - --keep-directory-symlink || exit 1
ldconfig
# What the packages' scripts and the init system would make: dirs for logs, state, locks.
mkdir -p /var/log/xen /var/lib/xen /run/lock
echo "xen-test: installed $(ls /usr/lib/xen-*/bin/xl 2>/dev/null)"
# Entropy from the host (virtio-rng): xenstored waits for it otherwise, minutes under TCG.
modprobe virtio_rng 2>/dev/null
timeout 120 /etc/init.d/xen start || { echo "xen-test: /etc/init.d/xen start failed"; exit 1; }
xl info | sed 's/^/xl: info: /'
xl list | sed 's/^/xl: list: /'
RUN
}
