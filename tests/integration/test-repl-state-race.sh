#!/usr/bin/env bash
# The peer thread's state changes and the operator's role changes do not
# undo each other: a promote that runs while the peer thread records that
# the peer went away keeps its role, in the state and in the metadata, and
# a demote likewise.  (The failpoint peer/state/slow holds each connection
# state change of alpha's peer thread for half a second; a read of the
# whole state, then a write back of it, would write the old role back.)
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
bm_faults
bm_pair 16M
bm_pair_initial_sync
ctla demote >/dev/null || fail "demote"
bm_fault "$PA" "enable name=peer/state/slow"

# beta leaves; alpha's peer thread records it slowly, alpha is promoted.
ctlb disconnect &
dpid=$!
sleep 0.2
ctla promote || fail "promote refused"
wait "$dpid" || fail "beta's disconnect failed"
sleep 1.5   # every held change has been written
assert_eq "$(field "$CA" role)" primary "alpha's role after the promote and the teardown"
ctla show-md --json >"$T/md.json"
grep -q '"primary"' "$T/md.json" || fail "the metadata lost the primary flag: $(cat "$T/md.json")"

# beta comes back; alpha's peer thread records it slowly, alpha is demoted.
ctlb connect
sleep 0.2
ctla demote || fail "demote refused"
ctla wait-connect --timeout 20 || fail "no reconnect"
sleep 1.5
assert_eq "$(field "$CA" role)" secondary "alpha's role after the demote and the connect"
bm_fault "$PA" "disable name=peer/state/slow"
ctla promote || fail "promote at the end"
ctla wait-sync --timeout 30 || fail "not in sync"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "at the end"
