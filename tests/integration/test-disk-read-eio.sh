#!/usr/bin/env bash
# on-io-error = detach on a primary connected to an up-to-date peer: the
# read that fails on the local disk is served from the peer's disk, as
# every later one (the failed write likewise completes on the peer).
# Without an up-to-date peer it fails with EIO.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_faults   # failpoints under fiu-ctrl
bm_pair 16M
bm_pair_initial_sync
"$PYTHON" - "$UA" <<'PY' || fail "the writes failed"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
for i in range(4):
    h.pwrite(bytes([65 + i]) * (1 << 20), i << 20)
h.flush()
PY

bm_fault "$PA" "enable name=disk/read/eio"
"$PYTHON" - "$UA" <<'PY' || fail "the read that failed locally was not served by the peer"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
for i in range(4):
    if h.pread(1 << 20, i << 20) != bytes([65 + i]) * (1 << 20):
        sys.exit("MiB %d reads back wrong" % i)
PY
disk_is() { [[ $(field "$CA" disk) == "$1" ]]; }
wait_for 5 disk_is diskless
grep -q "a read at 0+1048576 failed: Input/output error: detaching the disk" "$T/ra-alpha.log" ||
    fail "the detach on a read error was not logged"
bm_fault "$PA" "disable name=disk/read/eio"

# Without the peer, nothing can serve a read.
ctla disconnect
"$PYTHON" - "$UA" <<'PY' || fail "a read on a diskless primary without its peer did not fail with EIO"
import errno, nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
try:
    h.pread(4096, 0)
except nbd.Error as e:
    sys.exit(0 if e.errno in (errno.EIO, "EIO") else "errno %s" % e.errno)
sys.exit("the read succeeded")
PY
bm_stop "$PA"; bm_stop "$PB"
