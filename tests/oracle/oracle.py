#!/usr/bin/python3
"""The acknowledged-write oracle: a client that writes self-describing
blocks through an NBD export or a block device and logs what it was told,
and a checker that judges a disk image against that log.

  oracle.py write TARGET LOG --blocks N [--first B] [--bs 4096] [--depth 8]
                  [--stop FILE] [--max-writes N] [--flush-every N] [--seed S]
  oracle.py check IMAGE LOG [--bs 4096] [--upto LINE]

Every block written names itself: magic, its block number, a version and a
SHA-256 of the rest.  The writer keeps up to --depth writes in flight (never
two on one block: NBD does not order writes in flight) and logs, one line
each, "I BLOCK VER" before it issues a write and "A BLOCK VER" once it was
acknowledged ("F" for an acknowledged flush).  It stops when --stop exists,
after --max-writes, or on an error (exit 0: the log is what counts).

TARGET is an NBD URI (nbd://, nbd+unix://...: libnbd's asynchronous
commands) or a path (/dev/ublkb0, or a file): then it is opened with
O_DIRECT, so that an acknowledgement means the device completed the write,
not the page cache, and --depth threads each do one pwrite at a time from
a page-aligned buffer (mmap); a flush is an fdatasync on the same file
descriptor, issued beside the writes as NBD mode does.  Python releases
its lock around pwrite, so the writes really are in flight together.

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


class Writer:
    """The write loop, common to both targets: which block, which version,
    the log.  A target provides start_write, start_flush, and wait, which
    blocks until something completed and returns [(kind, token)]."""

    def __init__(self, a, target):
        self.a, self.t = a, target
        self.rng = random.Random(a.seed)
        self.log = open(a.log, "a", buffering=1)

    def want_more(self, issued):
        a = self.a
        return not (a.stop and os.path.exists(a.stop)) and \
            (not a.max_writes or issued < a.max_writes)

    def run(self):
        a, t, log, rng = self.a, self.t, self.log, self.rng
        ver, inflight, busy = {}, {}, set()
        issued = since_flush = 0
        flushing = False
        while True:
            while self.want_more(issued) and len(inflight) < a.depth and \
                    len(busy) < a.blocks:
                b = a.first + rng.randrange(a.blocks)
                while b in busy:
                    b = a.first + rng.randrange(a.blocks)
                v = ver.get(b, 0) + 1
                ver[b] = v
                log.write("I %d %d\n" % (b, v))
                tok = t.start_write(block_bytes(b, v, a.bs), b * a.bs)
                inflight[tok] = (b, v)
                busy.add(b)
                issued += 1
                since_flush += 1
            if a.flush_every and since_flush >= a.flush_every and not flushing:
                t.start_flush()
                flushing = True
                since_flush = 0
            if not inflight and not flushing:
                break
            for kind, tok in t.wait():
                if kind == "F":
                    flushing = False
                    log.write("F\n")
                else:
                    b, v = inflight.pop(tok)
                    busy.discard(b)
                    log.write("A %d %d\n" % (b, v))

    def close(self, err=None):
        if err is not None:
            self.log.write("E %s\n" % str(err).replace("\n", " "))
        self.log.close()


class DevTarget:
    """A block device (or a file) with O_DIRECT and a pool of threads."""

    def __init__(self, path, depth, bs):
        import mmap
        import queue
        import threading
        self.fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
        self.bs = bs
        self.jobs, self.done = queue.Queue(), queue.Queue()
        self.free = [mmap.mmap(-1, bs) for _ in range(depth)]   # page-aligned
        self.next = 0
        for _ in range(depth + 1):      # + 1: a flush beside full depth
            threading.Thread(target=self.worker, daemon=True).start()

    def worker(self):
        while True:
            kind, tok, buf, off = self.jobs.get()
            try:
                if kind == "F":
                    os.fdatasync(self.fd)
                else:
                    n = os.pwrite(self.fd, buf, off)
                    if n != self.bs:
                        raise OSError("short write: %d of %d bytes at %d" % (n, self.bs, off))
                self.done.put((kind, tok, buf, None))
            except OSError as e:
                self.done.put((kind, tok, buf, e))

    def start_write(self, data, off):
        buf = self.free.pop()
        buf[:] = data
        self.next += 1
        self.jobs.put(("W", self.next, buf, off))
        return self.next

    def start_flush(self):
        self.jobs.put(("F", None, None, None))

    def wait(self):
        out = [self.done.get()]
        while not self.done.empty():
            out.append(self.done.get())
        res = []
        for kind, tok, buf, err in out:
            if err is not None:
                raise err
            if buf is not None:
                self.free.append(buf)
            res.append((kind, tok))
        return res


class NbdTarget:
    """libnbd's asynchronous commands."""

    def __init__(self, uri):
        import nbd
        self.h = nbd.NBD()
        self.h.connect_uri(uri)
        self.inflight = set()
        self.flush = None

    def start_write(self, data, off):
        c = self.h.aio_pwrite(data, off)
        self.inflight.add(c)
        return c

    def start_flush(self):
        self.flush = self.h.aio_flush()

    def wait(self):
        res = []
        while not res:
            self.h.poll(-1)
            for c in list(self.inflight):
                if self.h.aio_command_completed(c):
                    self.inflight.discard(c)
                    res.append(("A", c))
            if self.flush is not None and self.h.aio_command_completed(self.flush):
                self.flush = None
                res.append(("F", None))
        return res


def cmd_write(a):
    if "://" in a.target:
        import nbd
        errors = (nbd.Error,)
        make = lambda: NbdTarget(a.target)
    else:
        errors = (OSError,)
        make = lambda: DevTarget(a.target, a.depth, a.bs)
    w = None
    try:
        w = Writer(a, make())
        w.run()
    except errors as e:
        if w is None:
            raise
        w.close(e)
        if not isinstance(w.t, NbdTarget):
            # Threads may still wait in a pwrite the device holds: do not
            # join them.
            os._exit(0)
    w.close()
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
    w.add_argument("target", help="an NBD URI, or a block device or file")
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
