#!/usr/bin/env bash
# The control socket: mode 0600; malformed requests (helpers/ctl_raw.py) get
# an error reply or a clean close and the daemon goes on answering; an idle
# client does not hold up others; mirrorctl's exit codes (0 ok, 1 refused,
# 2 usage or configuration, 3 no daemon); `mirrorctl events` streams one
# line per role change.
# timeout: 60
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
bm_setup

bm_single r0 64M
conf=$BM_CONF
sock=$T/r0.sock

assert_eq "$(stat -c %a "$sock")" 600 "mode of the control socket"

raw() { "$PYTHON" "$BM_SRC/tests/integration/helpers/ctl_raw.py" "$sock"; }
answers() {
    bm_alive "$BM_PID" || fail "mirrord died after: $1"
    assert_eq "$(bm_status_field "$conf" .resource)" r0 "status after: $1"
}
# check REQUEST-BYTES REGEX: the whole exchange (replies, then <closed> or
# <open>) matches REGEX, and the daemon still answers status.
check() {
    local out
    out=$(printf '%s' "$1" | raw) || fail "ctl_raw.py failed on: $1"
    [[ $out =~ $2 ]] || fail "reply to '${1:0:60}': got '${out:0:300}', expected /$2/"
    answers "${1:0:60}"
}
malformed='^\{"ok":false,"code":2,"error":"malformed request: expected one JSON object with a \\"cmd\\" member"\}'
check $'not json\n'            "$malformed"
check $'[1,2,3]\n'             "$malformed"
check $'\n'                    "$malformed"
check $'{"nocmd":1}\n'         "$malformed"
check $'{"cmd":5}\n'           '^\{"ok":false,"code":2,"error":"malformed request: \\"cmd\\" must be a string"\}'
check $'{"cmd":null}\n'        '^\{"ok":false,"code":2,"error":"malformed request: \\"cmd\\" must be a string"\}'
check $'{"cmd":"frobnicate"}\n' '^\{"ok":false,"code":2,"error":"unknown command .frobnicate.'
check $'{"cmd":"status"}\n{"cmd":"status"}\n' $'^\\{"ok":true,"status":\\{[^\n]*\\}\\}\n\\{"ok":true,"status":\\{[^\n]*\\}\\}\n<closed>$'
# Longer than any request: an error reply, or the connection closed.
long=$(head -c 10000 /dev/zero | tr '\0' x)
check "$long"$'\n'                               '^(\{"ok":false[^'$'\n'']*'$'\n'')*<closed>$'
check '{"cmd":"status","pad":"'"$long"$'"}\n'     '^(\{"ok":false[^'$'\n'']*'$'\n'')*<closed>$'

# A client that sends half a line and waits does not hold up the others.
"$PYTHON" -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"{\"cmd\":")
time.sleep(30)' "$sock" &
idle=$!
sleep 0.2
answers "an idle client"
kill "$idle"
wait "$idle" 2>/dev/null || true

# mirrorctl's exit codes.
code() {
    local rc=0
    "$@" >/dev/null 2>"$T/err" || rc=$?
    echo "$rc"
}
assert_eq "$(code "$MIRRORCTL" -c "$conf" frobnicate)" 2 "mirrorctl: unknown command"
assert_eq "$(code "$MIRRORCTL" -c "$conf")" 2 "mirrorctl: no command"
assert_eq "$(code "$MIRRORCTL" -c "$conf" status --bogus-option)" 2 "mirrorctl: unknown option"
assert_eq "$(code "$MIRRORCTL" -c "$T/missing.conf" status)" 2 "mirrorctl: missing config"
bad=$(bm_conf bad protcol=sync)
assert_eq "$(code "$MIRRORCTL" -c "$bad" status)" 2 "mirrorctl: config with an unknown key"
assert_contains "$T/err" "$bad:[0-9]+: key 'protcol': unknown key" "mirrorctl names the bad key"
assert_eq "$(code "$MIRRORCTL" --socket "$T/nobody.sock" status)" 3 "mirrorctl: nobody on the socket"
assert_eq "$(code "$MIRRORCTL" -c "$conf" promote)" 1 "mirrorctl: promote of inconsistent data"
assert_contains "$T/err" "not known to be up to date" "refused promote says why"
assert_eq "$(code "$MIRRORCTL" -c "$conf" connect)" 1 "mirrorctl: connect (no replication yet)"
assert_eq "$(code "$MIRRORCTL" --socket "$sock" status --json)" 0 "mirrorctl --socket status"

# events: one line per change.  Nothing shows when the daemon has taken the
# subscription, so flip the role until a change comes through, then start
# the record afresh (">>" so that emptying the file is safe).
"$MIRRORCTL" -c "$conf" events >>"$T/events" &
events=$!
flip() {
    "$MIRRORCTL" -c "$conf" promote --force
    "$MIRRORCTL" -c "$conf" demote
    sleep 0.2
    [[ -s $T/events ]]
}
wait_for 10 flip
: >"$T/events"
"$MIRRORCTL" -c "$conf" promote --force
"$MIRRORCTL" -c "$conf" demote
wait_for 5 test "$(grep -c . "$T/events")" -ge 2
"$PYTHON" - "$T/events" <<'EOF' || fail "events: $(cat "$T/events")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
got = [(e["event"], e["role"], e["disk"], e["reason"]) for e in lines[-2:]]
want = [("state", "primary", "uptodate", "promote --force"),
        ("state", "secondary", "uptodate", "demote")]
assert got == want, "last two events %s, expected %s" % (got, want)
EOF
# The stream ends, with success, when the daemon stops.
bm_stop "$BM_PID"
rc=0
wait "$events" || rc=$?
assert_eq "$rc" 0 "exit code of mirrorctl events after the daemon stopped"
assert_eq "$(code "$MIRRORCTL" -c "$conf" status)" 3 "mirrorctl: no daemon"
assert_contains "$T/err" "no mirrord answers on $sock" "mirrorctl says nobody answers"

# "force" must be true to force: a string "no" is not a yes.
"$MIRRORCTL" -c "$conf" create-md --force >/dev/null
bm_start "$conf"
check $'{"cmd":"promote","force":"no"}\n' '^\{"ok":false,"code":[12],'
assert_eq "$(bm_status_field "$conf" .role)" secondary "role after promote with \"force\":\"no\""
bm_stop "$BM_PID"
