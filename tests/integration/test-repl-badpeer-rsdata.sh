#!/usr/bin/env bash
# A primary never takes resync data (or a replicated write) from its peer:
# its users own the data.  A fake alpha that knows the secret connects to
# beta, a primary, passes the handshake and the state and bitmap exchange
# as a secondary in sync, opens a data link and sends RS_DATA (then WRITE)
# for block 0: beta must refuse it (drop the link, say why) and its block 0
# must stay as its users wrote it.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_pair 16M
bm_pair_initial_sync
ctla demote >/dev/null
ctlb promote >/dev/null || fail "promote beta"
"$PYTHON" -c 'import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b"U"*4096, 0); h.flush()' "$UB"
ctlb wait-sync --timeout 20 || fail "not in sync"
bm_stop "$PA"

port=$(sed -n '/^\[node beta\]/,/^$/s/^address = 127.0.0.1://p' "$CB")
refusals() { grep -c "but this node is primary" "$T/rb-beta.log" || true; }
for type in 37 32; do   # PX_RS_DATA, PX_WRITE
    before=$(refusals)
    "$PYTHON" - "$port" "$T/secret" "$type" <<'PY' || fail "type $type: the fake peer (its reason above: not through to a data link, or answered)"
import hashlib, hmac, socket, struct, sys
port, secret, mtype = int(sys.argv[1]), open(sys.argv[2], "rb").read().rstrip(b"\r\n"), int(sys.argv[3])
HDR = struct.Struct(">IHHIIQ")
MAGIC = 0x424D5831

class Link:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
    def send(self, t, payload=b"", ident=0):
        self.s.sendall(HDR.pack(MAGIC, t, 0, len(payload), 0, ident) + payload)
    def read(self, n):
        b = b""
        while len(b) < n:
            try:
                c = self.s.recv(n - len(b))
            except (ConnectionResetError, socket.timeout):
                return None
            if not c:
                return None
            b += c
        return b
    def recv(self):
        h = self.read(HDR.size)
        if h is None:
            return None, None
        magic, t, flags, ln, res, ident = HDR.unpack(h)
        return t, self.read(ln)
    def handshake(self, link, session):
        name = lambda x: x.encode().ljust(64, b"\0")
        hello_c = struct.pack(">IIIHHQ", 1, 2, 0, link, 0, session) + name("alpha") + name("beta") + name("r0")
        self.send(1, hello_c)
        t, hello_l = self.recv(); assert t == 1, "no HELLO"
        t, chal_l = self.recv(); assert t == 2, "no CHALLENGE"
        chal_c = bytes([link]) * 32
        self.send(3, hmac.new(secret, b"blkmirror v1 client" + chal_l + hello_c + hello_l,
                              hashlib.sha256).digest())
        self.send(2, chal_c)
        t, _ = self.recv(); assert t == 4, "AUTH refused (link %d)" % link
        t, _ = self.recv(); assert t == 3, "no AUTH"
        self.send(4)
        return struct.unpack(">Q", hmac.new(secret, b"blkmirror v1 session" + chal_l + chal_c,
                                            hashlib.sha256).digest()[:8])[0] or 1

meta = Link()
session = meta.handshake(1, 0)
t, st = meta.recv(); assert t == 16, "no STATE"
size, gran = struct.unpack(">QI", st[8:20])
mine = bytearray(st)
assert mine[0] == 1, "beta is not primary"
mine[0] = 0                                        # a secondary, in sync
mine[80:88] = bytes(a ^ 0x5a for a in st[80:88])  # another node_uuid
meta.send(16, bytes(mine))
nbytes = ((size + gran - 1) // gran + 7) // 8
for off in range(0, nbytes, 65536):                # connector first
    meta.send(17, struct.pack(">Q", off * 8) + b"\0" * min(65536, nbytes - off))
meta.send(18)
while True:
    t, _ = meta.recv()
    assert t is not None, "beta ended the session before the data links"
    if t == 18:
        break
data = Link()
data.handshake(2, session)
# Block 0, as resync data (or a replicated write) from the "peer".
data.send(mtype, struct.pack(">QII", 0, 4096, 0) + b"R" * 4096, ident=7)
# Refused: beta drops the link without an ack.
t, _ = data.recv()
if t is not None:
    sys.exit("beta answered type %d to a primary-bound %d" % (t, mtype))
PY
    wait_for 10 sh -c "[ \$(grep -c 'but this node is primary' '$T/rb-beta.log') -gt $before ]" ||
        fail "type $type: no refusal in beta's log"
    "$PYTHON" -c 'import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); sys.exit(h.pread(4096, 0) != b"U"*4096)' "$UB" ||
        fail "type $type: the peer overwrote the primary's block 0"
    head -c 4096 "$T/rb.img" | cmp -s - <(printf 'U%.0s' $(seq 4096)) ||
        fail "type $type: the peer's data reached the primary's disk"
done
assert_eq "$(field "$CB" role)" primary "beta still primary"
bm_start "$CA" alpha; PA=$BM_PID
ctla wait-connect --timeout 20 || fail "the real peer could not connect after the fake one"
