#!/usr/bin/env bash
# A sync target promoted with --force in the middle of a resync owns its
# data from then on: the old source stops sending resync data, and what
# the new primary writes is never overwritten by the resync (a primary
# refuses resync data).
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_pair 64M resync-rate=4M
bm_pair_initial_sync
pw() {   # pw URI BYTE OFFSET LEN: write LEN bytes of BYTE at OFFSET, 1 MiB at a time
    "$PYTHON" - "$@" <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
off, left = int(sys.argv[3]), int(sys.argv[4])
while left:
    n = min(left, 1 << 20)
    h.pwrite(sys.argv[2].encode() * n, off)
    off += n; left -= n
h.flush()
PY
}

# beta misses 60 MiB of alpha's writes: at 4 MiB/s its resync takes 15 s.
ctlb disconnect
pw "$UA" a 0 $((60 << 20))
ctlb connect
wait_for 20 sh -c "$MIRRORCTL -c $CB status --json | grep -q '\"replication\":\"synctarget\"'"
ctla demote
ctlb promote --force || fail "forced promote of the sync target refused"
# The last MiB is resynced last: beta's own write there must stay.
pw "$UB" B $((59 << 20)) 65536
sleep 4
"$PYTHON" - "$UB" <<'PY' || fail "resync data overwrote the new primary's write"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
got = h.pread(65536, 59 << 20)
sys.exit(0 if got == b"B" * 65536 else "block at 59 MiB: %r..." % got[:8])
PY
bm_alive "$PA" || fail "alpha died"
bm_alive "$PB" || fail "beta died"
