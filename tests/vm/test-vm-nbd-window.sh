#!/usr/bin/env bash
# The kernel NBD device is live (udev probes it at once) before mirrord
# lowers its max_sectors_kb to max-io-size: a request larger than
# max-io-size in that window is served in pieces, not refused.  The
# failpoint nbd/limit/slow keeps the window open 3 s; a 4 MiB direct write
# and read (the kernel's default limit is above max-io-size = 256K) go
# through it, and read back after the limit is set.
# timeout: 240
if [[ ${BM_VM:-0} != 1 ]]; then
    source "$(dirname "$0")/lib.sh"
    VM_TIMEOUT=210 vm_run "$0"
    exit
fi

source "$BM_SRC/tests/integration/functions.sh"
requires dd
bm_setup
modprobe nbd || fail "modprobe nbd failed"
C=$(bm_conf r0 frontend=nbd export-listen= max-io-size=256K)
bm_disk r0 64M
"$MIRRORCTL" -c "$C" create-md >/dev/null
BM_FAULTS="enable name=nbd/limit/slow" bm_start "$C" alpha
"$MIRRORCTL" -c "$C" --node alpha promote --force >"$T/promote.out" 2>&1 &
ppid=$!
dev=
bound() {
    local f
    for f in /sys/block/nbd*/size; do
        [[ $(<"$f") != 0 ]] && dev=/dev/$(basename "${f%/size}") && return 0
    done
    return 1
}
wait_for 20 bound || fail "no /dev/nbdN bound"
lim=$(<"/sys/block/${dev#/dev/}/queue/max_sectors_kb")
echo "$dev bound, max_sectors_kb $lim during the window"
((lim > 256)) || fail "the window was not hit: max_sectors_kb already $lim"
head -c $((4 << 20)) /dev/urandom >"$T/pattern"
dd if="$T/pattern" of="$dev" bs=4M count=1 oflag=direct status=none ||
    fail "a 4 MiB direct write in the window failed"
dd if="$dev" of="$T/back" bs=4M count=1 iflag=direct status=none ||
    fail "a 4 MiB direct read in the window failed"
cmp -s "$T/pattern" "$T/back" || fail "the read in the window differs"
wait "$ppid" || fail "promote failed: $(cat "$T/promote.out")"
lim=$(<"/sys/block/${dev#/dev/}/queue/max_sectors_kb")
assert_eq "$lim" 256 "max_sectors_kb once the device is up"
dd if="$dev" of="$T/back2" bs=4M count=1 iflag=direct status=none || fail "read after the window"
cmp -s "$T/pattern" "$T/back2" || fail "the data after the window differs"
"$MIRRORCTL" -c "$C" --node alpha demote || fail "demote"
bm_stop "$BM_PID"
cmp -s -n $((4 << 20)) "$T/pattern" "$T/r0.img" || fail "the backing file does not hold the write"
