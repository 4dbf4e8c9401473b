#!/usr/bin/env bash
# Connections that never authenticate cannot hold the replication port:
# clients that drip one byte a second into the listener's port neither
# keep the real peer out nor disturb an established connection, and the
# listener's threads and file descriptors stay bounded however many of
# them there are.
# timeout: 180
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
bm_pair 32M
ctla wait-connect --timeout 20
bm_stop "$PA"

# beta sorts after alpha: beta listens, alpha dials (daemon/peer.c).
port=$(sed -n '/^\[node beta\]/,/^$/s/^address = 127.0.0.1://p' "$CB")
threads() { awk '/^Threads:/ {print $2}' "/proc/$PB/status"; }
fds() { ls "/proc/$PB/fd" | wc -l; }

# drip N SECONDS: N connections, each sending the start of a plausible
# frame one byte a second (never a whole message) for SECONDS.
drip() {
    "$PYTHON" - "$port" "$1" "$2" <<'PY' &
import socket, struct, sys, time
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
frame = struct.pack(">IHHIIQ", 0x424d5831, 1, 0, 200, 0, 0) + b"\0" * 200
conns = []
end = time.time() + secs
i = 0
while time.time() < end:
    while len(conns) < n:
        try:
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            time.sleep(0.1)
            break
    for s in list(conns):
        try:
            s.send(frame[i % len(frame):i % len(frame) + 1])
        except OSError:
            conns.remove(s)   # dropped by the daemon: come back
            s.close()
    i += 1
    time.sleep(1)
PY
    DRIP=$!
    bm_on_exit kill "$DRIP"
}

t0=$(threads); f0=$(fds)
drip 4 15
sleep 3
# The real peer arrives while four dripping clients hold connections.
start=$EPOCHREALTIME
bm_start "$CA" alpha; PA=$BM_PID
ctla wait-connect --timeout 10 ||
    fail "alpha could not connect within 10 s while 4 clients dripped into beta's port"
echo "connected after $(bm_elapsed "$start") s with 4 dripping clients"
wait "$DRIP" || true

# Established: many more dripping clients do not disturb the connection,
# and beta's threads and descriptors stay bounded.
sessions=$(grep -c "connection connecting -> connected" "$T/rb-beta.log" || true)
drip 40 12
for i in 1 2 3 4 5 6 7 8 9 10; do
    sleep 1
    t=$(threads); f=$(fds)
    ((t <= t0 + 12)) || fail "beta runs $t threads with 40 dripping clients (before: $t0)"
    ((f <= f0 + 24)) || fail "beta holds $f descriptors with 40 dripping clients (before: $f0)"
done
wait "$DRIP" || true
assert_eq "$(field "$CB" connection)" connected "beta stays connected under the drip"
assert_eq "$(grep -c "connection connecting -> connected" "$T/rb-beta.log" || true)" \
    "$sessions" "the established connection was not restarted"
grep -q "incoming link handshake did not finish within" "$T/rb-beta.log" ||
    fail "beta does not log handshakes that ran out of time"

# The connector has the same budget: alpha dialing a "peer" that accepts
# and drips gives up on it in a few seconds and dials again, instead of
# waiting on it for minutes.
bm_stop "$PB"
"$PYTHON" - "$port" "$T/dials" <<'PY' &
import socket, sys, threading, time
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(8)
def drip(c):
    try:
        for _ in range(60):
            c.send(b"\0")
            time.sleep(1)
    except OSError:
        pass
    c.close()
end = time.time() + 25
n = 0
srv.settimeout(1)
while time.time() < end:
    try:
        c, _ = srv.accept()
    except socket.timeout:
        continue
    n += 1
    open(sys.argv[2], "w").write("%d\n" % n)
    threading.Thread(target=drip, args=(c,), daemon=True).start()
PY
FAKE=$!
bm_on_exit kill "$FAKE"
wait "$FAKE" || true
dials=$(cat "$T/dials" 2>/dev/null || echo 0)
echo "alpha dialed the dripping listener $dials times in 25 s"
((dials >= 3)) || fail "alpha dialed a dripping listener only $dials times in 25 s"
grep -q "meta link handshake did not finish" "$T/ra-alpha.log" ||
    fail "alpha does not log its handshake running out of time"
bm_start "$CB" beta; PB=$BM_PID
ctla wait-connect --timeout 20 || fail "alpha and beta do not connect again"
