#!/usr/bin/env bash
# A clean stop of a primary: exit 0, no open activity extent, not flagged
# primary, and a bitmap that marks exactly the granules written (with a
# 16 KiB granularity, so the rounding shows), also for unaligned writes,
# writes across a granule boundary, WRITE_ZEROES, TRIM and the last, partial
# granule.  The restarted daemon reports the same out-of-sync bytes and
# serves the data written before.
# timeout: 60
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
requires qemu-io
bm_setup

K=1024 M=$((1 << 20)) G=$((16 * 1024))
conf=$(bm_conf r0)
bm_disk r0 64M
"$MIRRORCTL" -c "$conf" create-md --granularity 16K >/dev/null
bm_start "$conf"
"$MIRRORCTL" -c "$conf" promote --force
uri=$(bm_nbd_uri r0)
size=$(bm_status_field "$conf" .size_bytes)
assert_eq "$(bm_status_field "$conf" .out_of_sync_bytes)" 0 "out_of_sync_bytes before any write"
last=$((size - 4 * K))          # the last 4 KiB of the data area
last_granule=$((last / G * G))  # size need not be a multiple of 16 KiB

# The writes, and the reads that check them afterwards.
writes=(-c 'write -P 0x11 0 4k'
        -c 'write -P 0x22 20k 4k'
        -c "write -P 0x33 $((M + 512)) 100"
        -c "write -P 0x44 $((8 * M - 4 * K)) 8k"
        -c "write -z $((16 * M)) 4k"
        -c "discard $((20 * M)) 4k"
        -c "write -P 0x55 $last 4k")
reads=(-c 'read -P 0x11 0 4k'
       -c 'read -P 0 4k 16k'
       -c 'read -P 0x22 20k 4k'
       -c "read -P 0 $M 512"
       -c "read -P 0x33 $((M + 512)) 100"
       -c "read -P 0x44 $((8 * M - 4 * K)) 8k"
       -c "read -P 0 $((16 * M)) 4k"
       -c "read -P 0x55 $last 4k")
qemu-io -f raw "${writes[@]}" "$uri" >/dev/null
# [offset, length] of every granule touched, adjacent ones merged.
want="[[0, $((2 * G))], [$M, $G], [$((8 * M - G)), $((2 * G))], [$((16 * M)), $G], \
[$((20 * M)), $G], [$last_granule, $((size - last_granule))]]"
want_bytes=$(( (2 + 1 + 2 + 1 + 1) * G + size - last_granule ))
assert_eq "$(bm_status_field "$conf" .out_of_sync_bytes)" "$want_bytes" "out_of_sync_bytes while running"

bm_stop "$BM_PID"
"$MIRRORCTL" -c "$conf" show-md --json >"$T/md.json"
md() { bm_json ".$1" <"$T/md.json"; }
assert_eq "$(md granularity)" "$G" "granularity"
assert_eq "$(md active_extents)" 0 "active_extents after a clean stop"
assert_eq "$(md flags)" '["consistent", "uptodate"]' "flags after a clean stop"
assert_eq "$(md out_of_sync)" "$want" "out_of_sync after a clean stop"
assert_eq "$(md out_of_sync_bytes)" "$want_bytes" "out_of_sync_bytes after a clean stop"
# The data area is the start of the backing file: the writes are there.
qemu-io -f raw -r "${reads[@]}" "$T/r0.img" >/dev/null

bm_start "$conf"
assert_eq "$(bm_status_field "$conf" .out_of_sync_bytes)" "$want_bytes" "out_of_sync_bytes after the restart"
assert_eq "$(bm_status_field "$conf" .role)/$(bm_status_field "$conf" .disk)" secondary/uptodate \
    "state after the restart"
qemu-io -f raw -r "${reads[@]}" "$uri" >/dev/null
bm_stop "$BM_PID"
"$MIRRORCTL" -c "$conf" show-md --json >"$T/md.json"
assert_eq "$(md out_of_sync)" "$want" "out_of_sync after a second clean stop"
