# boot_image QCOW2 NAME: boot a disk image under qemu-system-x86_64 with the kernel and
# initramfs found in its /boot, the root file system on virtio and the serial console in
# $work/console.log. The image's /sbin/stagegate-init reports the kernel, runs the job
# disk's run.sh (the files in $work/job) and powers off. Sourced by the boot tests; needs
# $work.
#
# Whose fault it is. The boot is bounded here, well inside the job's timeout (BOOT_TIMEOUT
# seconds, default 300): a boot that does not finish, or that ends before the image's
# check ran, is a failure of the image (exit 1), reported with the end of the console
# log. What this runner lacks is not: a missing tool, or an emulator that cannot start
# (not installed, cannot execute, cannot create a machine) or that crashes, exits 125,
# which stagegate records as `error` ("could not test"): the candidate waits for a runner
# that can test it instead of being rejected.
#
# KVM or TCG. KVM is used only where it works. STAGEGATE_DEBIAN_KVM (passed on to jobs by
# env.pass in stagegate.yaml) says when to try it: `auto` (the default) when /dev/kvm can
# be opened, `try` even when it cannot (the suite forces the KVM path so, on any machine),
# `off` never. The first seconds of the boot under KVM are the probe: QEMU ending before
# the image's check ran (an abort such as nested KVM's "failed to set MSR 0x10a", an error
# opening /dev/kvm, a reset), nothing on the console for 10 s, a console that stops for
# 60 s (a silent hang), or QEMU reporting a KVM error (it pauses the machine then) mean
# KVM is unusable here: the boot starts again under TCG, and the verdict rests on that.
. ./recipes/debian.sh
. ./tests/qemu.sh


boot_image() {
    need qemu-img qemu-utils
    need debugfs e2fsprogs
    need mke2fs e2fsprogs
    disk=$1
    name=$2
    bound=${BOOT_TIMEOUT:-300}
    kvm_wanted
    emulator_starts
    qemu-img convert -f qcow2 -O raw "$disk" "$work/root.raw"
    kernel=$(debugfs -R "ls -p /boot" "$work/root.raw" 2>/dev/null | awk -F/ '$6 ~ /^vmlinuz-/ { print $6 }' | sort -V | tail -n 1)
    [ -n "$kernel" ] || { echo "$name: no kernel in /boot of $disk" >&2; exit 1; }
    initrd="initrd.img-${kernel#vmlinuz-}"
    debugfs -R "dump /boot/$kernel $work/vmlinuz" "$work/root.raw" 2>/dev/null
    debugfs -R "dump /boot/$initrd $work/initrd" "$work/root.raw" 2>/dev/null
    [ -s "$work/initrd" ] || { echo "$name: no $initrd in /boot of $disk" >&2; exit 1; }
    rm -f "$work/root.raw"
    mke2fs -q -F -t ext4 -d "$work/job" "$work/job.img" 16M >/dev/null 2>&1

    console=$work/console.log
    start=$(date +%s)
    qemu=""
    if [ "$kvm" = yes ]; then
        echo "$name: booting $kernel from $disk under KVM (at most ${bound}s)"
        run_vm "-enable-kvm -cpu host" probe
        unusable=""
        case $qemu in
        silent) unusable="nothing on the console in ${KVM_SILENT}s" ;;
        stalled) unusable="the console stopped for ${KVM_STALLED}s" ;;
        kvm-error) unusable="QEMU reported: $(grep -m 1 'KVM' "$work/qemu.err")" ;;
        timeout) ;;
        *) booted || unusable="QEMU ended with status $qemu before the boot check ran" ;;
        esac
        if [ -n "$unusable" ]; then
            echo "$name: KVM is unusable here ($unusable); booting under TCG instead"
            qemu=""
        fi
    fi
    if [ -z "$qemu" ]; then
        echo "$name: booting $kernel from $disk under TCG (at most ${bound}s)"
        run_vm "-cpu max" ""
    fi
    took=$(($(date +%s) - start))
    touch "$console"
    if [ "$qemu" = timeout ]; then
        echo "$name: the image did not finish booting within ${bound}s; the end of its console:"
        tail -n 15 "$console"
        exit 1
    fi
    if ! booted; then
        # Not the image: the emulator could not execute (126, 127) or crashed (a signal).
        if [ "$qemu" -eq 126 ] || [ "$qemu" -eq 127 ] || [ "$qemu" -gt 128 ]; then
            cannot_run "$name: qemu-system-x86_64 ended with status $qemu under TCG after ${took}s: the emulator could not run or crashed (its messages are above), not the image"
        fi
        echo "$name: qemu ended (status $qemu) after ${took}s before the boot check ran; the end of its console:"
        tail -n 15 "$console"
        exit 1
    fi
    echo "$name: booted and powered off in ${took}s; what it reported:"
    grep -v '^\[' "$console" | tr -d '\r' | sed -n '/^stagegate-init: kernel/,$p'
}

# booted: the image's check ran (stagegate-init reported its exit status).
booted() {
    grep -q '^stagegate-init: exit ' "$console" 2>/dev/null
}

# run_vm ACCEL [probe]: run the VM prepared by boot_image and watch it (watch_vm in
# tests/qemu.sh): $qemu becomes its exit status, or `timeout`, or with probe (KVM)
# `silent`, `stalled` or `kvm-error`.
run_vm() {
    rm -f "$console" "$work/qemu.err"
    # shellcheck disable=SC2086
    (exec qemu-system-x86_64 $1 -m 1024 -smp 2 -no-reboot \
        -display none -monitor none -serial "file:$console" \
        -kernel "$work/vmlinuz" -initrd "$work/initrd" \
        -append "root=/dev/vda ro console=ttyS0 init=/sbin/stagegate-init panic=-1" \
        -drive "file=$disk,format=qcow2,if=virtio,snapshot=on" \
        -drive "file=$work/job.img,format=raw,if=virtio,readonly=on" 2>"$work/qemu.err") &
    watch_vm "$!" "$2"
}

# job_component: put the component, at its pinned commit, on the job disk.
job_component() {
    mkdir -p "$work/job"
    git clone -q "${STAGEGATE_COMPONENT_HELLO_GIT:?}" "$work/job/hello"
    git -C "$work/job/hello" -c advice.detachedHead=false checkout -q "${STAGEGATE_COMPONENT_HELLO_COMMIT:?}"
    rm -rf "$work/job/hello/.git"
}

# expect_console LINE...: the boot reported a status of 0 and the lines given.
expect_console() {
    for want in "$@"; do
        grep -q -- "$want" "$work/console.log" || {
            echo "the console does not show: $want"
            exit 1
        }
    done
    grep -q '^stagegate-init: exit 0' "$work/console.log" || {
        echo "the job inside the image failed: $(grep '^stagegate-init: exit' "$work/console.log")"
        exit 1
    }
}
