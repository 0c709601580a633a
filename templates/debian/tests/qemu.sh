# The QEMU side of the boot tests, sourced by tests/boot.sh (the Debian example) and
# tests/xen-boot.sh (the Xen example): whether to try KVM, whether the emulator can start
# at all, and watching a running machine with the KVM probe (see tests/boot.sh). Needs
# $work, $console, $bound and cannot_run (recipes/debian.sh).

# A boot under KVM is taken for a hang when the console is still empty after KVM_SILENT
# seconds (a kernel writes to it within one under KVM), or when it has not grown for
# KVM_STALLED seconds (the image's check writes as it runs).
KVM_SILENT=10
KVM_STALLED=60

# kvm_wanted: set $kvm to yes when the boot tries KVM first (STAGEGATE_DEBIAN_KVM).
kvm_wanted() {
    kvm=no
    case ${STAGEGATE_DEBIAN_KVM:-auto} in
    auto) if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then kvm=yes; fi ;;
    try) kvm=yes ;;
    off) ;;
    *) cannot_run "STAGEGATE_DEBIAN_KVM is '$STAGEGATE_DEBIAN_KVM' on this runner: use auto, try or off" ;;
    esac
}

# emulator_starts: exit 125 unless qemu-system-x86_64 is there and can create a machine
# under TCG (firmware found, nothing missing): it is started paused and told to quit over
# QMP, which takes a fraction of a second and depends on no timing.
emulator_starts() {
    command -v qemu-system-x86_64 >/dev/null 2>&1 ||
        cannot_run "qemu-system-x86_64 is missing: install it (Debian: apt-get install qemu-system-x86)"
    started=0
    printf '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n' |
        timeout 60 qemu-system-x86_64 -accel tcg -m 64 -nodefaults -display none -S -qmp stdio \
            >/dev/null 2>"$work/qemu.err" || started=$?
    if [ "$started" != 0 ]; then
        cat "$work/qemu.err" >&2
        cannot_run "qemu-system-x86_64 cannot start a machine (status $started): fix or reinstall it (Debian: apt-get install qemu-system-x86)"
    fi
}

# watch_vm PID [probe]: wait for the machine QEMU runs as PID (its messages going to
# $work/qemu.err) for at most $bound seconds and set $qemu to its exit status, or to
# `timeout` when it did not finish in time. With probe (KVM), stop early and set $qemu to
# `silent` (no console output in $KVM_SILENT s), `stalled` (none for $KVM_STALLED s) or
# `kvm-error` (QEMU reported one). QEMU's own messages go to the job's log.
watch_vm() {
    vm=$1
    waited=0
    size=0
    grew=0
    qemu=""
    while kill -0 "$vm" 2>/dev/null; do
        if [ -n "${2:-}" ]; then
            now=0
            [ -f "$console" ] && now=$(($(wc -c < "$console")))
            if [ "$now" != "$size" ]; then
                size=$now
                grew=$waited
            fi
            if [ "$size" = 0 ] && [ "$waited" -ge "$KVM_SILENT" ]; then
                qemu=silent
            elif [ $((waited - grew)) -ge "$KVM_STALLED" ]; then
                qemu=stalled
            elif grep -q 'KVM internal error\|KVM: entry failed' "$work/qemu.err" 2>/dev/null; then
                qemu=kvm-error
            fi
        fi
        if [ -z "$qemu" ] && [ "$waited" -ge "$bound" ]; then
            qemu=timeout
        fi
        if [ -n "$qemu" ]; then
            kill -KILL "$vm" 2>/dev/null || true
            wait "$vm" 2>/dev/null || true
            cat "$work/qemu.err" >&2
            return
        fi
        sleep 1
        waited=$((waited + 1))
    done
    set +e
    wait "$vm"
    qemu=$?
    set -e
    cat "$work/qemu.err" >&2
}
