#!/usr/bin/python3
"""oos_cover.py: does the out-of-sync set cover every block that was written?

    oos_cover.py DISK SHOW-MD-JSON

DISK is a backing file that was all zeros when its metadata was created;
SHOW-MD-JSON is the output of `mirrorctl show-md --json` for it.  Checks that
the ranges in "out_of_sync" are sorted, disjoint, granularity-aligned, inside
the data area and add up to "out_of_sync_bytes", and that every 4 KiB block
of the data area that is not all zeros lies inside one of them: a written
block outside the set is a block a resync would never copy.

Prints "N written blocks, all inside M out-of-sync ranges" and exits 0, or
names the first block (or range) at fault and exits 1.  Exits 1 as well when
no block was written at all, since then nothing was checked.
"""
import bisect
import json
import sys

BLOCK = 4096
CHUNK = 1 << 20


def check_ranges(md):
    size, gran = md["data_size"], md["granularity"]
    total, end = 0, 0
    for off, length in md["out_of_sync"]:
        if off < end or length <= 0 or off % gran or off + length > size:
            sys.exit("oos_cover.py: bad out-of-sync range [%d, %d) (data size %d, "
                     "granularity %d, previous range ends at %d)" % (off, off + length, size,
                                                                    gran, end))
        if (off + length) % gran and off + length != size:
            sys.exit("oos_cover.py: range [%d, %d) does not end on a granule"
                     % (off, off + length))
        total += length
        end = off + length
    if total != md["out_of_sync_bytes"]:
        sys.exit("oos_cover.py: ranges add up to %d bytes, out_of_sync_bytes is %d"
                 % (total, md["out_of_sync_bytes"]))


def main(disk, mdfile):
    with open(mdfile) as f:
        md = json.load(f)
    check_ranges(md)
    starts = [r[0] for r in md["out_of_sync"]]
    ends = [r[0] + r[1] for r in md["out_of_sync"]]
    size = md["data_size"]
    zero, zblock = bytes(CHUNK), bytes(BLOCK)
    written = 0
    with open(disk, "rb") as f:
        for base in range(0, size, CHUNK):
            chunk = f.read(min(CHUNK, size - base))
            if chunk == zero[:len(chunk)]:
                continue
            for i in range(0, len(chunk), BLOCK):
                if chunk[i:i + BLOCK] == zblock:
                    continue
                off = base + i
                written += 1
                # The last range starting at or before off must reach past it.
                k = bisect.bisect_right(starts, off) - 1
                if k < 0 or ends[k] < off + BLOCK:
                    sys.exit("oos_cover.py: block at offset %d (4 KiB) was written but is "
                             "not out of sync; nearest range before it: %s"
                             % (off, md["out_of_sync"][k] if k >= 0 else None))
    if written == 0:
        sys.exit("oos_cover.py: no block of %s was written: nothing to check" % disk)
    print("%d written blocks, all inside %d out-of-sync ranges" % (written, len(starts)))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
