#!/usr/bin/env bash
# Resync I/O errors do not loop: with on-io-error = pass-on, a read error
# on the sync source and a write error on the target each make the resync
# wait 1 s before it goes on (logged), instead of retrying as fast as the
# disk fails; once the disks work again it finishes and both are equal.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_faults   # failpoints under fiu-ctrl
bm_pair 16M on-io-error=pass-on
bm_pair_initial_sync

# resync_with_fault PID FAILPOINT: beta misses 4 MiB, then reconnects
# while FAILPOINT fails every resync chunk for 2.5 s.
resync_with_fault() {
    ctlb disconnect
    "$PYTHON" - "$UA" <<'PY' || fail "a write on the primary failed"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
for i in range(4):
    h.pwrite(b"R" * (1 << 20), (8 + i) << 20)
h.flush()
PY
    bm_fault "$1" "enable name=$2"
    ctlb connect
    sleep 2.5
    bm_fault "$1" "disable name=$2"
    ctla wait-sync --timeout 30 || fail "$2: the resync did not finish once the disk worked"
}
count() { grep -c "$1" "$2" || true; }

resync_with_fault "$PA" disk/read/eio
n=$(count "resync: reading .* failed" "$T/ra-alpha.log")
((n > 0)) || fail "no resync read failed"
((n <= 40)) || fail "the resync retried a failing read $n times in 2.5 s"
grep -q "resync: I/O error: going on in 1000 ms" "$T/ra-alpha.log" ||
    fail "the back-off after a read error was not logged"

resync_with_fault "$PB" disk/write/eio
n=$(count "resync: the peer failed to write" "$T/ra-alpha.log")
((n > 0)) || fail "no resync write failed on the target"
((n <= 40)) || fail "the resync retried a failing write $n times in 2.5 s"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "the disks differ after the resync"
