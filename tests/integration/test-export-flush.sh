#!/usr/bin/env bash
# Writes, FUA writes, flushes, trims and zeroes through nbdsh: once each
# request's reply is in, the backing file (read directly, daemon running)
# holds the bytes.  Trim punches a hole and reads back as zeros, unaligned
# too; zero reads back as zeros, and with NO_HOLE allocates.  Every block
# written counts as out of sync on a standalone primary.
# timeout: 60
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup

bm_single r0 64M
conf=$BM_CONF
"$MIRRORCTL" -c "$conf" promote --force
uri=$(bm_nbd_uri r0)
oos_before=$(bm_status_field "$conf" .out_of_sync_bytes)
gran=4096  # create-md's default granularity

IMG=$T/r0.img GRAN=$gran OUT=$T/covered bm_nbdsh -u "$uri" -c '
import os
K, M = 1 << 10, 1 << 20
FUA, NO_HOLE = nbd.CMD_FLAG_FUA, nbd.CMD_FLAG_NO_HOLE
fd = os.open(os.environ["IMG"], os.O_RDONLY)
gran = int(os.environ["GRAN"])
model = bytearray(8 * M)   # what the first 8 MiB must hold
touched = set()            # granules changed

def did(off, data):
    model[off:off + len(data)] = data
    touched.update(range(off // gran, (off + len(data) - 1) // gran + 1))

def check(what, off, n):
    """NBD, the backing file and the model agree on [off, off+n)."""
    want = bytes(model[off:off + n])
    got = b"".join(h.pread(min(M, off + n - o), o) for o in range(off, off + n, M))
    assert got == want, "%s: NBD read at %d+%d differs" % (what, off, n)
    assert os.pread(fd, n, off) == want, "%s: backing file at %d+%d differs" % (what, off, n)

def pat(c, n):
    return bytes([c]) * n

# A write, then a flush.
h.pwrite(pat(0xa1, 64 * K), 0); did(0, pat(0xa1, 64 * K))
h.flush()
check("write+flush", 0, 64 * K)

# FUA writes need no flush, 4 KiB aligned or only 512-byte aligned.
h.pwrite(pat(0xb2, 8 * K), M, FUA); did(M, pat(0xb2, 8 * K))
check("FUA write", M, 8 * K)
h.pwrite(pat(0xb3, 1536), M + 8 * K + 512, FUA); did(M + 8 * K + 512, pat(0xb3, 1536))
check("unaligned FUA write", M, 16 * K)

# Even without FUA or flush, a completed write is in the file (not in a
# buffer of the daemon).
h.pwrite(pat(0xb4, 4 * K), M + 64 * K); did(M + 64 * K, pat(0xb4, 4 * K))
check("plain write", M + 64 * K, 4 * K)

# A flush from the same connection after several writes in flight.
cookies = [h.aio_pwrite(pat(0xc0 + i, 32 * K), 6 * M + i * 32 * K) for i in range(8)]
for i in range(8):
    did(6 * M + i * 32 * K, pat(0xc0 + i, 32 * K))
while cookies:  # a completed command is retired: ask once per cookie
    cookies = [c for c in cookies if not h.aio_command_completed(c)]
    if cookies:
        h.poll(-1)
h.flush()
check("aio writes+flush", 6 * M, 256 * K)

# Trim: a hole, reading back as zeros; the neighbours stay.
h.pwrite(pat(0xd4, 512 * K), 2 * M); did(2 * M, pat(0xd4, 512 * K))
h.trim(128 * K, 2 * M + 64 * K); did(2 * M + 64 * K, bytes(128 * K))
check("trim", 2 * M, 512 * K)
assert os.lseek(fd, 2 * M + 64 * K, os.SEEK_HOLE) == 2 * M + 64 * K, "trim left no hole"
h.trim(512, 2 * M + 8 * K + 512); did(2 * M + 8 * K + 512, bytes(512))
h.trim(4 * K + 1024, 2 * M + 256 * K + 3 * K); did(2 * M + 256 * K + 3 * K, bytes(5 * K))
h.trim(4 * K, 2 * M + 400 * K, FUA); did(2 * M + 400 * K, bytes(4 * K))
check("unaligned and FUA trims", 2 * M, 512 * K)

# Zero, without and with NO_HOLE.
h.pwrite(pat(0xe5, 512 * K), 3 * M); did(3 * M, pat(0xe5, 512 * K))
h.zero(64 * K, 3 * M + 64 * K); did(3 * M + 64 * K, bytes(64 * K))
h.zero(64 * K, 3 * M + 192 * K, NO_HOLE); did(3 * M + 192 * K, bytes(64 * K))
h.zero(1024, 3 * M + 300 * K + 512, NO_HOLE | FUA); did(3 * M + 300 * K + 512, bytes(1024))
h.zero(1024, 3 * M + 400 * K + 1536); did(3 * M + 400 * K + 1536, bytes(1024))
check("zero", 3 * M, 512 * K)

# NO_HOLE over a hole allocates the range.
assert os.lseek(fd, 4 * M, os.SEEK_HOLE) == 4 * M, "4 MiB is not a hole to begin with"
before = os.fstat(fd).st_blocks * 512
h.zero(M, 4 * M, NO_HOLE); did(4 * M, bytes(M))
grown = os.fstat(fd).st_blocks * 512 - before
assert grown >= M, "zero with NO_HOLE allocated %d bytes, expected %d" % (grown, M)

h.flush()
check("everything", 0, 8 * M)
# The same over a connection without structured replies.
h2 = nbd.NBD()
h2.set_request_structured_replies(False)
h2.connect_uri(h.get_uri())
assert not h2.get_structured_replies_negotiated()
for o in range(0, 8 * M, M):
    assert h2.pread(M, o) == model[o:o + M], "simple reply: read at %d differs" % o
h2.shutdown()
with open(os.environ["OUT"], "w") as f:
    f.write("%d\n" % (len(touched) * gran))
'

covered=$(<"$T/covered")
((covered > 2 * 1024 * 1024)) || fail "only $covered bytes written?"
oos=$(bm_status_field "$conf" .out_of_sync_bytes)
((oos >= oos_before + covered)) ||
    fail "out_of_sync_bytes: $oos_before before, $oos after $covered bytes written (expected at least $((oos_before + covered)))"
bm_stop "$BM_PID"
