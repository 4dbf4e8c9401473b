#!/usr/bin/env bash
# mirrord killed with SIGKILL restarts at once: the control socket it left
# behind (its listener may outlive the process while the kernel tears down
# its io_uring) is not mistaken for a running daemon; ten times in a row, as
# primary with a client connected.  A second mirrord for the resource while
# one runs is still refused.
# timeout: 120
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
bm_setup

bm_single r0 64M
conf=$BM_CONF
for i in $(seq 1 10); do
    "$MIRRORCTL" -c "$conf" promote --force
    # A client with the export open, so the daemon has work in flight.
    "$PYTHON" -c 'import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b"x"*4096, 0); h.flush()' \
        "$(bm_nbd_uri r0)"
    # As an operator does with a daemonized mirrord: kill, then start at
    # once, without waiting for the process to be gone.
    old=$BM_PID
    kill -KILL "$old"
    "$MIRRORD" -c "$conf" --node alpha --foreground --log-level debug \
        </dev/null >>"$T/restart-$i.log" 2>&1 &
    BM_PID=$!
    BM_PIDS+=("$BM_PID")
    BM_LOGS+=("$T/restart-$i.log")
    wait "$old" 2>/dev/null || true
    bm_forget "$old"
    until "$MIRRORCTL" -c "$conf" status >/dev/null 2>&1; do
        if ! bm_alive "$BM_PID"; then
            tail -n 3 "$T/restart-$i.log" >&2
            fail "restart $i after kill -9: mirrord exited"
        fi
        sleep 0.1
    done
done

# What the race above depends on, made certain: a listener still on the
# control socket (a killed daemon's, while the kernel tears it down) but
# nobody holding the lock.  The new mirrord starts; it is not "another
# mirrord" (the old probe connect()ed to the socket and refused).
bm_stop "$BM_PID"
"$PYTHON" - "$T/r0.sock" "$T/listening" <<'PY' &
import os, socket, sys, time
try:
    os.unlink(sys.argv[1])
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(16)
open(sys.argv[2], "w").close()
time.sleep(120)
PY
lp=$!
bm_kill_at_exit "$lp"
wait_for 10 test -e "$T/listening"
"$MIRRORD" -c "$conf" --node alpha --foreground --log-level debug \
    </dev/null >>"$T/stale.log" 2>&1 &
BM_PID=$!
BM_PIDS+=("$BM_PID")
BM_LOGS+=("$T/stale.log")
until grep -q "ready: role" "$T/stale.log"; do
    bm_alive "$BM_PID" || fail "a listener left on the control socket was taken for a" \
        "running mirrord: $(tail -n 2 "$T/stale.log")"
    sleep 0.1
done
kill "$lp"
"$MIRRORCTL" -c "$conf" status >/dev/null || fail "status after the start over a stale listener"

rc=0
timeout 20 "$MIRRORD" -c "$conf" --node alpha --foreground 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "exit code of a second mirrord while one runs"
assert_contains "$T/err" "another mirrord is already running" "second mirrord's reason"
bm_alive "$BM_PID" || fail "the running mirrord died"
bm_stop "$BM_PID"
