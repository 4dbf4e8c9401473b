#!/usr/bin/env bash
# on-io-error = pass-on: a local disk error goes to the client as EIO (and
# is logged); the disk stays attached, and once the disk works again so do
# the writes.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_faults   # failpoints under fiu-ctrl
bm_pair 16M on-io-error=pass-on
bm_pair_initial_sync

bm_fault "$PA" "enable name=disk/write/eio"
"$PYTHON" - "$UA" <<'PY' || fail "the client did not see EIO with pass-on"
import errno, nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
try:
    h.pwrite(b"X" * 4096, 0)
except nbd.Error as e:
    sys.exit(0 if e.errno in (errno.EIO, "EIO") else "errno %s" % e.errno)
sys.exit("the write succeeded")
PY
grep -q "disk I/O error" "$T/ra-alpha.log" || fail "the disk error was not logged"
assert_eq "$(field "$CA" disk)" uptodate "pass-on leaves the disk attached"

bm_fault "$PA" "disable name=disk/write/eio"
"$PYTHON" - "$UA" <<'PY' || fail "a write after the disk recovered failed"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"Y" * 4096, 0)
PY
bm_stop "$PA"; bm_stop "$PB"
