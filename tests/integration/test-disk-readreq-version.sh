#!/usr/bin/env bash
# READ_REQ (a diskless primary's reads served by its peer's disk) came with
# protocol version 3: with a peer that speaks only version 2 (the failpoint
# peer/version2 on beta) a diskless primary does not send it -- the older
# peer would end the data link on an unknown message type -- and its reads
# fail with EIO while writes still go to the peer and the link stays up.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_faults
bm_pair 16M
bm_pair_initial_sync
bm_fault "$PB" "enable name=peer/version2"
ctlb disconnect
ctlb connect
ctla wait-connect --timeout 20 || fail "no reconnect with a version 2 peer"

bm_fault "$PA" "enable name=disk/write/eio"
"$PYTHON" - "$UA" <<'PY' || fail "a write on the detaching primary failed"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"W" * 65536, 0)
h.flush()
PY
disk_is() { [[ $(field "$CA" disk) == "$1" ]]; }
wait_for 5 disk_is diskless
ends() { cat "$T/rb-beta.log" "$T/ra-alpha.log" | grep -c "unknown\|closed the link\|link failed" || true; }
ends0=$(ends)
"$PYTHON" - "$UA" <<'PY' || fail "a diskless primary sent READ_REQ to a version 2 peer"
import errno, nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
try:
    h.pread(4096, 0)
except nbd.Error as e:
    sys.exit(0 if e.errno in (errno.EIO, "EIO") else "errno %s" % e.errno)
sys.exit("the read was served")
PY
assert_eq "$(field "$CA" connection)" connected "the link after the read"
"$PYTHON" - "$UA" <<'PY' || fail "a write after the refused read failed"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"X" * 65536, 1 << 20)
h.flush()
PY
assert_eq "$(ends)" "$ends0" "links ended since the read"
bm_stop "$PA"; bm_stop "$PB"
cmp -s <(head -c 65536 "$T/rb.img") <(printf 'W%.0s' $(seq 65536)) || fail "the peer lacks the first write"
