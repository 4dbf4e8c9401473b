#!/usr/bin/env bash
# A secondary promoted right after its primary died does not lose a write
# to one of the dead primary's: a replicated write that arrived on a data
# link and is not on the disk yet must not land after the promote, over a
# newer write acknowledged by the new primary.  The failpoint
# peer/apply/hold keeps beta's application of alpha's write of block X
# (version 1) until the test switches it off; alpha is killed with -9;
# beta's peer thread drains its data links (it logs that it waits).  A
# promote meanwhile must wait or be refused (the peer stays known, and
# primary, until its links are closed); whenever it succeeds, version 2
# written through beta must be what beta's disk holds once the held write
# is out, and what alpha gets back from beta at its return.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_faults
bm_pair 16M protocol=async
bm_pair_initial_sync

X=$((1 << 20))
put() { bm_put_block "$1" "$2" "$X"; }   # put URI BYTE: block X all BYTE
# logged PATTERN: in beta's log since the write was held.
logged() {
    sed -n '/failpoint peer\/apply\/hold: holding/,$p' "$T/rb-beta.log" | grep "$1" >/dev/null  # not -q: an early exit would SIGPIPE sed (pipefail)
}
not_connected() { [[ $(field "$CB" connection) != connected ]]; }

# alpha's write of version 1 reaches beta and waits there.
bm_fault "$PB" "enable name=peer/apply/hold"
put "$UA" 1
wait_for 20 logged 'failpoint peer/apply/hold: holding the peer.s write'
bm_kill9 "$PA"
# beta's peer thread has seen alpha go and waits for the held write's link.
wait_for 20 logged 'peer: waiting for [0-9]* data link(s) to close'

# Promoted now, beta takes version 2 at once; refused, it takes it once the
# old write is out.
early=0
if ctlb promote 2>"$T/promote.err"; then
    early=1
    put "$UB" 2
fi
bm_fault "$PB" "disable name=peer/apply/hold"
wait_for 20 logged 'failpoint peer/apply/hold: writing the peer.s write'
wait_for 20 not_connected
if ((early == 0)); then
    echo "promote while alpha's write was held: refused: $(cat "$T/promote.err")"
    ctlb promote || fail "promote refused after alpha's write was applied"
    put "$UB" 2
else
    echo "promote while alpha's write was held: done at once"
fi
assert_eq "$(field "$CB" role)" primary "beta's role"
got=$(bm_block_byte "$UB" "$X")
assert_eq "$got" 2 "block X read from beta after the held write of the dead primary was applied (lost write)"

# alpha returns as sync target and gets version 2.
bm_start "$CA" alpha; PA=$BM_PID
ctlb wait-sync --timeout 30 || fail "alpha did not resync from beta"
assert_eq "$(field "$CA" connection)" connected "alpha's connection (no split brain)"
bm_stop "$PA"; bm_stop "$PB"
assert_eq "$(bm_block_byte "$T/rb.img" "$X")" 2 "block X on beta's disk"
assert_disks_equal "the disks differ at the end"
