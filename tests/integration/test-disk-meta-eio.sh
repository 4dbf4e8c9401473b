#!/usr/bin/env bash
# A metadata write error on a primary connected to an up-to-date peer
# detaches the disk (on-io-error = detach) instead of failing every later
# write: the writes go on to the peer, which holds them all.
# META_EIO_POLICY=pass-on runs it with on-io-error = pass-on, which passes
# data errors on but, as DRBD's, detaches on a metadata error too: the
# metadata cannot record what is out of sync any more
# (test-disk-meta-eio-passon.sh).
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_faults   # failpoints under fiu-ctrl
# Small activity extents: each write below touches a cold one, whose mark
# must be written to the metadata first.
bm_pair 16M al-extent-size=64K on-io-error="${META_EIO_POLICY:-detach}"
bm_pair_initial_sync

bm_fault "$PA" "enable name=meta/write/eio"
"$PYTHON" - "$UA" <<'PY' || fail "a client write failed after a metadata error"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
for i in range(16):
    h.pwrite(bytes([65 + i]) * 65536, i << 20)
h.flush()
PY
disk_is() { [[ $(field "$CA" disk) == "$1" ]]; }
wait_for 5 disk_is diskless
grep -q "a metadata write failed.*detaching the disk (on-io-error = ${META_EIO_POLICY:-detach}" "$T/ra-alpha.log" ||
    fail "the detach on a metadata error was not logged"
bm_stop "$PA"; bm_stop "$PB"
"$PYTHON" - "$T/rb.img" <<'PY' || fail "the peer does not hold the writes"
import sys
with open(sys.argv[1], "rb") as f:
    for i in range(16):
        f.seek(i << 20)
        if f.read(65536) != bytes([65 + i]) * 65536:
            sys.exit("write %d differs" % i)
PY
