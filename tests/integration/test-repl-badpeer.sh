#!/usr/bin/env bash
# Peer traffic is untrusted until authenticated: a wrong secret is
# rejected; random bytes, truncated and oversized frames end the
# connection; a host other than the peer is refused before any handshake;
# the node keeps serving throughout.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
bm_pair 64M
bm_pair_initial_sync
bm_stop "$PA"

# alpha with another secret: beta must refuse it.
head -c 48 /dev/urandom | base64 >"$T/secret2"; chmod 600 "$T/secret2"
sed -i "s|^secret-file = .*|secret-file = $T/secret2|" "$CA"
bm_start "$CA" alpha; PA=$BM_PID
wait_for 20 grep -q "authentic\|secret" "$T/rb-beta.log"
assert_eq "$(field "$CB" connection)" connecting "beta does not accept a wrong secret"
assert_eq "$(field "$CA" connection)" connecting "alpha does not get through"
bm_stop "$PA"

port=$(sed -n '/^\[node beta\]/,/^$/s/^address = 127.0.0.1://p' "$CB")
"$PYTHON" - "$port" <<'PY'
import os, socket, struct, sys, time
port = int(sys.argv[1])
def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s
def closed(s):
    s.settimeout(5)
    try:
        while s.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
HDR = struct.Struct(">IHHIIQ")
cases = {
    "random bytes": os.urandom(10000),
    "truncated header": b"BMX1\x00\x01",
    "oversized HELLO": HDR.pack(0x424d5831, 1, 0, 0x7fffffff, 0, 0),
    "huge data frame first": HDR.pack(0x424d5831, 32, 0, 0xffffffff, 0, 0),
    "bad magic": HDR.pack(0xdeadbeef, 1, 0, 16, 0, 0) + b"x" * 16,
}
for name, data in cases.items():
    s = conn()
    try:
        s.sendall(data)
    except OSError:
        pass
    if name == "truncated header":
        s.shutdown(socket.SHUT_WR)
    if not closed(s):
        sys.exit("%s: connection not closed" % name)
    s.close()
print("all garbage connections closed")
PY
# A host that is not the peer (127.0.0.2; the peer is 127.0.0.1) is turned
# away at once, before any handshake: it never takes one of the listener's
# handshake slots from the real peer.
"$PYTHON" - "$port" <<'PY' || fail "a connection from another address was not refused at once"
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.2", 0))
s.settimeout(2)
s.connect(("127.0.0.1", int(sys.argv[1])))
t0 = time.monotonic()
try:
    data = s.recv(4096)
except socket.timeout:
    sys.exit("still open after 2 s")
except ConnectionResetError:
    data = b""
if data:
    sys.exit("the listener talked to it: %r" % data[:16])
print("closed after %.0f ms" % ((time.monotonic() - t0) * 1000))
PY
# Logged at most once a second (the garbage above may have just logged).
foreign() {
    "$PYTHON" -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.2", 0)); s.connect(("127.0.0.1", int(sys.argv[1]))); s.recv(1)' "$port" 2>/dev/null || true
    grep -q "refused a connection from 127.0.0.2: not alpha's address" "$T/rb-beta.log"
}
wait_for 10 foreign
# beta still serves: status answers and its export reads.
assert_eq "$(field "$CB" role)" secondary "beta alive"
"$PYTHON" -c 'import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); h.pread(4096, 0)' "$UB"
# And the real peer still gets in.
sed -i "s|^secret-file = .*|secret-file = $T/secret|" "$CA"
bm_start "$CA" alpha; PA=$BM_PID
ctla wait-connect --timeout 20 || fail "the real peer could not connect after the garbage"
