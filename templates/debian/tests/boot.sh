# boot_image QCOW2 NAME: boot a disk image under qemu-system-x86_64 (KVM when /dev/kvm can
# be opened, TCG otherwise) with the kernel and initramfs found in its /boot, the root
# file system on virtio and the serial console in $work/console.log. The image's
# /sbin/stagegate-init reports the kernel, runs the job disk's run.sh (the files in
# $work/job) and powers off. Sourced by the boot tests; needs $work.
#
# The boot is bounded here, well inside the job's timeout (BOOT_TIMEOUT seconds, default
# 300): a boot that does not finish is a failure of the image,
# reported with the end of the console log. A missing tool exits 127, which stagegate
# records as `error` (could not run), not as a failure of the image.
. ./recipes/debian.sh

boot_image() {
    need qemu-system-x86_64 qemu-system-x86
    need qemu-img qemu-utils
    need debugfs e2fsprogs
    need mke2fs e2fsprogs
    disk=$1
    name=$2
    qemu-img convert -f qcow2 -O raw "$disk" "$work/root.raw"
    kernel=$(debugfs -R "ls -p /boot" "$work/root.raw" 2>/dev/null | awk -F/ '$6 ~ /^vmlinuz-/ { print $6 }' | sort -V | tail -n 1)
    [ -n "$kernel" ] || { echo "$name: no kernel in /boot of $disk" >&2; exit 1; }
    initrd="initrd.img-${kernel#vmlinuz-}"
    debugfs -R "dump /boot/$kernel $work/vmlinuz" "$work/root.raw" 2>/dev/null
    debugfs -R "dump /boot/$initrd $work/initrd" "$work/root.raw" 2>/dev/null
    [ -s "$work/initrd" ] || { echo "$name: no $initrd in /boot of $disk" >&2; exit 1; }
    rm -f "$work/root.raw"
    mke2fs -q -F -t ext4 -d "$work/job" "$work/job.img" 16M >/dev/null 2>&1

    bound=${BOOT_TIMEOUT:-300}
    start=$(date +%s)
    qemu=""
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        # A kernel under KVM writes to its console within a second; a nested or broken
        # KVM can hang silently. No console output in 10 seconds: boot under TCG instead.
        echo "$name: booting $kernel from $disk under KVM (at most ${bound}s)"
        run_vm "-enable-kvm -cpu host" 10
        [ -n "$qemu" ] || echo "$name: KVM printed nothing in 10s; booting under TCG instead"
    fi
    if [ -z "$qemu" ]; then
        echo "$name: booting $kernel from $disk under TCG (at most ${bound}s)"
        run_vm "-cpu max" ""
    fi
    took=$(($(date +%s) - start))
    console=$work/console.log
    touch "$console"
    if [ "$qemu" = 124 ]; then
        echo "$name: the image did not finish booting within ${bound}s; the end of its console:"
        tail -n 15 "$console"
        exit 1
    fi
    if ! grep -q '^stagegate-init: exit ' "$console"; then
        echo "$name: qemu ended (status $qemu) after ${took}s before the boot check ran; the end of its console:"
        tail -n 15 "$console"
        exit 1
    fi
    echo "$name: booted and powered off in ${took}s; what it reported:"
    grep -v '^\[' "$console" | tr -d '\r' | sed -n '/^stagegate-init: kernel/,$p'
}

# run_vm ACCEL [PROBE]: run the VM prepared by boot_image for at most $bound seconds and
# set $qemu to its exit status (124: it did not finish in time). With PROBE, give up
# after PROBE seconds without console output and leave $qemu empty.
run_vm() {
    rm -f "$work/console.log"
    # shellcheck disable=SC2086
    (exec qemu-system-x86_64 $1 -m 1024 -smp 2 -no-reboot \
        -display none -monitor none -serial "file:$work/console.log" \
        -kernel "$work/vmlinuz" -initrd "$work/initrd" \
        -append "root=/dev/vda ro console=ttyS0 init=/sbin/stagegate-init panic=-1" \
        -drive "file=$disk,format=qcow2,if=virtio,snapshot=on" \
        -drive "file=$work/job.img,format=raw,if=virtio,readonly=on") &
    vm=$!
    waited=0
    while kill -0 "$vm" 2>/dev/null; do
        if [ -n "$2" ] && [ "$waited" -ge "$2" ] && [ ! -s "$work/console.log" ]; then
            kill -KILL "$vm" 2>/dev/null || true
            wait "$vm" 2>/dev/null || true
            qemu=""
            return
        fi
        if [ "$waited" -ge "$bound" ]; then
            kill -KILL "$vm" 2>/dev/null || true
            wait "$vm" 2>/dev/null || true
            qemu=124
            return
        fi
        sleep 1
        waited=$((waited + 1))
    done
    set +e
    wait "$vm"
    qemu=$?
    set -e
}

# job_component: put the component, at its pinned commit, on the job disk.
job_component() {
    mkdir -p "$work/job"
    git clone -q "${STAGEGATE_COMPONENT_HELLO_GIT:?}" "$work/job/hello"
    git -C "$work/job/hello" -c advice.detachedHead=false checkout -q "${STAGEGATE_COMPONENT_HELLO_COMMIT:?}"
    rm -rf "$work/job/hello/.git"
}

# booted_ok: the boot reported a status of 0 and the lines given.
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
