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
# put URI BYTE: block X all BYTE, acknowledged (and flushed) by the node.
put() {
    "$PYTHON" - "$1" "$2" "$X" <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(sys.argv[2].encode() * 4096, int(sys.argv[3]))
h.flush(); h.shutdown()
PY
}
# block_of FILE: the byte block X is made of, or "mixed".
block_of() {
    "$PYTHON" - "$1" "$X" <<'PY'
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(int(sys.argv[2])); b = f.read(4096)
print(chr(b[0]) if b == b[:1] * 4096 and 32 < b[0] < 127 else "mixed")
PY
}
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
got=$("$PYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
b = h.pread(4096, int(sys.argv[2]))
print(chr(b[0]) if b == b[:1] * 4096 else "mixed")' "$UB" "$X")
assert_eq "$got" 2 "block X read from beta after the held write of the dead primary was applied (lost write)"

# alpha returns as sync target and gets version 2.
bm_start "$CA" alpha; PA=$BM_PID
ctlb wait-sync --timeout 30 || fail "alpha did not resync from beta"
assert_eq "$(field "$CA" connection)" connected "alpha's connection (no split brain)"
bm_stop "$PA"; bm_stop "$PB"
assert_eq "$(block_of "$T/rb.img")" 2 "block X on beta's disk"
assert_disks_equal "the disks differ at the end"
