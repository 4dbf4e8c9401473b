#!/usr/bin/env bash
# bench/vm-guest.sh: the guest half of bench/run-vm (run inside the VM by
# tests/vm/lib.sh's vm_run, as root).  Side by side, on 512 MiB files on the
# guest's tmpfs, fio (libaio, direct=1, 4 KiB random writes, iodepth 32,
# time_based) against:
#   loop        a loop device on a file
#   ublk        /dev/ublkbN of a standalone mirrord (frontend = ublk)
#   ublk-sync   /dev/ublkbN of a mirrord primary, protocol = sync, its peer
#               in a network namespace behind veth (no netem)
#   drbd-C      DRBD 8.4, protocol C, between two resources on two loop
#               devices over loopback (kernel DRBD sockets live in init_net)
# All four are set up first (3 GiB of tmpfs at once), then measured in turn,
# REPS rounds (loop, ublk, ublk-sync, drbd-C, and again), so that noise on the
# shared host hits them alike.  Each fio output goes to
# $BM_VM_OUT/fio-NAME-ROUND.json; the host prints the table (medians).
# Usage (guest): bench/vm-guest.sh RUNTIME_S REPS
set -eEuo pipefail
RUNTIME=${1:-10}
REPS=${2:-3}
SIZE=512M

source "$BM_SRC/tests/integration/functions.sh"
requires fio
bm_setup
OUT=${BM_VM_OUT:-$T}
[[ -c /dev/ublk-control ]] || fail "no /dev/ublk-control in the VM"

note() { echo "bench-vm: $*" >&2; }

declare -A DEV=()
# run_fio NAME ROUND
run_fio() {
    local name=$1 round=$2 dev=${DEV[$1]}
    note "round $round: fio on $name ($dev), ${RUNTIME}s"
    fio --name="$name" --filename="$dev" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k \
        --iodepth=32 --time_based --runtime="$RUNTIME" --randrepeat=0 \
        --output-format=json --output="$OUT/fio-$name-$round.json" >/dev/null ||
        fail "fio failed on $name"
}
# warm NAME: one sequential 1 MiB pass over the whole device, not recorded
# (allocates, and brings every system to the same state).
warm() {
    note "warm-up of $1 (${DEV[$1]})"
    fio --name=warm --filename="${DEV[$1]}" --direct=1 --ioengine=libaio --rw=write --bs=1M \
        --iodepth=8 >/dev/null || fail "warm-up failed on $1"
}

# fresh_file NAME: a fully allocated 512 MiB file on the tmpfs.
fresh_file() {
    rm -f "$T/disks/$1.img"
    fallocate -l "$SIZE" "$T/disks/$1.img"
}

# The backing files: a tmpfs of our own (the guest's /tmp is smaller than
# the 3 GiB the six files take).
mkdir -p "$T/disks"
mount -t tmpfs -o size=3200m bmbench "$T/disks"
bm_on_exit umount -l "$T/disks"

# ---- (a) loop device on a file ----
fresh_file loop
loopdev=$(losetup --find --show "$T/disks/loop.img")
bm_on_exit losetup -d "$loopdev"
DEV[loop]=$loopdev

# ---- (b) ublk standalone ----
C=$(bm_conf u0 frontend=ublk export-listen= disk="$T/disks/u0.img")
fresh_file u0
"$MIRRORCTL" -c "$C" create-md >/dev/null
bm_start "$C" alpha
P=$BM_PID
"$MIRRORCTL" -c "$C" promote --force
dev=$(bm_status_field "$C" device)
[[ -b $dev ]] || fail "no ublk device after promote: '$dev'"
DEV[ublk]=$dev

# ---- (c) ublk, protocol sync, peer in a network namespace over veth ----
ip netns add bmpeer
bm_on_exit ip netns del bmpeer
ip link add bmva type veth peer name bmvb
ip link set bmvb netns bmpeer
ip addr add 10.99.0.1/24 dev bmva
ip link set bmva up
ip -n bmpeer addr add 10.99.0.2/24 dev bmvb
ip -n bmpeer link set bmvb up
ip -n bmpeer link set lo up
head -c 48 /dev/urandom | base64 >"$T/secret"
chmod 600 "$T/secret"
CA=$(bm_conf na name=r0 frontend=ublk export-listen= protocol=sync secret-file="$T/secret" \
     disk="$T/disks/na.img" alpha.address=10.99.0.1:7789 beta.address=10.99.0.2:7789)
CB=$(bm_conf nb name=r0 frontend=ublk export-listen= protocol=sync secret-file="$T/secret" \
     disk="$T/disks/nb.img" alpha.address=10.99.0.1:7789 beta.address=10.99.0.2:7789)
fresh_file na
fresh_file nb
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
t0=$SECONDS
"$MIRRORCTL" -c "$CA" --node alpha wait-sync --timeout 300
note "mirrord initial sync of $SIZE: $((SECONDS - t0)) s"
dev=$(bm_status_field "$CA" device)
[[ -b $dev ]] || fail "no ublk device on the sync primary: '$dev'"
DEV[ublk-sync]=$dev

# ---- (d) DRBD 8.4, protocol C, two resources over loopback ----
DS=/usr/lib/drbd/drbdsetup-84
command -v drbdmeta >/dev/null && [[ -x $DS ]] ||
    fail "drbd-utils missing (apt-get install -y drbd-utils)"
modprobe drbd 2>/dev/null || true
[[ -e /proc/drbd ]] || fail "no /proc/drbd: the drbd module is not loaded"
mkdir -p /run/lock /var/lock 2>/dev/null || true
fresh_file d0
fresh_file d1
l0=$(losetup --find --show "$T/disks/d0.img")
bm_on_exit losetup -d "$l0"
l1=$(losetup --find --show "$T/disks/d1.img")
bm_on_exit losetup -d "$l1"
drbd_down() {
    "$DS" down r0 2>/dev/null || true
    "$DS" down r1 2>/dev/null || true
}
bm_on_exit drbd_down
for m in 0 1; do
    l=l$m
    { yes yes || true; } | drbdmeta --force "$m" v08 "${!l}" internal create-md >"$T/drbdmeta$m.log" 2>&1 ||
        { cat "$T/drbdmeta$m.log" >&2; fail "drbdmeta create-md on ${!l}"; }
    "$DS" new-resource "r$m"
    "$DS" new-minor "r$m" "$m" 0
    "$DS" attach "$m" "${!l}" "${!l}" internal
done
"$DS" connect r0 ipv4:127.0.0.1:7000 ipv4:127.0.0.1:7001 --protocol=C
"$DS" connect r1 ipv4:127.0.0.1:7001 ipv4:127.0.0.1:7000 --protocol=C
wait_for 30 sh -c "[ \"\$($DS cstate 0)\" = Connected ] && [ \"\$($DS cstate 1)\" = Connected ]"
note "DRBD: $(cat /proc/drbd | tr '\n' ' ')"
if "$DS" new-current-uuid 0 --clear-bitmap; then
    note "DRBD: initial sync skipped (new-current-uuid --clear-bitmap)"
    wait_for 30 sh -c "[ \"\$($DS dstate 0)\" = UpToDate/UpToDate ]"
    "$DS" primary 0
else
    note "DRBD: new-current-uuid --clear-bitmap refused: full initial sync"
    "$DS" primary 0 --force
    t0=$SECONDS
    wait_for 600 sh -c "[ \"\$($DS dstate 0)\" = UpToDate/UpToDate ]"
    note "DRBD initial sync of $SIZE: $((SECONDS - t0)) s"
fi
note "DRBD: $(cat /proc/drbd | tr '\n' ' ')"
DEV[drbd-C]=/dev/drbd0

# ---- The measurements ----
SYSTEMS=(loop ublk ublk-sync drbd-C)
note "memory: $(free -m | sed -n 2p)"
for s in "${SYSTEMS[@]}"; do warm "$s"; done
for ((r = 1; r <= REPS; r++)); do
    for s in "${SYSTEMS[@]}"; do run_fio "$s" "$r"; done
done

# Still mirroring?
st=$(bm_status_field "$CA" connection || echo unknown)
note "mirrord sync pair after fio: connection $st"
echo "$st" >"$OUT/ublk-sync.connection"
note "DRBD after fio: cstate $("$DS" cstate 0), dstate $("$DS" dstate 0)"
echo "$("$DS" cstate 0) $("$DS" dstate 0)" >"$OUT/drbd-C.connection"

# ---- Teardown ----
"$DS" secondary 0
drbd_down
"$MIRRORCTL" -c "$CA" --node alpha wait-sync --timeout 120
"$MIRRORCTL" -c "$CA" --node alpha demote
bm_stop "$PA"; bm_stop "$PB"
"$MIRRORCTL" -c "$C" demote
bm_stop "$P"
echo "bench-vm: all measurements done"
