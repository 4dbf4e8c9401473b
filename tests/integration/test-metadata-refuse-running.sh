#!/usr/bin/env bash
# A disk or a control socket already in use by a running mirrord: a second
# mirrord exits 1 saying which, writes nothing, and leaves the first one
# serving (control socket and NBD export); create-md refuses the disk too.
# timeout: 60
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
requires nbdinfo
bm_setup

bm_single r0 64M
conf=$BM_CONF
first=$BM_PID
size=$(bm_status_field "$conf" .size_bytes)
sum=$(md5sum <"$T/r0.img")

# The first daemon is untouched: it answers, its export serves, its disk
# has not changed.
first_serves() {
    bm_alive "$first" || fail "the first mirrord died"
    assert_eq "$(bm_status_field "$conf" .role)" secondary "first mirrord's role ($1)"
    assert_eq "$(nbdinfo --size "$(bm_nbd_uri r0)")" "$size" "first mirrord's export ($1)"
    assert_eq "$(md5sum <"$T/r0.img")" "$sum" "disk of the first mirrord ($1)"
}

# refused CONF PATTERN: a second mirrord on CONF exits 1 with PATTERN.
refused() {
    local rc=0
    timeout 20 "$MIRRORD" -c "$1" --node alpha --foreground 2>"$T/err" || rc=$?
    assert_eq "$rc" 1 "exit code of a second mirrord on $1"
    assert_contains "$T/err" "$2" "second mirrord's reason"
}

# The same configuration again: its control socket answers, so it is
# refused before it opens anything.
refused "$conf" "another mirrord is already running on $T/r0.sock"
first_serves "after a second mirrord on the same disk"

# create-md on the disk in use, with and without --force.
for force in "" --force; do
    rc=0
    "$MIRRORCTL" -c "$conf" create-md $force 2>"$T/err" || rc=$?
    assert_eq "$rc" 1 "exit code of create-md $force while mirrord runs"
    assert_contains "$T/err" "disk $T/r0.img is in use \(is mirrord running\?\)" "create-md $force"
    first_serves "after create-md $force"
done

# A copied configuration where only the disk was changed: same control and
# export sockets.  Refused for the control socket, before it touches its disk
# or the sockets of the running daemon.
bm_disk r1 64M
conf1=$(bm_conf r1 name=r0 control="$T/r0.sock" export-listen="unix:$T/r0.nbd")
"$MIRRORCTL" -c "$conf1" create-md >/dev/null
sum1=$(md5sum <"$T/r1.img")
refused "$conf1" "another mirrord is already running on $T/r0.sock"
assert_eq "$(md5sum <"$T/r1.img")" "$sum1" "disk of the refused mirrord"
first_serves "after a second mirrord on the same sockets"

bm_stop "$first"
