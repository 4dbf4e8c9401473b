#!/usr/bin/env bash
# after-sb-0pri = discard-zero-changes: after a split brain in which only
# alpha wrote, beta (no changes) becomes sync target by itself; with
# discard-least-changes the side with fewer changed blocks does.  No node
# is primary when they meet.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup

write() { "$PYTHON" -c 'import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(bytes([int(sys.argv[3])])*int(sys.argv[4]), int(sys.argv[2])); h.flush()' "$@"; }
split() {   # both promoted apart; alpha writes $1 blocks, beta $2 blocks
    ctlb disconnect; ctla disconnect
    ctla promote; ctlb promote
    for i in $(seq "$1"); do write "$UA" $((i << 20)) 65 4096; done
    for i in $(seq "$2"); do write "$UB" $(((i + 30) << 20)) 66 4096; done
    ctla demote; ctlb demote
}

bm_pair 64M after-sb-0pri=discard-zero-changes
bm_pair_initial_sync
ctla demote
split 3 0
ctla connect; ctlb connect
ctla wait-sync --timeout 30 || fail "discard-zero-changes did not resolve the split brain"
grep -q "target-bitmap" "$T/rb-beta.log" || fail "beta (no changes) was not the sync target"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "disks differ after discard-zero-changes"
rm -f "$T"/r[ab].* "$T/ports"

bm_pair 64M after-sb-0pri=discard-least-changes
bm_pair_initial_sync
ctla demote
split 2 5
ctla connect; ctlb connect
ctla wait-sync --timeout 30 || fail "discard-least-changes did not resolve the split brain"
grep -q "target-bitmap" "$T/ra-alpha.log" || fail "alpha (fewer changes) was not the sync target"
"$PYTHON" -c 'import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); assert h.pread(4096, 31 << 20) == b"B"*4096' "$UA" \
    || fail "beta's changes did not reach alpha"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "disks differ after discard-least-changes"
