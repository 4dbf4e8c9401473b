#!/usr/bin/env bash
# frontend = ublk in a VM with a ublk kernel.
#  - One node: /dev/ublkb0 exists only while primary, with the parameters
#    mirrord gave (512-byte blocks, write cache + FUA, 1 MiB requests, 4 KiB
#    discards, the size); mkfs.ext4, mount, files written and synced; demote
#    is refused while mounted and removes the device once unmounted;
#    promoted again, the files read back and e2fsck -n is clean; a clean
#    stop removes the device and its state file.  /dev/blkmirror/r0 links
#    to the device while it exists; the role-change hook sees it in
#    BLKMIRROR_DEVICE.
#  - A disk with 4 KiB sectors: the device gets 4 KiB logical blocks.
#  - The peer in its own network namespace behind veth with 1 ms of netem
#    delay: mkfs, files, sync, unmount, then both disks are equal.
#  - Two nodes on 127.0.0.1 in each protocol (sync also with two queues):
#    fio with verify (direct I/O, io_uring) on the primary's /dev/ublkbN,
#    ext4 with discard on it, then both disks' data areas are equal; the
#    secondary never has a device.
# timeout: 1200
if [[ ${BM_VM:-0} != 1 ]]; then
    source "$(dirname "$0")/lib.sh"
    VM_TIMEOUT=1140 vm_run "$0"
    exit
fi

source "$BM_SRC/tests/integration/functions.sh"
source "$BM_SRC/tests/integration/repl.sh"
source "$BM_SRC/tests/vm/ublk.sh"
requires fio
requires mkfs.ext4
bm_setup
ublk_check_kernel
ublk_keep_logs

# ---- One node ----
printf '#!/bin/sh\necho "$1 $BLKMIRROR_ROLE $BLKMIRROR_DEVICE" >>%q\n' "$T/hooks" >"$T/hook"
chmod +x "$T/hook"
C=$(bm_conf r0 frontend=ublk export-listen= handler-role-change="$T/hook")
bm_disk r0 96M
"$MIRRORCTL" -c "$C" create-md >/dev/null
bm_start "$C" alpha
P=$BM_PID
ublk_assert_no_device "secondary after start"
assert_eq "$(bm_status_field "$C" device)" null "status device while secondary"

"$MIRRORCTL" -c "$C" promote --force
dev=$(bm_status_field "$C" device)
[[ $dev == /dev/ublkb* ]] || fail "status device after promote: '$dev'"
[[ -b $dev ]] || fail "$dev is not a block device after promote"
assert_eq "$(cat "/sys/block/${dev#/dev/}/queue/logical_block_size")" 512 "logical block size"
assert_eq "$(cat "/sys/block/${dev#/dev/}/queue/write_cache")" "write back" \
    "a volatile cache: FLUSH reaches mirrord"
assert_eq "$(cat "/sys/block/${dev#/dev/}/queue/fua")" 1 "FUA reaches mirrord"
assert_eq "$(cat "/sys/block/${dev#/dev/}/queue/max_hw_sectors_kb")" 1024 "max-io-size 1M"
assert_eq "$(cat "/sys/block/${dev#/dev/}/queue/discard_granularity")" 4096 "discard granularity"
size=$(bm_status_field "$C" size_bytes)
assert_eq "$(blockdev --getsize64 "$dev")" "$size" "device size"
assert_eq "$(readlink /dev/blkmirror/r0)" "$dev" "/dev/blkmirror/r0 while primary"
wait_for 10 grep -q "^role-change primary" "$T/hooks"
assert_eq "$(cat "$T/hooks")" "role-change primary $dev" "the role-change hook's BLKMIRROR_DEVICE"

mkfs.ext4 -q -F "$dev"
mkdir -p "$T/mnt"
mount "$dev" "$T/mnt"
for i in 1 2 3 4 5; do
    head -c $((i * 700000)) /dev/urandom >"$T/mnt/f$i"
done
cp -r "$BM_SRC/daemon" "$T/mnt/src"
sync
(cd "$T/mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$T/sums"

out=$("$MIRRORCTL" -c "$C" demote 2>&1) && fail "demote succeeded while mounted"
assert_contains "$out" "device $dev is in use \(mounted or open exclusively\)" "demote refusal"
assert_eq "$(bm_status_field "$C" role)" primary "still primary after the refused demote"
[[ -b $dev ]] || fail "$dev vanished after a refused demote"
touch "$T/mnt/after-refused-demote"    # still writable
umount "$T/mnt"

"$MIRRORCTL" -c "$C" demote
ublk_assert_no_device "after demote"
assert_eq "$(bm_status_field "$C" device)" null "status device after demote"
[[ ! -e /dev/blkmirror/r0 && ! -L /dev/blkmirror/r0 ]] || fail "/dev/blkmirror/r0 left after demote"
assert_eq "$(bm_status_field "$C" role)" secondary "role after demote"

"$MIRRORCTL" -c "$C" promote
dev=$(bm_status_field "$C" device)
[[ -b $dev ]] || fail "$dev is not a block device after the second promote"
mount "$dev" "$T/mnt"
(cd "$T/mnt" && sha256sum --quiet -c "$T/sums") || fail "files differ after demote/promote"
[[ -f $T/mnt/after-refused-demote ]] || fail "write after the refused demote lost"
umount "$T/mnt"
e2fsck -fn "$dev" >"$T/fsck.txt" 2>&1 || { cat "$T/fsck.txt"; fail "e2fsck -n found errors"; }
bm_stop "$P"
ublk_assert_no_device "after a clean stop"
[[ ! -e $T/r0.sock.ublk ]] || fail "state file left after a clean stop"

# ---- A disk with 4 KiB sectors: the device has 4 KiB logical blocks ----
truncate -s 64M "$T/r4k.img"
loop=$(losetup --find --show --sector-size 4096 "$T/r4k.img")
bm_on_exit losetup -d "$loop"
C4=$(bm_conf r4 frontend=ublk export-listen= disk="$loop")
"$MIRRORCTL" -c "$C4" create-md >/dev/null
bm_start "$C4" alpha
P4=$BM_PID
"$MIRRORCTL" -c "$C4" promote --force
dev=$(bm_status_field "$C4" device)
assert_eq "$(cat "/sys/block/${dev#/dev/}/queue/logical_block_size")" 4096 \
    "logical block size on a 4Kn disk"
mkfs.ext4 -q -F "$dev"
e2fsck -fn "$dev" >"$T/fsck4k.txt" 2>&1 || { cat "$T/fsck4k.txt"; fail "e2fsck on the 4Kn device"; }
"$MIRRORCTL" -c "$C4" demote
bm_stop "$P4"
ublk_assert_no_device "after the 4Kn node stopped"

# ---- A peer in its own network namespace, 1 ms away (veth + netem) ----
ip netns add bmpeer
bm_on_exit ip netns del bmpeer
ip link add bmva type veth peer name bmvb
ip link set bmvb netns bmpeer
ip addr add 10.99.0.1/24 dev bmva
ip link set bmva up
ip -n bmpeer addr add 10.99.0.2/24 dev bmvb
ip -n bmpeer link set bmvb up
ip -n bmpeer link set lo up
tc qdisc add dev bmva root netem delay 1ms
ip netns exec bmpeer tc qdisc add dev bmvb root netem delay 1ms
head -c 48 /dev/urandom | base64 >"$T/secret"
chmod 600 "$T/secret"
CA=$(bm_conf na name=r0 frontend=ublk export-listen= secret-file="$T/secret" \
     alpha.address=10.99.0.1:7789 beta.address=10.99.0.2:7789)
CB=$(bm_conf nb name=r0 frontend=ublk export-listen= secret-file="$T/secret" \
     alpha.address=10.99.0.1:7789 beta.address=10.99.0.2:7789)
bm_disk na 96M
bm_disk nb 96M
"$MIRRORCTL" -c "$CA" --node alpha create-md >/dev/null
"$MIRRORCTL" -c "$CB" --node beta create-md >/dev/null
bm_start "$CA" alpha; PA=$BM_PID
printf '#!/bin/sh\nexec ip netns exec bmpeer %q "$@"\n' "$MIRRORD" >"$T/mirrord-in-ns"
chmod +x "$T/mirrord-in-ns"
MIRRORD_HOST=$MIRRORD
MIRRORD=$T/mirrord-in-ns
bm_start "$CB" beta; PB=$BM_PID
MIRRORD=$MIRRORD_HOST
"$MIRRORCTL" -c "$CA" --node alpha wait-connect --timeout 30
"$MIRRORCTL" -c "$CA" --node alpha promote --force
"$MIRRORCTL" -c "$CA" --node alpha wait-sync --timeout 120
dev=$(bm_status_field "$CA" device)
mkfs.ext4 -q -F "$dev"
mount "$dev" "$T/mnt"
cp -r "$BM_SRC/daemon" "$BM_SRC/ublk" "$T/mnt/"
head -c 5000000 /dev/urandom >"$T/mnt/big"
flushes() { grep -c "flush from the peer's application" "$T/nb-beta.log" || true; }
before=$(flushes)
sync
# The kernel's flush (sync) reached the peer's disk: beta counted it.
[ "$(flushes)" -gt "$before" ] || fail "sync on $dev did not flush the peer's disk"
sync "$T/mnt/big"
umount "$T/mnt"
"$MIRRORCTL" -c "$CA" --node alpha wait-sync --timeout 120
"$MIRRORCTL" -c "$CA" --node alpha demote
bm_stop "$PA"; bm_stop "$PB"
cmp -n "$(grep -o '[0-9]* bytes of data' "$T/na-alpha.log" | head -n1 | cut -d' ' -f1)" \
    "$T/na.img" "$T/nb.img" || fail "disks differ after mkfs, files and sync over veth"
rm -f "$T"/n[ab].* "$T/ports"

# ---- Two nodes, each protocol (and sync with two queues) ----
for run in sync sync2 semi-sync async; do
    proto=${run%2}
    extra=()
    [[ $run != sync2 ]] || extra=(queues=2 queue-depth=64)
    bm_pair 96M protocol="$proto" frontend=ublk export-listen= "${extra[@]}"
    ublk_assert_no_device "both secondary ($run)"
    bm_pair_initial_sync
    dev=$(field "$CA" device)
    [[ -b $dev ]] || fail "no device on the primary ($run): '$dev'"
    assert_eq "$(field "$CB" device)" null "no device on the secondary ($run)"
    if [[ $run == sync2 ]]; then
        grep -q "2 queues of 64 tags" "$T/ra-alpha.log" || fail "the device has not 2 queues"
        assert_eq "$(ls "/sys/block/${dev#/dev/}/mq" | wc -l)" 2 "hardware queues of $dev"
    fi
    fio --name=w --filename="$dev" --direct=1 --ioengine=io_uring --rw=randwrite --bs=4k-64k \
        --iodepth=16 --size=24M --verify=crc32c --do_verify=1 --verify_state_save=0 \
        --randrepeat=0 --output-format=json --output="$T/fio-$run.json" >/dev/null ||
        fail "fio failed ($run)"
    errs=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["jobs"][0]["error"])' \
        "$T/fio-$run.json")
    assert_eq "$errs" 0 "fio errors ($run)"
    # Flushes, FUA and discards through the page cache and a file system.
    mkfs.ext4 -q -F -E discard "$dev"
    mount -o discard "$dev" "$T/mnt"
    head -c 3000000 /dev/urandom >"$T/mnt/a"
    sync
    rm "$T/mnt/a"
    umount "$T/mnt"
    ctla wait-sync --timeout 120 || fail "not in sync after writes ($run)"
    ctla demote
    ublk_assert_no_device "after demote ($run)"
    bm_stop "$PA"; bm_stop "$PB"
    assert_disks_equal "disks differ after $run"
    rm -f "$T"/r[ab].* "$T/ports"
done
echo "ublk: all checks passed"
