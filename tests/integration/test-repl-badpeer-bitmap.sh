#!/usr/bin/env bash
# An authenticated peer that breaks the bitmap exchange: a chunk sent twice,
# or BITMAP_DONE before the whole bitmap.  A fake alpha (it knows the
# secret) connects to beta, passes the handshake, answers beta's STATE with
# the same state and then sends its bad bitmap: beta must refuse it (end
# the session before it sends a bitmap of its own) and say why in its log,
# then keep serving and let the real alpha in.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
bm_pair 64M
bm_pair_initial_sync
ctla demote >/dev/null
bm_stop "$PA"

port=$(sed -n '/^\[node beta\]/,/^$/s/^address = 127.0.0.1://p' "$CB")
for case in duplicate early-done; do
    "$PYTHON" - "$port" "$T/secret" "$case" <<'PY' || fail "$case: beta took a broken bitmap exchange"
import hashlib, hmac, socket, struct, sys
port, secret, case = int(sys.argv[1]), open(sys.argv[2], "rb").read().rstrip(b"\r\n"), sys.argv[3]
HDR = struct.Struct(">IHHIIQ")
MAGIC = 0x424D5831
s = socket.create_connection(("127.0.0.1", port), timeout=10)
def send(t, payload=b""):
    s.sendall(HDR.pack(MAGIC, t, 0, len(payload), 0, 0) + payload)
def read(n):
    b = b""
    while len(b) < n:
        try:
            c = s.recv(n - len(b))
        except ConnectionResetError:  # closed with our last bytes unread
            return None
        if not c:
            return None
        b += c
    return b
def recv():
    h = read(HDR.size)
    if h is None:
        return None, None
    magic, t, flags, ln, res, ident = HDR.unpack(h)
    return t, read(ln)
name = lambda x: x.encode().ljust(64, b"\0")
hello_c = struct.pack(">IIIHHQ", 1, 2, 3, 1, 0, 0) + name("alpha") + name("beta") + name("r0")
send(1, hello_c)
t, hello_l = recv(); assert t == 1, "no HELLO"
t, chal_l = recv(); assert t == 2, "no CHALLENGE"
send(3, hmac.new(secret, b"blkmirror v1 client" + chal_l + hello_c + hello_l,
                 hashlib.sha256).digest())
send(2, b"\1" * 32)
t, _ = recv(); assert t == 4, "AUTH refused"
t, _ = recv(); assert t == 3, "no AUTH"
send(4)
t, st = recv(); assert t == 16, "no STATE"
size, gran = struct.unpack(">QI", st[8:20])
mine = bytearray(st)
mine[0] = 0                                  # secondary
mine[80:88] = bytes(a ^ 0x5a for a in st[80:88])  # another node_uuid
send(16, bytes(mine))
nbytes = ((size + gran - 1) // gran + 7) // 8
chunk = struct.pack(">Q", 0) + b"\0" * min(nbytes, 65536)
if case == "duplicate":
    send(17, chunk)
    send(17, chunk)
send(18)
# Refused: beta ends the session (DISCONNECT, close) without a bitmap of
# its own: it sends its own only once it took ours.
got = []
while True:
    t, _ = recv()
    if t is None:
        break
    got.append(t)
if 17 in got or 18 in got:
    sys.exit("%s: beta went on with its own bitmap (messages %s)" % (case, got))
PY
done
wait_for 10 grep -q "receiving the bitmap: BITMAP chunk of .* expected 0 bytes" "$T/rb-beta.log" ||
    fail "no reason in beta's log for the duplicate chunk"
wait_for 10 grep -q "receiving the bitmap: BITMAP_DONE after 0 of" "$T/rb-beta.log" ||
    fail "no reason in beta's log for the early BITMAP_DONE"

assert_eq "$(field "$CB" role)" secondary "beta alive"
bm_start "$CA" alpha; PA=$BM_PID
ctla wait-connect --timeout 20 || fail "the real peer could not connect after the fake one"
