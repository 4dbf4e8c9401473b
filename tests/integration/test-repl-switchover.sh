#!/usr/bin/env bash
# demote returns once the connected peer knows: a promote on the peer right
# after it is never refused with "peer is primary".  Twenty switch-overs
# back and forth, with no pause between the two commands.  disconnect, too,
# returns once its effect is settled.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
bm_pair 16M
bm_pair_initial_sync

# mirrorctl alone takes a few ms to start, enough for the peer to catch up;
# an operator's script may be quicker: both control connections are open
# before, and the promote goes out as soon as the demote's answer is in.
"$PYTHON" - "$T/ra.sock" "$T/rb.sock" <<'PY' || fail "a switch-over was refused"
import json, socket, sys, time

def conn(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s, s.makefile("r")

def ask(c, cmd):
    c[0].sendall((json.dumps({"cmd": cmd}) + "\n").encode())
    return json.loads(c[1].readline())

a, b = conn(sys.argv[1]), conn(sys.argv[2])
for i in range(1, 21):
    frm, to = (a, b) if i % 2 else (b, a)
    names = ("alpha", "beta") if i % 2 else ("beta", "alpha")
    t0 = time.monotonic()
    r = ask(frm, "demote")
    if not r["ok"]:
        sys.exit("round %d: demote on %s refused: %s" % (i, names[0], r["error"]))
    t1 = time.monotonic()
    r = ask(to, "promote")
    if not r["ok"]:
        sys.exit("round %d: promote on %s %.1f ms after demote on %s returned (it took %.1f ms): %s"
                 % (i, names[1], (time.monotonic() - t1) * 1000, names[0], (t1 - t0) * 1000,
                    r["error"]))
PY
# disconnect returns once the node is standalone: a connect and a
# wait-connect run next must not see the old session (the teardown of a
# primary's data links takes up to 200 ms; a diskless primary's test
# failed one run in five on this).
"$PYTHON" - "$T/ra.sock" <<'PY' || fail "disconnect returned before standalone"
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("r")
def ask(cmd):
    s.sendall((json.dumps({"cmd": cmd}) + "\n").encode())
    return json.loads(f.readline())
for i in range(5):
    r = ask("disconnect")
    assert r["ok"], r
    conn = ask("status")["status"]["connection"]
    if conn != "standalone":
        sys.exit("round %d: %s right after disconnect returned" % (i, conn))
    assert ask("connect")["ok"]
    end = time.monotonic() + 20
    while ask("status")["status"]["connection"] != "connected":
        if time.monotonic() > end:
            sys.exit("round %d: no reconnect in 20 s" % i)
        time.sleep(0.05)
PY
assert_eq "$(field "$CA" role)" primary "alpha's role at the end"
assert_eq "$(field "$CB" role)" secondary "beta's role at the end"
assert_eq "$(field "$CA" connection)" connected "still connected"
bm_stop "$PA"; bm_stop "$PB"
