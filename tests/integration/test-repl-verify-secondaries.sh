#!/usr/bin/env bash
# What a verify between two secondaries found is not forgotten when the
# repair is cut short: neither a reconnect nor a kill -9 of the verifying
# node (the sync source) in the middle of the resync may end with both
# disks "uptodate" and different.  The bits alone explain nothing at the
# next connect (gen_compare row 38 clears them as stale); the verifier's
# durable record (META_F_VERIFY_DIFF) makes it sync source again.
# timeout: 180
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
# A slow resync keeps the repair running long enough to cut it.
bm_pair 16M resync-rate=4M
bm_pair_initial_sync
ctla demote || fail "demote failed"

# corrupt: 12 MiB of alpha's copy change behind the mirror's back.
corrupt() {
    head -c $((12 << 20)) /dev/urandom |
        dd of="$T/ra.img" bs=1M seek=4 conv=notrunc,fsync status=none
    if cmp -s -n "$SIZE" "$T/ra.img" "$T/rb.img"; then fail "corruption did not take"; fi
}
# verify_on_beta N: the Nth verify on beta has found the differences.
verify_on_beta() {
    ctlb verify || fail "verify refused"
    wait_for 60 sh -c "[ \$(grep -c 'verify finished: [1-9]' '$T/rb-beta.log') -ge $1 ]"
}
repaired() {
    ctlb wait-connect --timeout 30 || fail "$1: no reconnect"
    ctlb wait-sync --timeout 60 || fail "$1: not in sync again"
    assert_eq "$(field "$CA" disk)" uptodate "$1: alpha's disk"
    assert_eq "$(field "$CB" disk)" uptodate "$1: beta's disk"
    assert_disks_equal "$1: both up to date, and the disks differ"
}

# 1. The repair cut by a disconnect and connect.
corrupt
verify_on_beta 1
ctlb disconnect
ctlb connect
repaired "after a reconnect in the repair"

# 2. The verifier killed in the repair, restarted.
corrupt
verify_on_beta 2
kill -9 "$PB"; wait "$PB" 2>/dev/null || true
bm_start "$CB" beta; PB=$BM_PID
repaired "after the verifier's kill -9 in the repair"
if grep -q "no resync: clearing" "$T/rb-beta.log" "$T/ra-alpha.log"; then
    fail "the verify's marks were cleared as stale"
fi
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "after a clean stop"
# The repair ended: the record is gone, or a later connect would resync
# blocks again for nothing.
ctlb show-md --json >"$T/md.json" || fail "show-md failed"
if grep -q verify-diff "$T/md.json"; then fail "verify-diff left after the repair: $(cat "$T/md.json")"; fi
