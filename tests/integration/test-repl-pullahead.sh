#!/usr/bin/env bash
# async with on-congestion = pull-ahead: when the peer stops taking data
# (its process is stopped), the primary keeps completing writes, reports
# "ahead" (the peer "behind"), marks what it skips; once the peer catches
# up the skipped blocks are resynced and both disks are equal.  While it is
# behind, the peer is outdated (in its metadata too) and cannot be
# promoted, not even once the primary has demoted: a switchover never
# loses the writes it misses.
# timeout: 180
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires fio
bm_setup
bm_pair 128M protocol=async on-congestion=pull-ahead max-async-lag=1M resync-rate=8M
sed -i 's/^ping-timeout = .*/ping-timeout = 20/' "$CA" "$CB"
bm_stop "$PA"; bm_stop "$PB"
bm_start "$CA" alpha; PA=$BM_PID
bm_start "$CB" beta; PB=$BM_PID
bm_pair_initial_sync

kill -STOP "$PB"
fio --name=w --ioengine=nbd --uri="$UA" --rw=randwrite --bs=64k --iodepth=8 \
    --size=64M --time_based --runtime=3 --output="$T/fio1.txt" >/dev/null &
fio1=$!
wait_for 20 sh -c "$MIRRORCTL -c $CA status --json | grep -q '\"replication\":\"ahead\"'"
wait "$fio1" || fail "writes failed while pulled ahead"
oos=$(field "$CA" out_of_sync_bytes)
[ "$oos" -gt 1048576 ] || fail "pulled ahead but only $oos bytes marked"
kill -CONT "$PB"
wait_for 20 sh -c "$MIRRORCTL -c $CB status --json | grep -q '\"disk\":\"outdated\"'"
ctla demote
out=$(ctlb promote 2>&1) && fail "a node behind its peer was promoted"
echo "promote refused as it should: $out"
ctla wait-sync --timeout 90 || fail "no catch-up after the peer resumed"
assert_eq "$(field "$CB" disk)" uptodate "beta up to date once caught up"
ctlb promote || fail "beta refused after catching up"
ctlb demote
ctla promote
assert_eq "$(field "$CA" replication)" established "alpha back to established"
wait_for 10 sh -c "$MIRRORCTL -c $CB status --json | grep -q '\"replication\":\"established\"'"
grep -q "the peer pulled ahead" "$T/rb-beta.log" || fail "beta never reported behind"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "disks differ after pull-ahead"
