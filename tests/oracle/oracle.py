#!/usr/bin/python3
"""The acknowledged-write oracle: a client that writes self-describing
blocks through an NBD export and logs what it was told, and a checker that
judges a disk image against that log.

  oracle.py write URI LOG --blocks N [--first B] [--bs 4096] [--depth 8]
                  [--stop FILE] [--max-writes N] [--flush-every N] [--seed S]
  oracle.py check IMAGE LOG [--bs 4096] [--upto LINE]

Every block written names itself: magic, its block number, a version and a
SHA-256 of the rest.  The writer keeps up to --depth writes in flight (never
two on one block: NBD does not order writes in flight) and logs, one line
each, "I BLOCK VER" before it issues a write and "A BLOCK VER" once it was
acknowledged ("F" for an acknowledged flush).  It stops when --stop exists,
after --max-writes, or on an error (exit 0: the log is what counts).

The checker reads IMAGE and, for every block the log names, reports:
  lost       the image holds an older version than one acknowledged
  torn       the block's checksum does not match (a mix of two writes)
  misplaced  the block names another block number
  unissued   a version the writer never issued
Exit 0 when clean, 1 with one line per bad block, then a summary line.
--upto judges only the first LINE lines of the log (a snapshot in time).
"""
import argparse
import hashlib
import os
import random
import struct
import sys

MAGIC = b"BMORACL1"
HDR = struct.Struct("<8sQQ")          # magic, block, version
SUM = 32


def block_bytes(block, ver, bs):
    head = HDR.pack(MAGIC, block, ver)
    fill = hashlib.sha256(head).digest() * ((bs - HDR.size - SUM) // SUM + 1)
    body = head + fill[: bs - HDR.size - SUM]
    return body + hashlib.sha256(body).digest()


def parse_block(data):
    """(block, version) of a block, 'zero', or 'torn'."""
    if data.count(0) == len(data):
        return "zero"
    body, digest = data[:-SUM], data[-SUM:]
    if hashlib.sha256(body).digest() != digest:
        return "torn"
    magic, block, ver = HDR.unpack_from(body)
    if magic != MAGIC:
        return "torn"
    return block, ver


def cmd_write(a):
    import nbd
    rng = random.Random(a.seed)
    h = nbd.NBD()
    h.connect_uri(a.uri)
    log = open(a.log, "a", buffering=1)
    ver = {}
    inflight = {}                       # cookie -> (block, version)
    busy = set()
    issued = 0
    since_flush = 0
    flush_cookie = None

    def reap():
        nonlocal flush_cookie
        for c in list(inflight):
            if h.aio_command_completed(c):
                b, v = inflight.pop(c)
                busy.discard(b)
                log.write("A %d %d\n" % (b, v))
        if flush_cookie is not None and h.aio_command_completed(flush_cookie):
            flush_cookie = None
            log.write("F\n")

    def want_more():
        return not (a.stop and os.path.exists(a.stop)) and \
            (not a.max_writes or issued < a.max_writes)

    try:
        while True:
            while want_more() and len(inflight) < a.depth and len(busy) < a.blocks:
                b = a.first + rng.randrange(a.blocks)
                while b in busy:
                    b = a.first + rng.randrange(a.blocks)
                v = ver.get(b, 0) + 1
                ver[b] = v
                log.write("I %d %d\n" % (b, v))
                c = h.aio_pwrite(block_bytes(b, v, a.bs), b * a.bs)
                inflight[c] = (b, v)
                busy.add(b)
                issued += 1
                since_flush += 1
            if a.flush_every and since_flush >= a.flush_every and flush_cookie is None:
                flush_cookie = h.aio_flush()
                since_flush = 0
            if not inflight and flush_cookie is None:
                break
            h.poll(-1)
            reap()
    except nbd.Error as e:
        log.write("E %s\n" % str(e).replace("\n", " "))
    log.close()
    return 0


def read_log(path, upto):
    issued, acked = {}, {}
    with open(path) as f:
        for n, line in enumerate(f):
            if upto and n >= upto:
                break
            if not line.endswith("\n"):
                break                   # a line still being written
            p = line.split()
            if p[0] == "I":
                issued.setdefault(int(p[1]), set()).add(int(p[2]))
            elif p[0] == "A":
                b, v = int(p[1]), int(p[2])
                acked[b] = max(acked.get(b, 0), v)
    return issued, acked


def cmd_check(a):
    issued, acked = read_log(a.log, a.upto)
    bad = {"lost": 0, "torn": 0, "misplaced": 0, "unissued": 0}
    with open(a.image, "rb") as img:
        for b in sorted(issued):
            img.seek(b * a.bs)
            got = parse_block(img.read(a.bs))
            want = acked.get(b, 0)
            kind = None
            if got == "torn":
                kind, what = "torn", "checksum mismatch"
            elif got == "zero":
                if want:
                    kind, what = "lost", "zeros, acknowledged version %d" % want
            elif got[0] != b:
                kind, what = "misplaced", "holds block %d version %d" % got
            elif got[1] not in issued[b]:
                kind, what = "unissued", "version %d never issued" % got[1]
            elif got[1] < want:
                kind, what = "lost", "version %d, acknowledged version %d" % (got[1], want)
            if kind:
                bad[kind] += 1
                print("block %d: %s: %s" % (b, kind, what))
    nack = sum(acked.values())
    print("oracle: %d blocks, %d acknowledged writes; lost %d, torn %d, misplaced %d, unissued %d"
          % (len(issued), nack, bad["lost"], bad["torn"], bad["misplaced"], bad["unissued"]))
    return 1 if any(bad.values()) else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("uri")
    w.add_argument("log")
    w.add_argument("--blocks", type=int, required=True)
    w.add_argument("--first", type=int, default=0)
    w.add_argument("--bs", type=int, default=4096)
    w.add_argument("--depth", type=int, default=8)
    w.add_argument("--stop")
    w.add_argument("--max-writes", type=int, default=0)
    w.add_argument("--flush-every", type=int, default=0)
    w.add_argument("--seed", type=int, default=1)
    c = sub.add_parser("check")
    c.add_argument("image")
    c.add_argument("log")
    c.add_argument("--bs", type=int, default=4096)
    c.add_argument("--upto", type=int, default=0)
    a = ap.parse_args()
    return cmd_write(a) if a.cmd == "write" else cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
