#!/usr/bin/env bash
# Short completions (the disk did part of a read or write, as the kernel
# may) are never taken as the whole: the rest is asked for again.  With
# disk/{write,read}/short on both nodes (client writes, replicated writes,
# reads, resync reads) and meta/write/short on the primary (activity-map
# pages), every write and read is whole, no disk is detached for it, and
# the disks are equal once in sync.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_faults   # failpoints under fiu-ctrl
# Small activity extents: the writes below touch cold ones, whose marks are
# written to the metadata first.
bm_pair 16M al-extent-size=64K
bm_pair_initial_sync

# io BYTE MIB: writes 1 MiB of BYTE at MIB (one large write, then pieces of
# 512 B to 12 KiB in its first 64 KiB), reads it back and checks it.
io() {
    "$PYTHON" - "$UA" "$1" "$2" <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
b, off = sys.argv[2].encode(), int(sys.argv[3]) << 20
h.pwrite(b * (1 << 20), off)
for o, n in ((0, 4096), (4096, 512), (8192, 12288), (24576, 1536)):
    h.pwrite(b.lower() * n, off + o)
h.flush()
want = bytearray(b * (1 << 20))
for o, n in ((0, 4096), (4096, 512), (8192, 12288), (24576, 1536)):
    want[o:o + n] = b.lower() * n
for o, n in ((0, 1 << 20), (0, 4096), (4096, 8192), (24576, 1536), (65536, 131072)):
    got = h.pread(n, off + o)
    if got != want[o:o + n]:
        bad = next(i for i in range(n) if got[i] != want[o + i])
        sys.exit("read %d+%d: byte %d is %r, wrote %r" % (off + o, n, bad, got[bad:bad + 1],
                                                          want[o + bad:o + bad + 1]))
PY
}
disk_is() { [[ $(field "$1" disk) == "$2" ]]; }

for f in disk/write/short disk/read/short meta/write/short; do
    bm_fault "$PA" "enable name=$f"
done
for f in disk/write/short disk/read/short; do
    bm_fault "$PB" "enable name=$f"
done
io A 0 || fail "a write or read failed or came back wrong with short completions"
io B 5 || fail "a second write or read failed or came back wrong"
disk_is "$CA" uptodate || fail "alpha's disk is $(field "$CA" disk) after short completions"
disk_is "$CB" uptodate || fail "beta's disk is $(field "$CB" disk) after short completions"

# The resync source reads short too (alpha); beta writes what it gets short.
ctlb disconnect
io C 9 || fail "a write or read on the disconnected primary failed"
ctlb connect
ctla wait-sync --timeout 60 || fail "the resync did not finish with short reads"
disk_is "$CA" uptodate || fail "alpha's disk is $(field "$CA" disk) after the resync"
disk_is "$CB" uptodate || fail "beta's disk is $(field "$CB" disk) after the resync"
for f in disk/write/short disk/read/short meta/write/short; do
    bm_fault "$PA" "disable name=$f"
done
for log in "$T/ra-alpha.log" "$T/rb-beta.log"; do
    ! grep -E "I/O error|write failed|reading .* failed|peer failed|-> failed|detach" "$log" ||
        fail "an error logged for a short completion"
done
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "the disks differ after short completions"
