#!/usr/bin/env bash
# A switchover whose demote did not wait out the peer's writes loses none
# of the new primary's.  alpha's demote waits half the ping timeout for
# beta to write what alpha sent, then goes on (recording local changes)
# and tells beta it is secondary; a write that beta's disk had not taken
# by then is still on its way there.  The failpoint peer/apply/hold keeps
# beta's application of alpha's write of block X (version 1) until the
# test switches it off; beta is promoted, still connected to the demoted
# alpha, or while its peer thread drains the links after alpha
# disconnected (the peer is known, but secondary: "peer is primary" does
# not stop it).  That promote must wait for the held write, or be
# refused; whenever it succeeds, version 2 written through beta must be
# what beta holds once the held write is out.  Connected, alpha must hold
# version 2 too (the mirror stays in sync: nothing marks the block out of
# sync).  A third round ("drained") lets the held write go while the
# promote after the disconnect waits for it: the promote succeeds, and
# beta, primary alone, starts a generation of its own with its first
# write (alpha's teardown and beta's promote are ordered: either the
# promote sees the session gone, or the teardown sees the new primary).
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_faults

X=$((1 << 20))
put() { bm_put_block "$1" "$2" "$X"; }   # put URI BYTE: block X all BYTE
# lines NODE: a node's log in this round (the logs go on across rounds).
lines() { tail -n +"${from[$1]}" "$T/r${1:0:1}-$1.log"; }
# logged PATTERN: in beta's log since the write was held.
logged() { lines beta | sed -n '/failpoint peer\/apply\/hold: holding/,$p' | grep "$1" >/dev/null; }  # not -q: SIGPIPE (pipefail)

declare -A from=([alpha]=1 [beta]=1)
for how in connected disconnect drained; do
    rm -f "$T/ra.img" "$T/rb.img"
    for n in alpha beta; do
        [[ ! -f $T/r${n:0:1}-$n.log ]] || from[$n]=$(($(wc -l <"$T/r${n:0:1}-$n.log") + 1))
    done
    bm_pair 16M protocol=async
    bm_pair_initial_sync

    # alpha's write of version 1 reaches beta and waits there; alpha is
    # demoted without beta's answer.
    bm_fault "$PB" "enable name=peer/apply/hold"
    put "$UA" 1
    wait_for 20 logged 'failpoint peer/apply/hold: holding the peer.s write'
    ctla demote || fail "$how: demote refused"
    lines alpha | grep 'demote: the peer has not written every replicated write' >/dev/null ||
        fail "$how: alpha's demote did not wait out the held write"
    assert_eq "$(field "$CB" peer.role)" secondary "$how: alpha's role as beta knows it"
    if [[ $how != connected ]]; then
        ctla disconnect
        wait_for 20 logged 'peer: waiting for [0-9]* data link(s) to close'
    fi

    # Promoted now, beta takes version 2 at once; refused, it takes it
    # once the old write is out.
    early=0
    if [[ $how == drained ]]; then
        ctlb promote >"$T/promote.err" 2>&1 &
        pp=$!
        wait_for 20 logged 'promote: waiting for [0-9]* write(s) received from the peer'
        # The promote's superblock write slowed: the teardown that the
        # held write kept going gets to its end before the promote
        # stores the role, unless the two are ordered.
        bm_fault "$PB" "enable name=meta/write/slow"
        bm_fault "$PB" "disable name=peer/apply/hold"
        wait "$pp" || fail "$how: the promote that waited for the held write was refused:" \
            "$(cat "$T/promote.err")"
        bm_fault "$PB" "disable name=meta/write/slow"
        put "$UB" 2
        early=2
    elif ctlb promote 2>"$T/promote.err"; then
        early=1
        put "$UB" 2
    fi
    ((early == 2)) || bm_fault "$PB" "disable name=peer/apply/hold"
    wait_for 20 logged 'failpoint peer/apply/hold: writing the peer.s write'
    if ((early == 2)); then
        echo "$how: the promote waited for alpha's held write, then went through"
    elif ((early == 0)); then
        echo "$how: promote while alpha's write was held: refused: $(cat "$T/promote.err")"
        ctlb promote || fail "$how: promote refused after alpha's write was applied"
        put "$UB" 2
    else
        echo "$how: promote while alpha's write was held: done at once"
    fi
    assert_eq "$(field "$CB" role)" primary "$how: beta's role"
    assert_eq "$(bm_block_byte "$UB" "$X")" 2 \
        "$how: block X read through beta after alpha's held write was applied (lost write)"

    if [[ $how == connected ]]; then
        # The mirror is whole: alpha has what beta's users wrote.
        ctlb wait-sync --timeout 30 || fail "$how: not in sync"
        bm_stop "$PA"; bm_stop "$PB"
        assert_disks_equal "$how: the disks differ (block X: alpha and beta hold different versions)"
    else
        if [[ $how == drained ]]; then
            ga=$(ctla show-md --json | bm_json generations.current)
            gb=$(ctlb show-md --json | bm_json generations.current)
            [[ $ga != "$gb" ]] || fail "$how: beta wrote alone, as primary, at the generation" \
                "alpha has too ($gb): a later connect could not tell its writes"
        fi
        bm_stop "$PA"; bm_stop "$PB"
    fi
done
