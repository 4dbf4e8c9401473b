#!/usr/bin/env bash
# The NBD export against clients that hold resources: at most
# max-connections (default 16) connections at once, handshakes included, the
# next one closed at accept with a log line; a client that sends nothing, or
# drips its handshake a byte at a time, is dropped once handshake-timeout
# (default 10 s) has passed since it connected; 200 connections that each
# use buffers and close leave the daemon's VmRSS bounded, and it still
# serves.  The defaults are tested on a unix socket, other values over TCP.
# timeout: 120
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
requires nbdinfo
requires "$PYTHON" -c 'import nbd'
bm_setup

# Freed memory goes back at once in a sanitizer build (its quarantine would
# look like growth); no effect on other builds.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=1
bm_single r0 64M
"$MIRRORCTL" -c "$BM_CONF" promote --force
uri=$(bm_nbd_uri r0)
sock=$T/r0.nbd
log=$T/r0-alpha.log
size=$(bm_status_field "$BM_CONF" .size_bytes)

still_serving() {
    bm_alive "$BM_PID" || fail "mirrord died after: $*"
    assert_eq "$(nbdinfo --size "$uri")" "$size" "export size for a new client after: $*"
}

# hold N MODE: N connections held open at once, then one more; prints what
# the server did with the extra one ("refused" when closed before its
# greeting, "served" when it got one), then closes them all.  MODE: "go"
# (each in transmission, through libnbd) or "silent" (connected, nothing
# sent: each in its handshake).
hold() {
    "$PYTHON" - "$sock" "$uri" "$1" "$2" <<'PY'
import nbd, socket, sys, time
path, uri, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
held = []
for i in range(n):
    if mode == "go":
        h = nbd.NBD()
        h.connect_uri(uri)
        h.pread(4096, 0)
        held.append(h)
    else:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        held.append(s)
time.sleep(0.3)   # the daemon has accepted them all
s = socket.socket(socket.AF_UNIX)
s.settimeout(3)
s.connect(path)
try:
    print("served" if len(s.recv(18)) == 18 else "refused")
except ConnectionResetError:
    print("refused")
except socket.timeout:
    print("no answer")
PY
}

# ---- max-connections ----
assert_eq "$(hold 16 go)" refused "a 17th connection with 16 in transmission"
assert_contains "$log" 'nbd: 16 connections \(max-connections\): refusing' "log names the refusal"
still_serving "16 connections closed"
assert_eq "$(hold 16 silent)" refused "a 17th connection with 16 in their handshake"
still_serving "16 silent connections closed"
assert_eq "$(hold 15 go)" served "a 16th connection"

# ---- handshake-timeout: the whole handshake, not each read ----
# drip MODE: connects and sends nothing ("silent") or valid handshake
# options one byte every 0.5 s ("drip"); prints after how many seconds the
# server closed (40: it did not).
drip() {
    "$PYTHON" - "$sock" "$1" <<'PY'
import socket, struct, sys, time
path, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.connect(path)
t0 = time.monotonic()
s.settimeout(0.5)
# Client flags, then NBD_OPT_LIST after NBD_OPT_LIST: never done.
msg = struct.pack(">I", 1) + struct.pack(">QII", 0x49484156454F5054, 3, 0) * 100
i = 0
while time.monotonic() - t0 < 40:
    try:
        if not s.recv(4096):
            break
    except socket.timeout:
        pass
    except ConnectionResetError:
        break
    if mode == "drip":
        try:
            s.send(msg[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        i += 1
print("%.0f" % (time.monotonic() - t0))
PY
}
drip silent >"$T/silent" &
silent_pid=$!
drip_s=$(drip drip)
wait "$silent_pid"
silent_s=$(<"$T/silent")
echo "handshake dropped after: silent ${silent_s} s, dripping ${drip_s} s"
((drip_s >= 9 && drip_s <= 13)) || fail "a dripping handshake was dropped after ${drip_s} s, expected 10"
((silent_s >= 9 && silent_s <= 13)) || fail "a silent handshake was dropped after ${silent_s} s, expected 10"
assert_contains "$log" 'handshake failed: .*(timed out|handshake-timeout)' "log names the deadline"
still_serving "the handshake deadline"

# ---- buffers are released at close ----
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$BM_PID/status"; }
churn() {
    "$PYTHON" - "$uri" "$1" <<'PY'
import nbd, sys
uri, n = sys.argv[1], int(sys.argv[2])
data = bytes(range(256)) * 4096
for i in range(n):
    h = nbd.NBD()
    h.connect_uri(uri)
    # Touch several tags' buffers at once: 8 writes of 1 MiB in flight.
    cs = [h.aio_pwrite(data, j << 20) for j in range(8)]
    while h.aio_in_flight() > 0:
        h.poll(-1)
    assert all(h.aio_command_completed(c) for c in cs)
    assert h.pread(1 << 20, 3 << 20) == data
    h.shutdown()
PY
}
churn 20
before=$(rss)
churn 200
after=$(rss)
echo "VmRSS after 20 connections: $before kB, after 200 more: $after kB"
((after - before < 32 * 1024)) || fail "VmRSS grew from $before kB to $after kB over 200 connections"
still_serving "200 connections"
bm_stop "$BM_PID"

# ---- over TCP, with other values (bash's /dev/tcp as the clients) ----
port=$(bm_free_ports 1)
conf=$(bm_conf r1 export-listen=127.0.0.1:"$port" max-connections=2 handshake-timeout=1.5)
bm_disk r1 64M
"$MIRRORCTL" -c "$conf" create-md >/dev/null
bm_start "$conf" alpha
turi=nbd://127.0.0.1:$port/r1
exec 7<>"/dev/tcp/127.0.0.1/$port" 8<>"/dev/tcp/127.0.0.1/$port"
t0=$EPOCHREALTIME
sleep 0.3
exec 9<>"/dev/tcp/127.0.0.1/$port"
assert_eq "$(timeout 2 head -c 18 <&9 | wc -c)" 0 "bytes for a third TCP connection with max-connections = 2"
exec 9<&-
# Both silent ones: the greeting, then closed at the deadline.
assert_eq "$(timeout 5 cat <&7 | wc -c)" 18 "bytes before the deadline closed a silent TCP connection"
took=$(bm_elapsed "$t0")
assert_eq "$(timeout 5 cat <&8 | wc -c)" 18 "bytes before the deadline closed the other"
exec 7<&- 8<&-
echo "silent TCP connections dropped after $took s (handshake-timeout = 1.5)"
[[ $took =~ ^(1|2)\. ]] || fail "silent TCP connections dropped after $took s, expected 1.5"
assert_eq "$(nbdinfo --size "$turi")" "$(bm_status_field "$conf" .size_bytes)" "a TCP client after the deadline"
assert_contains "$T/r1-alpha.log" 'nbd: 2 connections \(max-connections\): refusing' "log names the TCP refusal"
bm_stop "$BM_PID"
