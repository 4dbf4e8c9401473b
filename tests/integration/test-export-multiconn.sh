#!/usr/bin/env bash
# Several connections at once.  On a secondary every connection is read-only:
# writes fail with EPERM, refused by the server too, and a connection opened
# before promote stays read-only after it.  On a primary, 4 clients write
# interleaved disjoint regions at the same time (down to 512-byte pieces of
# one 4 KiB block); a flush from a fifth connection, then every byte is there,
# over NBD and in the backing file.
# timeout: 90
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup

bm_single r0 64M
conf=$BM_CONF
uri=$(bm_nbd_uri r0)

# Secondary: read-only, by the flags and by the server (write, trim, zero).
MIRRORCTL=$BM_BIN/mirrorctl CONF=$conf "$PYTHON" -c '
import errno, nbd, os, subprocess, sys
uri = sys.argv[1]

def connect():
    h = nbd.NBD()
    h.connect_uri(uri)
    return h

def write_fails(h, what):
    """Write, trim and zero all fail with EPERM."""
    for name, op in (("write", lambda: h.pwrite(b"\x5a" * 4096, 0)),
                     ("trim", lambda: h.trim(4096, 0)),
                     ("zero", lambda: h.zero(4096, 0))):
        try:
            op()
        except nbd.Error as e:
            assert e.errnum == errno.EPERM, "%s: %s failed with %r, expected EPERM" % (what, name, e)
        else:
            raise AssertionError("%s: %s succeeded" % (what, name))

old = [connect() for _ in range(2)]
for h in old:
    assert h.is_read_only(), "export of a secondary is not read-only"
    assert h.pread(4096, 0) == bytes(4096)
write_fails(old[0], "secondary, checked by libnbd")
old[1].set_strict_mode(0)      # send it anyway: the server must refuse
write_fails(old[1], "secondary, checked by the server")
old[1].flush()                 # a flush is harmless, and allowed

subprocess.run([os.environ["MIRRORCTL"], "-c", os.environ["CONF"], "--node", "alpha",
                "promote", "--force"], check=True)
# Connections opened before promote stay read-only ...
assert old[0].is_read_only()
write_fails(old[1], "connection opened before promote")
assert old[1].pread(4096, 0) == bytes(4096), "refused write changed the data"
# ... new ones are read-write.
new = connect()
assert not new.is_read_only(), "new connection to a primary is read-only"
new.pwrite(b"\xa5" * 4096, 0)
assert old[1].pread(4096, 0) == b"\xa5" * 4096, "old connection does not see the write"
for h in old + [new]:
    h.shutdown()
' "$uri"
assert_eq "$(bm_status_field "$conf" .role)" primary "role after promote"

# The data each client writes; shared by the writers and the checker.
cat >"$T/layout.py" <<'EOF'
K = 1024
CLIENTS = 4
def pieces(i):
    """Client i's writes: (offset, data), disjoint from every other client's."""
    out = []
    for k in range(64):        # 64 KiB pieces, interleaved: 16 MiB in all
        out.append(((4 * k + i) * 64 * K + (1 << 20), bytes([0x10 * (i + 1) + k % 16]) * 64 * K))
    for k in range(256):       # 512-byte pieces: 4 clients share each 2 KiB
        out.append(((4 * k + i) * 512 + (24 << 20), bytes([0x80 + 0x10 * i + k % 16]) * 512))
    return out
EOF

# Four writers, each on its own connection; all connect before any writes.
pids=()
for i in 0 1 2 3; do
    LAYOUT=$T I=$i READY=$T/ready.$i GO=$T/go bm_nbdsh -u "$uri" -c '
import os, sys, time
sys.path.insert(0, os.environ["LAYOUT"])
from layout import pieces
assert not h.is_read_only()
open(os.environ["READY"], "w").close()
deadline = time.time() + 30
while not os.path.exists(os.environ["GO"]):
    assert time.time() < deadline, "no go"
    time.sleep(0.01)
cookies = [h.aio_pwrite(data, off) for off, data in pieces(int(os.environ["I"]))]
while cookies:  # a completed command is retired: ask once per cookie
    cookies = [c for c in cookies if not h.aio_command_completed(c)]
    if cookies:
        h.poll(-1)
' &
    pids+=($!)
    bm_kill_at_exit $!
done
wait_for 20 test -f "$T/ready.0" -a -f "$T/ready.1" -a -f "$T/ready.2" -a -f "$T/ready.3"
touch "$T/go"
for i in 0 1 2 3; do
    rc=0
    wait "${pids[i]}" || rc=$?
    assert_eq "$rc" 0 "exit status of writer $i"
done

# A flush from a connection that wrote nothing, then the check from yet
# another one, and in the file.
bm_nbdsh -u "$uri" -c 'h.flush()'
LAYOUT=$T IMG=$T/r0.img bm_nbdsh -u "$uri" -c '
import os, sys
sys.path.insert(0, os.environ["LAYOUT"])
from layout import CLIENTS, pieces
fd = os.open(os.environ["IMG"], os.O_RDONLY)
n = 0
for i in range(CLIENTS):
    for off, data in pieces(i):
        assert h.pread(len(data), off) == data, "client %d: NBD read at %d differs" % (i, off)
        assert os.pread(fd, len(data), off) == data, "client %d: backing file at %d differs" % (i, off)
        n += len(data)
assert n == 4 * (64 * 64 * 1024 + 256 * 512)
# Around the regions: untouched.
assert h.pread(4096, (1 << 20) - 4096) == bytes(4096)
assert h.pread(4096, (17 << 20)) == bytes(4096)
assert h.pread(4096, (24 << 20) + 512 * 1024) == bytes(4096)
'
bm_stop "$BM_PID"
