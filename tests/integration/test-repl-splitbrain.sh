#!/usr/bin/env bash
# Both nodes promoted while apart and both written: reconnecting reports
# splitbrain, moves nothing, fires an event; discard-my-data on beta, then
# connect, resyncs beta from alpha and the disks end equal, with the
# documented commands run back to back.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
bm_pair 64M
bm_pair_initial_sync

ctlb disconnect
ctla disconnect
ctlb promote --force   # beta left a primary in order: outdated
"$PYTHON" -c 'import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b"A"*8192, 0); h.flush()' "$UA"
"$PYTHON" -c 'import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b"B"*8192, 4<<20); h.flush()' "$UB"
ctlb demote

"$MIRRORCTL" -c "$CB" events >"$T/events-b" &
evpid=$!
suma=$(md5sum <"$T/ra.img"); sumb=$(md5sum <"$T/rb.img")
ctla connect; ctlb connect
wait_for 20 sh -c "grep -q splitbrain $T/events-b"
assert_eq "$(field "$CB" connection)" splitbrain "beta reports split brain"
wait_for 10 sh -c "[ \"\$($MIRRORCTL -c $CA status --json | grep -o '\"connection\":\"[a-z]*\"')\" = '\"connection\":\"splitbrain\"' ]"
sleep 1
assert_eq "$(md5sum <"$T/ra.img")" "$suma" "split brain moved data to alpha"
assert_eq "$(md5sum <"$T/rb.img")" "$sumb" "split brain moved data to beta"
expect_fail ctlb wait-sync --timeout 2
kill "$evpid" 2>/dev/null || true

# The recovery of blkmirror-ha(7) and mirrorctl(8), back to back: each
# command returns once its effect is settled, so the next one never sees the
# split brain that connect just ended.
ctlb discard-my-data
ctlb connect
[[ $(field "$CB" connection) != splitbrain ]] || fail "beta still in split brain after connect"
ctla connect
[[ $(field "$CA" connection) != splitbrain ]] || fail "alpha still in split brain after connect"
ctla wait-sync --timeout 60 || fail "no resync after discard-my-data"
ctlb wait-sync --timeout 60 || fail "beta: wait-sync after the resync"
"$PYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
assert h.pread(8192, 0) == b"A" * 8192, "alpha data missing on beta"
assert h.pread(8192, 4 << 20) != b"B" * 8192, "beta kept its discarded data"' "$UB"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal
