#!/usr/bin/env bash
# A secondary killed with -9 is never taken for a node that wrote.  After
# planned switchovers (demote on one node, promote on the other, writes on
# each primary) the secondary is killed, the primary writes 64 KiB alone,
# and the secondary comes back: a bitmap resync from the node that wrote
# alone (target-bitmap on the restarted node), never a split brain, and the
# disks end equal.  A demote leaves no activity extent on disk: the killed
# node, primary before, has nothing out of sync (show-md).  Four runs on one pair:
#   1. alpha -> beta -> alpha, writes on each primary, kill -9 of beta;
#   2. the same with the primary idle when beta is killed;
#   3. beta killed right after the resync of run 2 finished (the bits its
#      resync cleared must stay cleared);
#   4. the roles swapped: alpha wrote, demoted, beta promoted and wrote,
#      kill -9 of alpha;
#   a crash loop: six kill points of beta under a stream of writes, some
#      with a second kill in the middle of the resync that follows;
#   5. a failover: beta, primary, killed after writes all over the disk,
#      alpha promoted; beta folds its activity extents into its bitmap and
#      becomes the target of a checksum resync that clears most bits
#      without writing; killed right after it, beta must not find them
#      again (show-md).
# timeout: 300
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
bm_pair 64M
bm_pair_initial_sync

# put URI BYTE OFFSET LEN: writes LEN bytes of BYTE at OFFSET (in requests
# of at most 1 MiB), flushed.
put() {
    "$PYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
off, left = int(sys.argv[3]), int(sys.argv[4])
while left:
    n = min(left, 1 << 20)
    h.pwrite(sys.argv[2].encode() * n, off)
    off += n
    left -= n
h.flush()' "$@"
}

connected() { [ "$(field "$1" connection)" = connected ]; }
not_connected() { [ "$(field "$1" connection)" != connected ]; }
peer_secondary() { [ "$(field "$1" peer.role)" = secondary ]; }

# switch FROM_CTL TO_CTL TO_CONF: planned switchover, as an operator does it.
switch() {
    "$1" demote
    wait_for 10 peer_secondary "$3"
    "$2" promote || fail "promote after a clean demote refused"
}

# since LOG MARK: the lines of LOG from the line MARK on.
since() { sed -n "/^$2\$/,\$p" "$1"; }

# returns CONF NODE PIDVAR OTHER_CTL [DECISIONS]: restarts the killed node
# and checks that it became a bitmap sync target (or a decision matching
# the regex DECISIONS) and ended equal.
RESTARTS=0
returns() {
    local conf=$1 node=$2 want=${5:-target-bitmap} log mark
    log=$T/$(basename "${conf%.conf}")-$node.log
    RESTARTS=$((RESTARTS + 1))
    mark="=== restart $RESTARTS of $node"
    echo "$mark" >>"$log"
    bm_start "$conf" "$node"
    printf -v "$3" '%s' "$BM_PID"
    wait_for 20 sh -c "sed -n '/^$mark\$/,\$p' $log | grep -q 'peer: generations:'"
    since "$log" "$mark" | grep 'peer: generations:' | tail -n 1
    if since "$log" "$mark" | grep -q 'split brain'; then
        fail "$RUN: split brain where $node should be a bitmap sync target"
    fi
    since "$log" "$mark" | grep 'peer: generations:' | tail -n 1 |
        grep -Eq "$want" || fail "$RUN: $node was not a bitmap sync target ($want)"
    "$4" wait-sync --timeout 60 || fail "$RUN: no resync"
    assert_eq "$(field "$conf" connection)" connected "$RUN: $node connected"
}

# no_marks CONF: the killed node left nothing out of sync, no activity
# extent either: it was primary, but demoted cleanly before the kill.
no_marks() {
    "$MIRRORCTL" -c "$1" show-md --json >"$T/md.json"
    assert_eq "$(bm_json .out_of_sync_bytes <"$T/md.json")" 0 \
        "$RUN: out of sync after a clean demote and a kill -9 (show-md)"
}

# equal: both stopped, data areas compared, both started again, connected.
equal() {
    local prim=$1
    bm_stop "$PA"; bm_stop "$PB"
    assert_disks_equal "$RUN: disks differ"
    bm_start "$CA" alpha; PA=$BM_PID
    bm_start "$CB" beta; PB=$BM_PID
    wait_for 20 connected "$CA"
    "ctl$prim" promote || fail "$RUN: promote after restart"
}

RUN="run 1 (switchover, writes, kill -9 of the secondary)"
put "$UA" A 0 1048576
switch ctla ctlb "$CB"
put "$UB" B 1048576 1048576
switch ctlb ctla "$CA"
put "$UA" C 2097152 1048576
bm_kill9 "$PB"
no_marks "$CB"
wait_for 10 not_connected "$CA"
put "$UA" D $((8 << 20)) 65536
returns "$CB" beta PB ctla
equal a

RUN="run 2 (switchover, primary idle at the kill)"
switch ctla ctlb "$CB"
put "$UB" E $((12 << 20)) 1048576
switch ctlb ctla "$CA"
sleep 1
bm_kill9 "$PB"
wait_for 10 not_connected "$CA"
put "$UA" F $((16 << 20)) 65536
returns "$CB" beta PB ctla

RUN="run 3 (target killed right after its resync)"
bm_kill9 "$PB"
wait_for 10 not_connected "$CA"
put "$UA" G $((20 << 20)) 65536
returns "$CB" beta PB ctla
equal a

RUN="run 4 (demote of a node that had written, kill -9 of alpha)"
put "$UA" H $((24 << 20)) 1048576
switch ctla ctlb "$CB"
put "$UB" I $((28 << 20)) 1048576
bm_kill9 "$PA"
no_marks "$CA"
wait_for 10 not_connected "$CB"
put "$UB" J $((32 << 20)) 65536
returns "$CA" alpha PA ctlb
equal b

RUN="crash loop"
# Six kill points of the secondary: under a stream of writes after a
# switchover there and back, at a different moment each time; on every
# second one the restarted node is killed again in the middle of its
# resync, and once more right after it.
writer() {
    exec "$PYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
i = 0
try:
    while True:
        h.pwrite(b"%08d" % i * 8192, (i % 512) * 65536)
        i += 1
except nbd.Error:
    pass' "$UA"
}
synctarget() { since "$1" "$2" | grep -q 'replication off -> synctarget'; }
switch ctlb ctla "$CA"
for i in 1 2 3 4 5 6; do
    RUN="crash loop $i"
    switch ctla ctlb "$CB"
    put "$UB" M $((40 << 20)) 65536
    switch ctlb ctla "$CA"
    writer & wpid=$!
    bm_kill_at_exit "$wpid"
    sleep "0.$i"
    bm_kill9 "$PB"
    kill "$wpid" 2>/dev/null || true
    wait "$wpid" 2>/dev/null || true
    wait_for 10 not_connected "$CA"
    put "$UA" N $((44 << 20)) $((8 << 20))
    if ((i % 2 == 0)); then
        echo "=== loop $i" >>"$T/rb-beta.log"
        bm_start "$CB" beta; PB=$BM_PID
        wait_for 20 synctarget "$T/rb-beta.log" "=== loop $i"
        bm_kill9 "$PB"
        wait_for 10 not_connected "$CA"
        # Killed during the resync, or just after its end: both are fine.
        returns "$CB" beta PB ctla 'target-bitmap|no-sync \(rule 30\)'
    else
        returns "$CB" beta PB ctla
    fi
    if ((i == 6)); then
        bm_kill9 "$PB"
        wait_for 10 not_connected "$CA"
        put "$UA" O $((52 << 20)) 65536
        returns "$CB" beta PB ctla
    fi
done
equal b

RUN="run 5 (failover, checksum resync, target killed right after)"
for i in $(seq 0 15); do put "$UB" K $((i << 22)) 65536; done
bm_kill9 "$PB"
wait_for 10 not_connected "$CA"
ctla promote || fail "$RUN: failover promote refused"
put "$UA" L $((36 << 20)) 65536
echo "=== run 5" >>"$T/rb-beta.log"
bm_start "$CB" beta; PB=$BM_PID
ctlb wait-sync --timeout 60 || fail "$RUN: no resync"
sed -n '/=== run 5/,$p' "$T/rb-beta.log" >"$T/run5.log"
grep -q 'activity extents were open' "$T/run5.log" || fail "$RUN: beta folded nothing"
grep 'peer: generations:' "$T/run5.log" | tail -n 1 | grep -q 'target-bitmap' ||
    fail "$RUN: the crashed primary was not a bitmap sync target"
bm_kill9 "$PB"
"$MIRRORCTL" -c "$CB" show-md --json >"$T/md.json"
oos=$(bm_json .out_of_sync_bytes <"$T/md.json")
assert_eq "$oos" 0 "$RUN: bits the resync cleared on beta came back after its crash"
bm_start "$CB" beta; PB=$BM_PID
ctla wait-sync --timeout 60 || fail "$RUN: no reconnect"
assert_eq "$(field "$CB" connection)" connected "$RUN: beta connected"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "$RUN: disks differ"
