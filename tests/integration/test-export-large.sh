#!/usr/bin/env bash
# Requests larger than max-io-size from a client that did not ask for block
# size constraints (the NBD spec: such a server SHOULD accept READ and WRITE
# up to 32 MiB): a 4 MiB and a 32 MiB WRITE through libnbd with
# set_request_block_size(False) are accepted and read back equal, at an
# unaligned offset too, with FUA, on one node and on a replicated pair (both
# disks equal after).  A request over 32 MiB gets EINVAL (READ) or a drop
# (WRITE: the payload is not received), never a hang, and the daemon serves
# the next client.  A client that asked for the constraints keeps them: its
# READ over max-io-size gets EINVAL.
# timeout: 180
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup

MiB=$((1 << 20))

# big_io URI: the large writes and reads, checked in Python.
big_io() {
    "$PYTHON" - "$1" <<'PY'
import nbd, os, sys
MiB = 1 << 20
h = nbd.NBD()
h.set_request_block_size(False)
# libnbd would otherwise refuse, client side, what exceeds the advertised
# maximum; this is the client the spec's default applies to.
h.set_strict_mode(0)
h.connect_uri(sys.argv[1])
pat4 = os.urandom(4 * MiB)
pat32 = os.urandom(32 * MiB)
h.pwrite(pat4, 0)
h.pwrite(pat32, 8 * MiB + 512)                         # unaligned, 33 extents of 1 MiB
h.pwrite(pat4[:3 * MiB], 44 * MiB, flags=nbd.CMD_FLAG_FUA)
assert h.pread(4 * MiB, 0) == pat4, "4 MiB read back differs"
assert h.pread(32 * MiB, 8 * MiB + 512) == pat32, "32 MiB read back differs"
assert h.pread(3 * MiB, 44 * MiB) == pat4[:3 * MiB], "FUA write read back differs"
# Several at once on one connection, each larger than max-io-size.
cookies = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray([i + 1]) * (5 * MiB)), 48 * MiB + i * 5 * MiB // 2)
           for i in range(4)]
while h.aio_in_flight() > 0:
    h.poll(-1)
assert all(h.aio_command_completed(c) for c in cookies), "a large aio write failed"
# Overlapping requests complete in some order; check only that each byte is
# one of the values written.
got = h.pread(int(12.5 * MiB), 48 * MiB)
assert set(got) <= {1, 2, 3, 4}, "overlapping large writes left other data"
# Large READs in flight with small ones, with simple replies (a large
# reply's data is sent piece by piece: no other reply may come between)
# and with structured replies.
for structured in (False, True):
    g = nbd.NBD()
    g.set_request_block_size(False)
    g.set_strict_mode(0)
    g.set_request_structured_replies(structured)
    g.connect_uri(sys.argv[1])
    want = h.pread(32 * MiB, 0) + h.pread(h.get_size() - 32 * MiB, 32 * MiB)
    bufs = []
    for i in range(24):
        off, n = (i // 3 * 5 * MiB + 4096, 5 * MiB + 512) if i % 3 == 0 else (i * MiB + 512, 4096)
        b = nbd.Buffer(n)
        bufs.append((b, off, n, g.aio_pread(b, off)))
    while g.aio_in_flight() > 0:
        g.poll(-1)
    for b, off, n, c in bufs:
        assert g.aio_command_completed(c), "READ failed"
        assert b.to_bytearray() == want[off:off + n], \
            "READ of %d at %d differs (structured %s)" % (n, off, structured)
    g.shutdown()
h.shutdown()
print("ok")
PY
}

# ---- one node ----
bm_single r0 64M
"$MIRRORCTL" -c "$BM_CONF" promote --force
uri=$(bm_nbd_uri r0)
assert_eq "$(big_io "$uri")" ok "large requests on one node"

raw() { "$PYTHON" "$BM_SRC/tests/integration/helpers/nbd_raw.py" "$T/r0.nbd" "$@"; }
assert_eq "$(raw request 0 0 0 $((32 * MiB)))" "error=0 next=ok" "READ of 32 MiB"
assert_eq "$(raw request 0 0 0 $((32 * MiB + 1)))" "error=22 next=ok" "READ over 32 MiB"
assert_eq "$(raw --timeout 5 request 1 0 0 $((32 * MiB + 4096)))" "closed" "WRITE over 32 MiB"
# A client that asked for the block size constraints must keep them.
assert_eq "$(raw --block-size request 0 0 0 $((MiB + 4096)))" "error=22 next=ok" \
    "READ over max-io-size from a client that asked for the constraints"
assert_eq "$(raw --block-size request 0 0 0 "$MiB")" "error=0 next=ok" \
    "READ of max-io-size from a client that asked for the constraints"
bm_alive "$BM_PID" || fail "mirrord died"
assert_contains "$T/r0-alpha.log" "WRITE of $((32 * MiB + 4096)) bytes exceeds the maximum of $((32 * MiB))" \
    "log names the WRITE over 32 MiB"
bm_stop "$BM_PID"

# ---- a replicated pair ----
bm_pair 64M
bm_pair_initial_sync
assert_eq "$(big_io "$UA")" ok "large requests on the primary of a pair"
assert_eq "$(field "$CA" .peer.disk)" uptodate "the peer stayed up to date"
assert_eq "$(field "$CA" replication)" established "replication after large requests"
assert_eq "$(field "$CA" out_of_sync_bytes)" 0 "nothing out of sync after large requests"
bm_stop "$PA"
bm_stop "$PB"
assert_disks_equal "the disks differ after large requests"
