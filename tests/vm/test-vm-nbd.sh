#!/usr/bin/env bash
# frontend = nbd (the kernel's /dev/nbdN over netlink) in a VM with an nbd
# kernel.  Without the module (and no way to load it) mirrord refuses to
# start, and says why.  One
# node: the device is bound only while primary, with the geometry and flags
# the daemon announces; mkfs.ext4, mount, files written and synced; demote is
# refused while mounted and unbinds the device once unmounted; promoted
# again, the files read back, e2fsck is clean; after kill -9 the device's
# I/O fails at once, and the restarted daemon disconnects the leftover
# device; after a clean stop the backing file itself holds the file system.  Then two nodes on 127.0.0.1,
# protocol sync: mkfs, mount, write, sync, unmount on the primary's
# /dev/nbdN, and both disks' data areas are equal.  Last, two nodes with
# protocol async and a small max-async-lag: a write that waits for lag room
# while the peer is stopped is still in the write path when demote has
# disconnected the device; demote fails after its 10 s drain and the node
# stays primary, and once the peer resumes, demote succeeds.
# timeout: 420
if [[ ${BM_VM:-0} != 1 ]]; then
    source "$(dirname "$0")/lib.sh"
    VM_TIMEOUT=390 vm_run "$0"
    exit
fi

source "$BM_SRC/tests/integration/functions.sh"
source "$BM_SRC/tests/integration/repl.sh"
requires mkfs.ext4
requires e2fsck
bm_setup

# The device's size in bytes (0 while unbound).
nbd_size() { blockdev --getsize64 "$1" 2>/dev/null || echo 0; }
# Fails unless no /dev/nbdN is bound.
nbd_assert_unbound() {
    local f
    for f in /sys/block/nbd*/size; do
        [[ $(<"$f") == 0 ]] || fail "$1: ${f%/size} still bound ($(<"$f") sectors)"
    done
}
# Checksums of every file under a mount point, in a stable order.
sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
step() { echo "=== $*"; }

# ---- No nbd module: refused at start, before any disk is touched ----
step "mirrord without the nbd module"
C=$(bm_conf r0 frontend=nbd export-listen= queues=2)  # two kernel connections
bm_disk r0 64M
"$MIRRORCTL" -c "$C" create-md >/dev/null
rmmod nbd || fail "cannot unload the nbd module"
# Asking for the family would load the module (its netlink alias): not now.
modprobe_path=$(</proc/sys/kernel/modprobe)
echo /nonexistent >/proc/sys/kernel/modprobe
rc=0
out=$(timeout 60 "$MIRRORD" -c "$C" --node alpha --foreground 2>&1) || rc=$?
echo "$modprobe_path" >/proc/sys/kernel/modprobe
assert_eq "$rc" 1 "mirrord's exit code without the nbd module"
assert_contains "$out" "nbd module not loaded: generic netlink family 'nbd' not found" \
    "mirrord's message without the nbd module"
modprobe nbd || fail "modprobe nbd failed"
[[ -b /dev/nbd0 ]] || fail "/dev/nbd0 missing after modprobe nbd"

# ---- One node ----
step "one node: start, promote"
bm_start "$C" alpha
P=$BM_PID
nbd_assert_unbound "secondary after start"
assert_eq "$(bm_status_field "$C" device)" null "status device while secondary"

"$MIRRORCTL" -c "$C" promote --force
dev=$(bm_status_field "$C" device)
[[ $dev =~ ^/dev/nbd[0-9]+$ ]] || fail "status device after promote: '$dev'"
[[ -b $dev ]] || fail "$dev is not a block device after promote"
sys=/sys/block/${dev#/dev/}
size=$(bm_status_field "$C" size_bytes)
assert_eq "$(nbd_size "$dev")" $((size / 4096 * 4096)) "device size"
assert_eq "$(<"$sys/queue/logical_block_size")" 4096 "logical block size"
assert_eq "$(<"$sys/queue/write_cache")" "write back" "a volatile cache: FLUSH reaches mirrord"
assert_eq "$(<"$sys/queue/fua")" 1 "FUA reaches mirrord"
assert_eq "$(<"$sys/queue/io_timeout")" $((7 * 24 * 3600 * 1000)) "request timeout (a week)"
(( $(<"$sys/queue/max_sectors_kb") <= 1024 )) ||
    fail "max_sectors_kb $(<"$sys/queue/max_sectors_kb") above max-io-size (1M)"
(( $(<"$sys/queue/discard_max_bytes") > 0 )) || fail "no discard on $dev"
assert_eq "$(<"$sys/backend")" "blkmirror:r0:$T/r0.img" "backend identifier"

step "one node: mkfs, mount, write"
mkfs.ext4 -q -F "$dev"
mkdir -p "$T/mnt"
mount "$dev" "$T/mnt"
for i in 1 2 3 4; do
    dd if=/dev/urandom of="$T/mnt/f$i" bs=64k count=$((i * 12)) status=none
done
dd if=/dev/urandom of="$T/mnt/direct" bs=1M count=4 oflag=direct status=none
cp -r "$BM_SRC/daemon" "$T/mnt/src"
sync
sums "$T/mnt" >"$T/sums"

step "one node: demote refused while mounted"
rc=0
out=$("$MIRRORCTL" -c "$C" demote 2>&1) || rc=$?
assert_eq "$rc" 1 "demote's exit code while mounted"
assert_contains "$out" "device $dev is in use \(mounted or open exclusively\)" "demote refusal"
assert_eq "$(bm_status_field "$C" role)" primary "still primary after the refused demote"
(( $(nbd_size "$dev") > 0 )) || fail "$dev unbound after a refused demote"
echo still-writable >"$T/mnt/after-refused-demote"
umount "$T/mnt"

step "one node: demote, promote again, read back"
"$MIRRORCTL" -c "$C" demote
nbd_assert_unbound "after demote"
assert_eq "$(bm_status_field "$C" device)" null "status device after demote"
assert_eq "$(bm_status_field "$C" role)" secondary "role after demote"

"$MIRRORCTL" -c "$C" promote
dev=$(bm_status_field "$C" device)
[[ $dev =~ ^/dev/nbd[0-9]+$ ]] || fail "status device after the second promote: '$dev'"
e2fsck -fn "$dev" >"$T/fsck.txt" 2>&1 || { cat "$T/fsck.txt"; fail "e2fsck -n found errors"; }
mount "$dev" "$T/mnt"
(cd "$T/mnt" && sha256sum --quiet -c "$T/sums") || fail "files differ after demote/promote"
assert_eq "$(cat "$T/mnt/after-refused-demote")" still-writable \
    "the write after the refused demote"
umount "$T/mnt"

step "one node: kill -9 while primary, restart"
bm_kill9 "$P"
# Nothing reconnects the kernel's sockets: I/O fails at once, never hangs.
rc=0
timeout 30 dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null || rc=$?
((rc != 0 && rc != 124)) || fail "reading $dev after kill -9: rc=$rc (expected an I/O error)"
bm_start "$C" alpha
P=$BM_PID
assert_contains "$T/r0-alpha.log" "nbd: $dev was left bound by a mirrord of this resource" \
    "the leftover device is found at restart"
nbd_assert_unbound "after the restart"
assert_eq "$(bm_status_field "$C" role)" secondary "role after the restart"
"$MIRRORCTL" -c "$C" promote
dev=$(bm_status_field "$C" device)
[[ $dev =~ ^/dev/nbd[0-9]+$ ]] || fail "status device after promote: '$dev'"
mount "$dev" "$T/mnt"
(cd "$T/mnt" && sha256sum --quiet -c "$T/sums") || fail "files differ after kill -9"
umount "$T/mnt"

step "one node: clean stop while primary"
bm_stop "$P"
nbd_assert_unbound "after a clean stop"
# The data area of the backing file is the file system itself.
e2fsck -fn "$T/r0.img" >"$T/fsck-img.txt" 2>&1 ||
    { cat "$T/fsck-img.txt"; fail "e2fsck -n on the backing file found errors"; }
mount -o ro,loop "$T/r0.img" "$T/mnt"
(cd "$T/mnt" && sha256sum --quiet -c "$T/sums") || fail "the backing file's files differ"
umount "$T/mnt"
rm -f "$T"/r0.* "$T/ports"

# ---- Two nodes, protocol sync ----
step "two nodes: initial sync"
bm_pair 64M protocol=sync frontend=nbd export-listen=
bm_pair_initial_sync
dev=$(field "$CA" device)
[[ $dev =~ ^/dev/nbd[0-9]+$ ]] || fail "alpha's device after promote: '$dev'"
assert_eq "$(field "$CB" device)" null "beta (secondary) has no device"

step "two nodes: mkfs, mount, write on alpha's $dev"
mkfs.ext4 -q -F "$dev"
mount "$dev" "$T/mnt"
for i in 1 2 3; do
    dd if=/dev/urandom of="$T/mnt/g$i" bs=64k count=$((i * 16)) status=none
done
dd if=/dev/urandom of="$T/mnt/synced" bs=64k count=8 conv=fsync status=none
cp -r "$BM_SRC/ublk" "$T/mnt/src"
sync
umount "$T/mnt"
ctla wait-sync --timeout 60 || fail "not in sync after the writes"
assert_eq "$(field "$CA" replication)" established "alpha's replication"
assert_eq "$(field "$CB" disk)" uptodate "beta's disk"

step "two nodes: stop, compare"
bm_stop "$PA"
bm_stop "$PB"
nbd_assert_unbound "after both stopped"
assert_disks_equal "alpha's and beta's data areas differ"
e2fsck -fn "$T/rb.img" >"$T/fsck-rb.txt" 2>&1 ||
    { cat "$T/fsck-rb.txt"; fail "e2fsck -n on beta's backing file found errors"; }
rm -f "$T"/ra.* "$T"/rb.* "$T/ports"

# ---- Two nodes, protocol async: demote with a write in the write path ----
# async: a FLUSH does not wait for the peer, so demote's own flush passes;
# a write past max-async-lag waits for the stopped peer's acks.  A long
# ping-timeout keeps the stopped peer connected past the 10 s drain.
step "two nodes, async: demote refused while a write waits for the stopped peer"
bm_pair 64M protocol=async max-async-lag=64K frontend=nbd export-listen= ping-timeout=40
bm_pair_initial_sync
dev=$(field "$CA" device)
[[ $dev =~ ^/dev/nbd[0-9]+$ ]] || fail "alpha's device after promote: '$dev'"
kill -STOP "$PB"
bm_on_exit kill -CONT "$PB"
dd if=/dev/urandom of="$dev" bs=64k count=4 oflag=direct status=none 2>/dev/null &
ddpid=$!
write_in_flight() { (( $(field "$CA" inflight.requests) > 0 )); }
wait_for 10 write_in_flight
rc=0
out=$(ctla demote 2>&1) || rc=$?
kill -CONT "$PB"
assert_eq "$rc" 1 "demote's exit code with a write in the write path"
assert_contains "$out" "still carry requests" "demote refusal while a write waits"
assert_eq "$(field "$CA" role)" primary "still primary after the refused demote"
wait "$ddpid" 2>/dev/null || true
# The peer acknowledges again: the write completes, its connection ends,
# and the next demote succeeds.
demoted() { ctla demote >/dev/null 2>&1; }
wait_for 60 demoted
assert_eq "$(field "$CA" role)" secondary "role after the demote that succeeded"
nbd_assert_unbound "after the demote that succeeded"
ctla wait-sync --timeout 60 || fail "not in sync after the stall"
bm_stop "$PA"
bm_stop "$PB"
assert_disks_equal "alpha's and beta's data areas differ after the async stall"
echo "all steps passed"
