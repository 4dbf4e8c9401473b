#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets (tests/fuzz/corpus/).

Each seed is a small valid input, built here from the documented formats
(blkmirror-protocol(7), the NBD spec, daemon/meta.c, blkmirror.conf(5)),
so the fuzzer starts past the first checks.  Inputs a fuzzer found (crash-*)
are not written here: they stay in the corpus as they were found.
Run from anywhere: tests/fuzz/mkcorpus.py
"""
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- proto/px.c: byte 0 picks the decoder, byte 1 max_data ----
PX_MAGIC = 0x424D5831


def px_hdr(typ, length, flags=0, ident=0):
    return struct.pack(">IHHIIQ", PX_MAGIC, typ, flags, length, 0, ident)


def px_state(role=1, disk=0, size=1 << 30, gran=4096):
    return struct.pack(">BBHIQII", role, disk, 0, 3, size, gran, 0) + \
        struct.pack(">6Q", 0x1235, 0x4, 0, 0, 0, 0) + struct.pack(">QQ", 7, 0xfeed)


hdrs = [(1, 216), (2, 32), (3, 32), (4, 0), (16, 88), (17, 8 + 64), (18, 0),
        (19, 0), (21, 88), (22, 0), (32, 16 + 4096), (33, 8), (34, 0), (35, 0),
        (37, 16 + 512), (39, 16), (40, 16), (41, 48), (42, 16)]
for typ, ln in hdrs:
    put("px", "hdr-%d" % typ, b"\0\0" + px_hdr(typ, ln, ident=9))
put("px", "hdr-write-fua", b"\0\x0c" + px_hdr(32, 16 + 4096, flags=1, ident=1))
put("px", "io", b"\1\0" + struct.pack(">QII", 1 << 20, 4096, 0))
put("px", "data", b"\2\0" + struct.pack(">QII", 8192, 8, 0) + b"A" * 8)
put("px", "ack", b"\3\0" + struct.pack(">iI", -5, 0))
put("px", "state", b"\4\0" + px_state())
put("px", "bitmap", b"\5\0" + struct.pack(">Q", 64) + b"\xff\x00\x0f")
put("px", "csum", b"\6\0" + struct.pack(">QII", 0, 4096, 0) + bytes(range(32)))
put("px", "null", b"\7\0")

# ---- proto/px_auth.c: byte 0 the role, then what the peer sends ----


def name(s):
    return s.encode().ljust(64, b"\0")


def hello(node, peer, link=1, queue=0, session=0, vmin=1, vmax=2, feat=3):
    return struct.pack(">IIIHHQ", vmin, vmax, feat, link, queue, session) + \
        name(node) + name(peer) + name("r0")


SESSION = 0x1122334455667788
# listener (mode 0): the connector's HELLO, its AUTH and CHALLENGE
put("px_auth", "listener-meta", b"\0" + px_hdr(1, 216) + hello("alpha", "beta") +
    px_hdr(3, 32) + b"\1" * 32 + px_hdr(2, 32) + b"\2" * 32)
put("px_auth", "listener-data", b"\6" + px_hdr(1, 216) +
    hello("alpha", "beta", link=2, queue=1, session=SESSION) + px_hdr(3, 32) + b"\1" * 32)
put("px_auth", "listener-v1", b"\0" + px_hdr(1, 216) + hello("alpha", "beta", vmax=1))
# connector (mode 1): the listener's HELLO, CHALLENGE, then AUTH_OK and AUTH
put("px_auth", "connector-meta", b"\1" + px_hdr(1, 216) + hello("beta", "alpha") +
    px_hdr(2, 32) + b"\3" * 32 + px_hdr(4, 0) + px_hdr(3, 32) + b"\4" * 32)
put("px_auth", "connector-data", b"\3" + px_hdr(1, 216) +
    hello("beta", "alpha", link=2, session=SESSION) + px_hdr(2, 32) + b"\3" * 32)

# ---- ublk/nbd_hs.c: byte 0 the export, then the client ----
IHAVEOPT = 0x49484156454F5054


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def info(nm, reqs):
    return struct.pack(">I", len(nm)) + nm + struct.pack(">H", len(reqs)) + \
        b"".join(struct.pack(">H", r) for r in reqs)


FLAGS = struct.pack(">I", 3)  # FIXED_NEWSTYLE | NO_ZEROES
put("nbd_hs", "export-name", b"\0" + FLAGS + opt(1, b"r0"))
put("nbd_hs", "go", b"\1" + FLAGS + opt(8) + opt(6, info(b"r0", [0, 1, 2, 3])) +
    opt(7, info(b"", [3])))
put("nbd_hs", "list-abort", b"\2" + FLAGS + opt(3) + opt(9, b"x") + opt(2))
put("nbd_hs", "unknown-export", b"\4" + struct.pack(">I", 1) + opt(7, info(b"nope", [])) +
    opt(1, b"nope"))

# ---- ublk/nbd_srv.c: byte 0 the export, then requests ----
REQ_MAGIC = 0x25609513


def req(cmd, off, count, flags=0, handle=1):
    return struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, handle, off, count)


put("nbd_srv", "rw", b"\x08" + req(1, 0, 512) + b"w" * 512 + req(0, 0, 4096, handle=2) +
    req(3, 0, 0, handle=3) + req(2, 0, 0))
put("nbd_srv", "big", b"\x1c" + req(1, 4096, 12288, flags=1) + b"b" * 12288 +
    req(0, 0, 65536, handle=5) + req(4, 0, 4096) + req(6, 8192, 4096, flags=2))
put("nbd_srv", "errors", b"\x21" + req(1, 1 << 20, 512) + b"e" * 512 +
    req(0, (1 << 20) - 512, 1024) + req(5, 0, 1) + req(0, 512, 512) +
    req(3, 1, 0) + req(0, 0, 0))
put("nbd_srv", "structured", b"\x1a" + req(0, 0, 8192) + req(0, 4096, 65536) +
    struct.pack(">I", 0xdeadbeef) + b"\0" * 24)
# the same, completed later and out of order (bit 7)
for n in ("rw", "big", "errors"):
    with open(os.path.join(HERE, "corpus", "nbd_srv", n), "rb") as f:
        d = f.read()
    put("nbd_srv", n + "-deferred", bytes([d[0] | 0x80]) + d[1:])

# ---- daemon/meta.c ----


def sb_block(disk_size, data_size, md_offset, actmap, bitmap, sb_off,
             gran=4096, shift=22, flags=0x20):
    b = struct.pack(">Q", 0x424C4B4D49525231) + struct.pack(
        "<IIQQIIQQ4QQQQQQQQ", 1, flags, disk_size, data_size, gran, shift, 4, 0,
        0, 0, 0, 0, 0xabcdef, md_offset, actmap, 4096, bitmap, 4096, sb_off)
    b = b.ljust(4096, b"\0")
    s = hashlib.sha256(b).digest()
    return b[:144] + s + b[176:]


def sb_struct(disk_size, data_size, md_offset, actmap, bitmap, sb_off, gran=4096, shift=22):
    # struct meta_sb, host order (x86: little endian), as fuzz_meta.c reads it
    return struct.pack("<IIQQIIQQ4QQQQQQQQ", 1, 0x20, disk_size, data_size, gran, shift,
                       4, 0, 0, 0, 0, 0, 0xabcdef, md_offset, actmap, 4096, bitmap, 4096,
                       sb_off)


MIB = 1 << 20
ext = sb_block(MIB, MIB, 0, 4096, 8192, 0)
# external: mode 0, the md device (12 KiB: sb, actmap, bitmap) as raw bytes
put("meta", "external-raw", b"\0" + struct.pack("<QH", MIB, 24) + ext)
put("meta", "external-raw-small-disk", b"\0" + struct.pack("<QH", MIB // 2, 24) + ext)
put("meta", "external-encoded", b"\6" + struct.pack("<QH", 0, 24) +
    sb_struct(MIB, MIB, 0, 4096, 8192, 0))
# internal: the superblock built from a struct, at the end of a 1 MiB disk
d = MIB - 12288
put("meta", "internal-encoded", b"\7" + struct.pack("<QH", 0, 2048) +
    sb_struct(MIB, d, d, d, d + 4096, MIB - 4096))
# internal, grown disk: the superblock one block before the end
put("meta", "internal-grown", b"\x0b" + struct.pack("<QH", MIB, 2048) +
    sb_struct(MIB - 4096, d - 4096, d - 4096, d - 4096, d, MIB - 8192))

# ---- daemon/conf.c: byte 0 bit 0 loads with node "alpha" ----
CONF = b"""[resource]
name = r0
protocol = sync
disk = /dev/vdb
meta-disk = internal
control = /run/blkmirror/r0.sock
secret-file = /etc/blkmirror/r0.secret
queues = 2
handshake-timeout = 2.5

[node alpha]
address = 192.0.2.1:7789

[node beta]
address = [2001:db8::2]:7789
"""
put("conf", "two-nodes", b"\1" + CONF)
put("conf", "resource-only", b"\0" + CONF)
put("conf", "async", b"\1" + CONF.replace(b"protocol = sync", b"protocol = async\n"
                                          b"max-async-lag = 32M\n"
                                          b"on-congestion = pull-ahead"))
put("conf", "nbd", b"\1" + CONF.replace(b"queues = 2", b"frontend = nbd\n"
                                        b"export-listen = unix:/run/r0.nbd\n"
                                        b"al-extents = 61\nping-timeout = 0.5"))

# ---- daemon/ctl.c + commands.c: one JSON line per request ----
put("ctl", "status", b"\0" + b'{"cmd":"status"}\n')
put("ctl", "all", b"\0" + b"".join(b'{"cmd":"%s","force":%s}\n' % (c, f) for c, f in [
    (b"promote", b"true"), (b"demote", b"false"), (b"connect", b"false"),
    (b"disconnect", b"true"), (b"discard-my-data", b"true"), (b"invalidate", b"false"),
    (b"outdate", b"1"), (b"resume-io", b"null"), (b"verify", b'"x"')]))
put("ctl", "malformed", b"\0" + b'[1,2]\n{"cmd":7}\n{"cmd":"promote","force":"yes"}\n'
    b'{"nocmd":1}\n{"cmd":"bogus"}\nnot json\n{"cmd":"status"')
# a line over the daemon's 4096-byte limit: it hangs up
put("ctl", "too-long", b"\0" + b'{"cmd":"status"}\n{"cmd":"' + b"x" * 4200 + b'"}\n')
put("ctl", "events", b"\0" + b'{"cmd":"events"}\n{"cmd":"status"}\n')

# ---- daemon/rxcheck.c: a data link's messages (lk_msg) ----
# byte 0 the size in 4 KiB blocks - 1, byte 1 max_data (512 << n), bytes 2..3
# the outstanding request types, a nibble each (0 WRITE, 1 TRIM, 2 FLUSH,
# 3 RS_DATA, 4 CSUM_REQ, 5 READ_REQ): slot i is (i + 1) * 512 bytes at i * 4 KiB.


def io(off, ln):
    return struct.pack(">QII", off, ln, 0)


def ack(status):
    return struct.pack(">iI", status, 0)


LK = bytes([63, 3, 0x54, 0x20])  # 256 KiB, 4 KiB max_data; CSUM_REQ, READ_REQ, WRITE, FLUSH
put("lk_msg", "requests", LK +
    px_hdr(32, 16 + 512, flags=1, ident=1) + io(4096, 512) + b"w" * 512 +
    px_hdr(39, 16, flags=6, ident=2) + io(0, 65536) +
    px_hdr(35, 0, flags=8, ident=3) +
    px_hdr(37, 16 + 4096, flags=1, ident=4) + io(8192, 4096) + b"r" * 4096 +
    px_hdr(40, 16, ident=5) + io(0, 4096) + px_hdr(43, 16, ident=6) + io(12288, 1024) +
    px_hdr(42, 16, flags=32) + io(0, 1 << 18))
put("lk_msg", "acks", LK +
    px_hdr(41, 48, ident=0) + io(0, 512) + bytes(range(32)) +
    px_hdr(44, 8 + 1024, ident=1) + ack(0) + b"d" * 1024 +
    px_hdr(34, 0, ident=2) + px_hdr(33, 8, ident=2) + ack(-5) +
    px_hdr(36, 8, ident=3) + ack(0) + px_hdr(38, 8, ident=9) + ack(0) +
    px_hdr(44, 8, ident=1) + ack(-5))
put("lk_msg", "partial-write", LK + px_hdr(32, 16 + 4096, ident=7) + io(0, 4096) + b"p" * 100)
put("lk_msg", "bad-range", bytes([0, 0, 0, 0]) + px_hdr(32, 16 + 512) + io(4096, 512) +
    b"x" * 512)
put("lk_msg", "meta-on-data", LK + px_hdr(16, 88) + px_state())

# ---- the bitmap exchange (peer_bitmap): bytes - 1 (LE16), chunk - 1, messages ----


def bmchunk(first_byte, data):
    return px_hdr(17, 8 + len(data)) + struct.pack(">Q", first_byte * 8) + data


put("peer_bitmap", "three-chunks", struct.pack("<HB", 99, 39) +
    bmchunk(0, b"\xff" * 40) + bmchunk(40, b"\x01" * 40) + bmchunk(80, b"\x80" * 20) +
    px_hdr(18, 0))
put("peer_bitmap", "one-chunk", struct.pack("<HB", 7, 255) + bmchunk(0, b"\x0f" * 8) +
    px_hdr(18, 0) + px_hdr(19, 0))
put("peer_bitmap", "early-done", struct.pack("<HB", 63, 15) + bmchunk(0, b"a" * 16) +
    px_hdr(18, 0))
put("peer_bitmap", "duplicate", struct.pack("<HB", 31, 15) + bmchunk(0, b"a" * 16) +
    bmchunk(0, b"a" * 16))

# ---- the state exchange (peer_state): mode and policy, then two states ----


def state(role=0, disk=0, flags=0x3, size=1 << 30, gran=4096, cur=0x1235, bm=0,
          hist=(0, 0, 0, 0), oos=0, uuid=0xfeed):
    return struct.pack(">BBHIQII", role, disk, 0, flags, size, gran, 0) + \
        struct.pack(">6Q", cur, bm, *hist) + struct.pack(">QQ", oos, uuid)


G1, G2, G3 = 0x1111222233334444, 0x5555666677778888, 0x9999aaaabbbbcccc
put("peer_state", "in-sync", b"\0" + state(1) + state(0, uuid=0xbeef))
put("peer_state", "bitmap-resync", b"\0" + state(1, cur=G2, bm=G1, hist=(G1, 0, 0, 0), oos=9) +
    state(0, cur=G1, uuid=2))
put("peer_state", "split-brain", b"\2" + state(0, cur=G2, bm=G1, oos=3) +
    state(0, cur=G3, bm=G1, oos=5, uuid=2))
put("peer_state", "fresh", b"\4" + state(0, flags=0x20, cur=4) + state(0, 1, flags=0x20, cur=4,
                                                                      uuid=3))
put("peer_state", "detached", b"\0" + state(1, 3) + state(0, uuid=3))
put("peer_state", "geometry", b"\0" + state(0) + state(0, gran=8192, uuid=3))
put("peer_state", "crashed-discard", b"\0" + state(0, flags=0x0b) +
    state(0, 2, flags=0x40, oos=100, uuid=3))
# compact: 16 bytes a state (role/disk, flags, size, gran, cur, bm, hist x4, oos x2,
# uuid, spare x3)
put("peer_state", "compact", b"\1" + bytes([1, 3, 0, 0, 2, 1, 1, 0, 0, 0, 5, 0, 0, 0, 0, 0]) +
    bytes([0, 3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]))
put("peer_state", "compact-same", b"\3" + bytes([0, 0x8b, 1, 1, 3, 2, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0]) +
    bytes([2, 0x80, 1, 1, 3, 2, 2, 0, 0, 0, 2, 0, 1, 0, 0, 0]))
