#!/usr/bin/python3
"""nbd_raw.py: a raw-socket NBD client for sending what real clients never send.

    nbd_raw.py SOCKET [--timeout S] [--block-size] CASE [ARGS...]

Connects to the NBD server on the unix socket SOCKET, does the fixed-newstyle
handshake (NBD_OPT_GO, no structured replies, so every reply is simple) unless
the case is about the handshake itself, plays CASE, and prints one line saying
what the server did.  The shell test compares that line with what it expects.
Exit 0 when the case ran (whatever the server answered), 1 when the server
broke the protocol in a way no line can describe (a bad reply magic, a reply
to a handle never sent).  With --block-size, GO requests NBD_INFO_BLOCK_SIZE:
the client commits to the server's block size constraints (without it the
spec's defaults apply, such as READ and WRITE of up to 32 MiB).  Standard
library only.

Cases and what they print:
  request TYPE FLAGS OFFSET COUNT [PAYLOAD [MAGIC]]
        one request header (PAYLOAD bytes of data after it, default 0);
        "error=N next=ok" when the server replied with NBD error N (0 for
        success) and a valid READ on the same connection then worked,
        "error=N next=closed" when it did not, "closed" when the server
        dropped the connection without a reply.
  garbage N           N random bytes instead of a handshake: "closed" or "open"
  short-header        a request header cut off after 10 bytes, then close: "sent"
  short-write OFFSET  WRITE of 64 KiB at OFFSET with only 1000 bytes of payload,
                      then close: "sent"
  pipeline N          N 4 KiB WRITEs of distinct data sent before reading any
                      reply, then N READs of the same blocks likewise:
                      "answered N writes, N reads" when every reply came, with
                      error 0, for a handle that was sent, and the data read
                      back is what was written
  abandon N           N 4 KiB READs, then close at once without reading a
                      reply: "sent"
  disc N              N 4 KiB READs, then NBD_CMD_DISC: "answered M then closed"
                      with M the replies that came before the server closed
  option OPT LEN [MAGIC]
                      one handshake option header with LEN bytes of data (at
                      most 4096 of them are sent): "reply=0xT then go=ok" when
                      the server answered with option reply type T and a GO
                      afterwards still worked, "reply=0xT then closed", or
                      "closed"
Numbers may be given in hex (0x...).
"""
import os
import socket
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
FLAG_C_FIXED_NEWSTYLE = 1
FLAG_C_NO_ZEROES = 2

TIMEOUT = 5.0
BLOCK_SIZE = False    # GO asks for NBD_INFO_BLOCK_SIZE
INFO_BLOCK_SIZE = 3


class Closed(Exception):
    """The server closed (or reset) the connection."""


class Broken(Exception):
    """The server sent something the protocol does not allow."""


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = s.recv(n - len(buf))
        except (ConnectionResetError, BrokenPipeError):
            raise Closed()
        if not chunk:
            raise Closed()
        buf += chunk
    return bytes(buf)


def send_all(s, data):
    try:
        s.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        raise Closed()


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(path)
    return s


def greeting(s):
    """Reads the server greeting and sends the client flags."""
    magic, opt, gflags = struct.unpack(">QQH", recv_exact(s, 18))
    if magic != NBDMAGIC or opt != IHAVEOPT:
        raise Broken("bad greeting %016x %016x" % (magic, opt))
    send_all(s, struct.pack(">I", FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES))


def send_option(s, opt, data, magic=IHAVEOPT):
    send_all(s, struct.pack(">QII", magic, opt, len(data)) + data)


def read_option_reply(s):
    """Returns (option, reply type, data)."""
    magic, opt, rtype, rlen = struct.unpack(">QIII", recv_exact(s, 20))
    if magic != REP_MAGIC:
        raise Broken("bad option reply magic %016x" % magic)
    return opt, rtype, recv_exact(s, rlen)


def go(s, name=b""):
    """NBD_OPT_GO; returns the export size once the server ACKs."""
    infos = [INFO_BLOCK_SIZE] if BLOCK_SIZE else []
    send_option(s, OPT_GO, struct.pack(">I", len(name)) + name +
                struct.pack(">H%dH" % len(infos), len(infos), *infos))
    size = None
    while True:
        opt, rtype, data = read_option_reply(s)
        if opt != OPT_GO:
            raise Broken("reply for option %d, expected GO" % opt)
        if rtype == REP_ACK:
            if size is None:
                raise Broken("GO acknowledged without NBD_INFO_EXPORT")
            return size
        if rtype != REP_INFO:
            raise Broken("GO refused: reply type 0x%08x" % rtype)
        if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == 0:
            size = struct.unpack(">Q", data[2:10])[0]


def open_export(path):
    s = connect(path)
    greeting(s)
    return s, go(s)


def send_request(s, cmd, flags=0, offset=0, count=0, handle=0, payload=b"",
                 magic=REQUEST_MAGIC):
    send_all(s, struct.pack(">IHHQQI", magic, flags, cmd, handle, offset, count) + payload)


def read_reply(s):
    """Returns (error, handle) of one simple reply (data not read)."""
    magic, error, handle = struct.unpack(">IIQ", recv_exact(s, 16))
    if magic != SIMPLE_REPLY_MAGIC:
        raise Broken("bad reply magic 0x%08x" % magic)
    return error, handle


def valid_read_works(s, handle):
    try:
        send_request(s, CMD_READ, offset=0, count=4096, handle=handle)
        error, h = read_reply(s)
        if error or h != handle:
            return False
        recv_exact(s, 4096)
        return True
    except (Closed, socket.timeout):
        return False


def case_request(path, cmd, flags, offset, count, payload=0, magic=REQUEST_MAGIC):
    s, _ = open_export(path)
    handle = 0x1122334455667788
    try:
        send_request(s, cmd, flags, offset, count, handle, os.urandom(payload), magic)
        error, h = read_reply(s)
    except (Closed, socket.timeout):
        return "closed"
    if h != handle:
        raise Broken("reply for handle %x, sent %x" % (h, handle))
    if cmd == CMD_READ and error == 0:
        recv_exact(s, count)
    nxt = "ok" if valid_read_works(s, handle + 1) else "closed"
    return "error=%d next=%s" % (error, nxt)


def wait_closed(s):
    """True if the server closes the connection within TIMEOUT."""
    end = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < end:
            s.settimeout(max(end - time.monotonic(), 0.01))
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        pass
    return False


def case_garbage(path, n):
    s = connect(path)
    try:
        send_all(s, os.urandom(n))
    except Closed:
        return "closed"
    return "closed" if wait_closed(s) else "open"


def case_short_header(path):
    s, _ = open_export(path)
    send_all(s, struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, 1, 0, 4096)[:10])
    s.close()
    return "sent"


def case_short_write(path, offset):
    s, _ = open_export(path)
    send_request(s, CMD_WRITE, offset=offset, count=65536, handle=1, payload=os.urandom(1000))
    s.close()
    return "sent"


def block(i):
    """4 KiB of data that differs from one block number to the next."""
    return struct.pack(">Q", i) * 512


def case_pipeline(path, n):
    s, size = open_export(path)
    if n * 4096 > size:
        raise Broken("export of %d bytes too small for %d blocks" % (size, n))
    # Handles far apart and not in order, so echoing a wrong one shows.
    handles = {0x9E3779B97F4A7C15 * (i + 1) & (2**64 - 1): i for i in range(n)}
    send_all(s, b"".join(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, h, i * 4096, 4096)
                         + block(i) for h, i in handles.items()))
    pending = set(handles)
    for _ in range(n):
        error, h = read_reply(s)
        if h not in pending:
            raise Broken("WRITE reply for handle %x, not sent or answered twice" % h)
        if error:
            raise Broken("WRITE of block %d failed with error %d" % (handles[h], error))
        pending.discard(h)
    send_all(s, b"".join(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, h, i * 4096, 4096)
                         for h, i in handles.items()))
    pending = set(handles)
    for _ in range(n):
        error, h = read_reply(s)
        if h not in pending:
            raise Broken("READ reply for handle %x, not sent or answered twice" % h)
        if error:
            raise Broken("READ of block %d failed with error %d" % (handles[h], error))
        if recv_exact(s, 4096) != block(handles[h]):
            raise Broken("READ of block %d returned other data" % handles[h])
        pending.discard(h)
    return "answered %d writes, %d reads" % (n, n)


def reads(n, handle0=1):
    return b"".join(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, handle0 + i, i * 4096, 4096)
                    for i in range(n))


def case_abandon(path, n):
    s, _ = open_export(path)
    send_all(s, reads(n))
    s.close()
    return "sent"


def case_disc(path, n):
    s, _ = open_export(path)
    send_all(s, reads(n) + struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_DISC, 0, 0, 0))
    answered = set()
    try:
        while True:
            error, h = read_reply(s)
            if h - 1 not in range(n) or h in answered or error:
                raise Broken("reply for handle %x with error %d" % (h, error))
            answered.add(h)
            recv_exact(s, 4096)
    except Closed:
        pass
    return "answered %d then closed" % len(answered)


def case_option(path, opt, length, magic=IHAVEOPT):
    s = connect(path)
    greeting(s)
    try:
        send_all(s, struct.pack(">QII", magic, opt, length) + bytes(min(length, 4096)))
        ropt, rtype, _ = read_option_reply(s)
    except (Closed, socket.timeout):
        return "closed"
    if ropt != opt:
        raise Broken("reply for option %d, sent %d" % (ropt, opt))
    try:
        go(s)
        then = "go=ok"
    except (Closed, socket.timeout, Broken):
        then = "closed"
    return "reply=0x%08x then %s" % (rtype, then)


CASES = {
    "request": case_request,
    "garbage": case_garbage,
    "short-header": case_short_header,
    "short-write": case_short_write,
    "pipeline": case_pipeline,
    "abandon": case_abandon,
    "disc": case_disc,
    "option": case_option,
}


def main(argv):
    global TIMEOUT, BLOCK_SIZE
    if "--timeout" in argv[:-1]:
        i = argv.index("--timeout")
        TIMEOUT = float(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    if "--block-size" in argv:
        BLOCK_SIZE = True
        argv.remove("--block-size")
    if len(argv) < 3 or argv[2] not in CASES:
        sys.exit(__doc__)
    try:
        print(CASES[argv[2]](argv[1], *[int(a, 0) for a in argv[3:]]))
    except Broken as e:
        sys.exit("nbd_raw.py: %s: %s" % (argv[2], e))
    except Closed:
        sys.exit("nbd_raw.py: %s: the server closed the connection unexpectedly" % argv[2])
    except socket.timeout:
        sys.exit("nbd_raw.py: %s: no answer from the server in %g s" % (argv[2], TIMEOUT))


if __name__ == "__main__":
    main(sys.argv)
