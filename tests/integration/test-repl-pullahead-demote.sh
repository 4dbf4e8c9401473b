#!/usr/bin/env bash
# Pull-ahead, then a planned demote while still ahead, then the lagging
# secondary is killed: the demoted node records its writes the peer lacks
# (flag local-changes, as show-md names it), so when the secondary comes
# back it is the sync source (gen_compare row 35), whatever the node
# identifiers or the secondary's stale marks (beta was primary before and
# demoted: its activity extents must not count).  The block written last on
# alpha is on beta afterwards, the disks end equal, and the flag is gone
# once the resync ended.  Then the same demote while ahead, but beta
# resumes and catches up: the flag goes with the catch-up (else a later
# failover to beta would look like a split brain).
# timeout: 180
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires fio
bm_setup
bm_pair 128M protocol=async on-congestion=pull-ahead max-async-lag=1M
sed -i 's/^ping-timeout = .*/ping-timeout = 20/' "$CA" "$CB"
bm_stop "$PA"; bm_stop "$PB"
bm_start "$CA" alpha; PA=$BM_PID
bm_start "$CB" beta; PB=$BM_PID
bm_pair_initial_sync

put() {
    "$PYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(sys.argv[2].encode() * int(sys.argv[4]), int(sys.argv[3])); h.flush()' "$@"
}
peer_secondary() { [ "$(field "$1" peer.role)" = secondary ]; }

# beta primary for a while, so that it has had activity extents of its own.
ctla demote
wait_for 10 peer_secondary "$CB"
ctlb promote
put "$UB" B 0 1048576
ctlb demote
wait_for 10 peer_secondary "$CA"
ctla promote

kill -STOP "$PB"
fio --name=w --ioengine=nbd --uri="$UA" --rw=randwrite --bs=64k --iodepth=8 \
    --size=64M --time_based --runtime=2 --output="$T/fio.txt" >/dev/null ||
    fail "writes failed while pulled ahead"
assert_eq "$(field "$CA" replication)" ahead "alpha pulled ahead"
put "$UA" Z $((100 << 20)) 65536
ctla demote
bm_kill9 "$PB"
bm_stop "$PA"
"$MIRRORCTL" -c "$CA" show-md --json >"$T/md.json"
assert_contains "$(bm_json .flags <"$T/md.json")" 'local-changes' \
    "alpha left primary while ahead"
bm_start "$CA" alpha; PA=$BM_PID
bm_start "$CB" beta; PB=$BM_PID
ctla wait-sync --timeout 90 || fail "no resync from alpha"
grep 'peer: generations:' "$T/ra-alpha.log" | tail -n 1 | grep -q 'source-bitmap (rule 35)' ||
    fail "alpha was not the sync source by its local changes"
"$PYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
assert h.pread(65536, 100 << 20) == b"Z" * 65536, "alpha write lost"' "$UB" ||
    fail "the write alpha made ahead is not on beta"
bm_stop "$PA"; bm_stop "$PB"
"$MIRRORCTL" -c "$CA" show-md --json >"$T/md.json"
[[ $(bm_json .flags <"$T/md.json") != *local-changes* ]] ||
    fail "local-changes still set after the resync"
assert_disks_equal "disks differ after the resync"
bm_start "$CA" alpha; PA=$BM_PID
bm_start "$CB" beta; PB=$BM_PID
ctla wait-connect --timeout 20

ctla promote
kill -STOP "$PB"
fio --name=w --ioengine=nbd --uri="$UA" --rw=randwrite --bs=64k --iodepth=8 \
    --size=64M --time_based --runtime=2 --output="$T/fio2.txt" >/dev/null ||
    fail "writes failed while pulled ahead (2)"
assert_eq "$(field "$CA" replication)" ahead "alpha pulled ahead (2)"
ctla demote
kill -CONT "$PB"
wait_for 60 sh -c "[ \$($MIRRORCTL -c $CA status --json | grep -o '\"out_of_sync_bytes\":[0-9]*') = '\"out_of_sync_bytes\":0' ]"
wait_for 20 sh -c "$MIRRORCTL -c $CA status --json | grep -q '\"replication\":\"established\"'"
bm_stop "$PA"; bm_stop "$PB"
"$MIRRORCTL" -c "$CA" show-md --json >"$T/md.json"
[[ $(bm_json .flags <"$T/md.json") != *local-changes* ]] ||
    fail "local-changes still set after the catch-up"
assert_disks_equal "disks differ after the catch-up"
