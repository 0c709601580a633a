# Helpers shared by the example tests (sourced, not run).

# raw_of QCOW2: convert a qcow2 disk to a raw file in $work and print its path.
raw_of() {
    qemu-img convert -f qcow2 -O raw "$1" "$work/$(basename "$1").$$.raw"
    echo "$work/$(basename "$1").$$.raw"
}

# run_component: fetch the component at the pinned commit and run it.
run_component() {
    git clone -q "${STAGEGATE_COMPONENT_HELLO_GIT:?}" "$work/hello"
    git -C "$work/hello" -c advice.detachedHead=false checkout -q "${STAGEGATE_COMPONENT_HELLO_COMMIT:?}"
    "$work/hello/hello.sh"
}
