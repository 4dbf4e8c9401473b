#!/usr/bin/env bash
# The VM test bed itself: the guest runs this script as root on a 6.12
# kernel, where modprobe finds ublk_drv and nbd and their device nodes
# appear, the host's build of mirrord runs, the writable share carries a
# file back to the host, and a failing guest script fails vm_run.
# timeout: 240
if [[ -z ${BM_VM:-} ]]; then
    source "$(dirname "$0")/lib.sh"
    source "$BM_SRC/tests/integration/functions.sh"
    VM_TIMEOUT=180 vm_run "$0" guest-args "with space" || fail "the guest part failed (rc=$?)"
    assert_eq "$(cat "$VM_OUT/uname")" "$(cat "$VM_DIR/cache/kernel.ver")" \
        "kernel release written by the guest to the share"
    # A guest script's exit code comes back as vm_run's.
    rc=0
    VM_TIMEOUT=120 vm_run "$BM_SRC/tests/vm/test-vm-boot.sh" exit-code 7 >/dev/null || rc=$?
    assert_eq "$rc" 7 "vm_run returns the guest script's exit code"
    exit 0
fi

# ---- In the guest ----
source "$BM_SRC/tests/integration/functions.sh"
if [[ ${1:-} == exit-code ]]; then
    exit "$2"
fi
assert_eq "$#" 2 "number of arguments passed into the guest"
assert_eq "$2" "with space" "an argument with a space"
assert_eq "$(id -u)" 0 "uid in the guest"
assert_eq "$(pwd)" "$BM_SRC" "working directory in the guest"
kver=$(uname -r)
echo "guest kernel $kver, $(nproc) CPUs, $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB"
[[ $kver == 6.12.* ]] || fail "guest kernel is $kver, not 6.12"

modprobe ublk_drv || fail "modprobe ublk_drv failed"
[[ -c /dev/ublk-control ]] || fail "/dev/ublk-control missing after modprobe ublk_drv"
modprobe nbd || fail "modprobe nbd failed"
[[ -b /dev/nbd0 ]] || fail "/dev/nbd0 missing after modprobe nbd"
for m in loop ext4 overlay veth sch_netem drbd dm_flakey dm_dust 9p; do
    grep -q "^$m " /proc/modules || fail "module $m is not loaded"
done
[[ -c /dev/loop-control ]] || fail "/dev/loop-control missing"
grep -q '^1$' /proc/sys/kernel/io_uring_disabled 2>/dev/null &&
    fail "io_uring is disabled in the guest"

"$BM_BIN/mirrord" --help >/dev/null || fail "$BM_BIN/mirrord --help failed in the guest"
"$BM_BIN/mirrorctl" --help >/dev/null || fail "$BM_BIN/mirrorctl --help failed in the guest"

# The root is the host's, read-only underneath, writable on top.
[[ -f $BM_SRC/tests/vm/lib.sh ]] || fail "the repository is not visible in the guest"
touch "$BM_SRC/build/vm-guest-write-test" || fail "the overlay is not writable"
rm -f "$BM_SRC/build/vm-guest-write-test"
ip -o addr show lo | grep -q '127.0.0.1' || fail "loopback is not up in the guest"

uname -r >"$BM_VM_OUT/uname"
echo "guest part passed"
