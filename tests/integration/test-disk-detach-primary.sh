#!/usr/bin/env bash
# on-io-error = detach (the default) on a primary connected to an
# up-to-date peer: the write that fails on the local disk, and every later
# one, succeeds once the peer has it; the disk goes failed, then diskless;
# it reconnects without a resync; reads are served from the peer's disk
# (EIO without the peer); the peer holds every write.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_faults   # failpoints under fiu-ctrl
bm_pair 16M
bm_pair_initial_sync

bm_fault "$PA" "enable name=disk/write/eio"
"$PYTHON" - "$UA" <<'PY' || fail "a client write failed although the peer has it"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
for i in range(8):
    h.pwrite(bytes([65 + i]) * (1 << 20), i << 20)
h.flush()
PY
disk_is() { [[ $(field "$CA" disk) == "$1" ]]; }
wait_for 5 disk_is diskless
grep -q "detaching the disk" "$T/ra-alpha.log" || fail "the detach was not logged"
grep -q "disk uptodate -> failed" "$T/ra-alpha.log" || fail "disk never went failed"
# The peer learns it from alpha's next STATE: it may take a moment.
peer_disk_is() { [[ $(field "$CB" peer.disk) == "$1" ]]; }
wait_for 10 peer_disk_is diskless || fail "the peer does not know alpha is diskless"

# Diskless, it reconnects to its peer (without a resync: it has nothing to
# give or take) and goes on writing there.
ctla disconnect
ctla connect
ctla wait-connect --timeout 20 || fail "a diskless primary did not reconnect"
# A diskless primary writes nothing without its peer: the peer, the only
# copy, stays up to date (and promotable) across the disconnect.
assert_eq "$(field "$CB" disk)" uptodate "the peer's disk after the reconnect"
"$PYTHON" - "$UA" <<'PY' || fail "a write after the reconnect failed"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"Z" * (1 << 20), 10 << 20)
h.flush()
PY

"$PYTHON" - "$UA" <<'PY' || fail "a diskless primary's reads are not served from its peer"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
for i in range(8):
    if h.pread(1 << 20, i << 20) != bytes([65 + i]) * (1 << 20):
        sys.exit("MiB %d reads back wrong" % i)
if h.pread(1 << 20, 10 << 20) != b"Z" * (1 << 20):
    sys.exit("the write after the reconnect reads back wrong")
PY
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
"$PYTHON" - "$T/rb.img" <<'PY' || fail "the peer does not hold the writes"
import sys
with open(sys.argv[1], "rb") as f:
    for i in range(8):
        if f.read(1 << 20) != bytes([65 + i]) * (1 << 20):
            sys.exit("MiB %d differs" % i)
    f.seek(10 << 20)
    if f.read(1 << 20) != b"Z" * (1 << 20):
        sys.exit("the write after the reconnect is missing")
PY
