#!/usr/bin/env bash
# A demote that the peer does not answer in time with every replicated
# write records those writes as local changes: a later connect to a peer
# that moved on without them reports a split brain instead of making this
# node its sync target and overwriting them.  The failpoint peer/apply/hold
# keeps beta from writing alpha's write of block X (async: acknowledged to
# alpha's client when sent); alpha is demoted (it waits half the ping
# timeout for beta's ack, then goes on); beta is killed with -9 before the
# write reaches its disk, restarted and promoted alone (a new generation);
# alpha connects again: its current generation is beta's bitmap
# generation (gen_compare row 40), and only the record of its local
# changes makes that a split brain (row 43).
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_faults
bm_pair 16M protocol=async
bm_pair_initial_sync

X=$((1 << 20)) Y=$((2 << 20))
held() { grep -q 'failpoint peer/apply/hold: holding' "$T/rb-beta.log"; }
conn_settled() { [[ $(field "$CA" connection) == @(splitbrain|connected) ]]; }
md_flags() { ctla show-md --json | bm_json flags; }

# alpha's write of X, acknowledged, waits on beta; alpha is demoted.
bm_fault "$PB" "enable name=peer/apply/hold"
bm_put_block "$UA" 1 "$X"
wait_for 20 held
ctla demote || fail "demote refused"
assert_contains "$T/ra-alpha.log" 'demote: the peer has not written every replicated write' \
    "alpha's demote did not wait out the held write"
flags=$(md_flags)
# beta dies with the write never written; alpha stays away meanwhile.
bm_kill9 "$PB"
ctla disconnect
bm_start "$CB" beta; PB=$BM_PID
ctlb promote || fail "beta refused to be promoted alone"
bm_put_block "$UB" B "$Y"

# alpha comes back: split brain, and its write of X is still there.
ctla connect
wait_for 30 conn_settled
conn=$(field "$CA" connection)
[[ $conn == splitbrain ]] ||
    fail "alpha connected to beta ($(grep -o 'generations: .*' "$T/ra-alpha.log" | tail -n 1))," \
        "not as a split brain; alpha's superblock flags after the demote: $flags"
assert_contains "$T/ra-alpha.log" 'split.brain' "alpha's log says nothing of the split brain"
bm_stop "$PA"; bm_stop "$PB"
assert_eq "$(bm_block_byte "$T/ra.img" "$X")" 1 "block X on alpha's disk (alpha's acknowledged write)"
