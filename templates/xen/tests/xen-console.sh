# What a Xen boot's serial console says (sourced by the boot tests; no side effects, so
# that it is tested on canned consoles). QEMU exits 0 after a clean power-off and after a
# dom0 crash alike: the console is the only truth.

# console_crash CONSOLE: print the first line that means the hypervisor, dom0 or a guest
# crashed; status 0 when there is one.
console_crash() {
    tr -d '\r' < "$1" | awk '
        /Hardware Dom0 crashed|Kernel panic|Unhandled: vec|FATAL PAGE FAULT|Out of memory: Killed process/ { print; exit }
        /Panic on CPU/ { p = $0; getline why; sub(/^\(XEN\) */, "", why); print p " " why; exit }'
}

# console_verdict CONSOLE VERSION CHECK...: decide a boot from its console. Prints why it
# failed and returns 1, or returns 0 when the run passed: Xen's banner names the Debian
# package VERSION, dom0's init ran the job (stagegate-init: kernel ...), every CHECK
# (a fixed string) is on the console, the job exited 0, and nothing crashed.
console_verdict() {
    console=$1
    version=$2
    shift 2
    crash=$(console_crash "$console")
    if [ -n "$crash" ]; then
        echo "crashed: $crash"
        return 1
    fi
    banner=$(grep -m 1 'Xen version ' "$console" | tr -d '\r')
    if [ -z "$banner" ]; then
        echo "no Xen banner on the console: the hypervisor did not start"
        return 1
    fi
    case $banner in
    *"(Debian $version)"*) ;;
    *)
        echo "the hypervisor is not the component's version $version: $banner"
        return 1
        ;;
    esac
    grep -q '^stagegate-init: kernel ' "$console" || {
        echo "dom0 did not come up: its init never ran"
        return 1
    }
    for want in "$@"; do
        grep -qF -- "$want" "$console" || {
            echo "the console does not show: $want"
            return 1
        }
    done
    status=$(grep -m 1 '^stagegate-init: exit ' "$console" | tr -d '\r')
    if [ "$status" != "stagegate-init: exit 0" ]; then
        echo "the job in dom0 failed: ${status:-it did not finish}"
        return 1
    fi
    return 0
}
