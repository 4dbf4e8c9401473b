#!/usr/bin/env bash
# A verify that finds differences marks them on both nodes with the same
# OOS notice that pull-ahead uses, but it is no pull-ahead: with protocol
# async and on-congestion = pull-ahead configured, the peer must not become
# "behind" or outdated, and both stay promotable once repaired.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
bm_pair 16M protocol=async on-congestion=pull-ahead max-async-lag=1M
bm_pair_initial_sync
head -c 4096 /dev/urandom | dd of="$T/rb.img" bs=4096 seek=100 conv=notrunc status=none
ctla verify
wait_for 30 grep -q "verify finished" "$T/ra-alpha.log"
ctla wait-sync --timeout 30 || fail "no repair after verify"
sleep 1
assert_eq "$(field "$CB" disk)" uptodate "beta's disk after a verify"
assert_eq "$(field "$CB" replication)" established "beta's replication after a verify"
grep -q "the peer pulled ahead" "$T/rb-beta.log" && fail "beta took the verify for a pull-ahead"
ctla demote
ctlb promote || fail "beta not promotable after a verify"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal
