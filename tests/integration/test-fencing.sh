#!/usr/bin/env bash
# fencing = resource-and-stonith: a sync primary that loses its peer holds
# writes until handler-fence-peer succeeds; if the handler fails they stay
# held until `mirrorctl resume-io`.  An orderly disconnect is not fenced.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup

# The fence handler succeeds once $T/go exists (fails at once if $T/fail
# does); with $T/code it exits with that status at once.
cat >"$T/fence" <<HOOK
#!/bin/sh
echo "fence \$BLKMIRROR_NODE \$BLKMIRROR_PEER" >>"$T/fenced"
[ -e "$T/code" ] && exit \$(cat "$T/code")
while [ ! -e "$T/go" ]; do
    [ -e "$T/fail" ] && exit 1
    sleep 0.1
done
exit 0
HOOK
chmod +x "$T/fence"
bm_faults   # failpoints under fiu-ctrl
bm_pair 32M fencing=resource-and-stonith handler-fence-peer="$T/fence"
bm_pair_initial_sync

writer() {   # writer FILE: one write + flush through alpha, then FILE appears
    "$PYTHON" -c 'import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b"f"*4096, 1 << 20); h.flush(); open(sys.argv[2], "w").close()' "$UA" "$1"
}

# An orderly disconnect is not a lost peer: no fencing, writes go on.
ctlb disconnect
writer "$T/w0"
[ -e "$T/fenced" ] && fail "an orderly disconnect ran the fence handler"
ctlb connect
ctla wait-sync --timeout 30 || fail "no resync after reconnect"
# The primary disconnects and goes on: beta outdates itself and confirms
# it (no fencing); a beta that cannot confirm (stopped) is fenced first.
ctla disconnect
writer "$T/w0c"
[ -e "$T/fenced" ] && fail "a confirmed disconnect of the primary ran the fence handler"
assert_eq "$(field "$CB" disk)" outdated "beta after the primary's disconnect"
ctla connect
ctla wait-sync --timeout 30 || fail "no resync after reconnect (2)"
kill -STOP "$PB"
ctla disconnect
writer "$T/w0d" &
wait_for 20 test -e "$T/fenced"
sleep 1
[ -e "$T/w0d" ] && fail "a write completed before the unconfirmed peer was fenced"
touch "$T/go"
wait_for 20 test -e "$T/w0d"
kill -CONT "$PB"
rm -f "$T/go" "$T/fenced"
ctla connect
ctla wait-sync --timeout 30 || fail "no resync after reconnect (3)"

# The data link fails (a failpoint on alpha) while writes are in flight to
# a beta that is stopped: none of them, and none started after, may be
# acknowledged before the fence handler succeeds, so every write
# acknowledged until then is on beta's disk (beta could be promoted).
"$BM_SRC/tests/oracle/oracle.py" write "$UA" "$T/olog" --first 1024 --blocks 512 --depth 16 \
    --stop "$T/ostop" &
opid=$!
bm_kill_at_exit "$opid"
wait_for 20 sh -c "[ \$(grep -c '^A' '$T/olog' 2>/dev/null) -ge 300 ]"
kill -STOP "$PB"
sleep 0.5
bm_fault "$PA" "enable name=link/send/fail"
writer "$T/w0b" &   # its send fails the link
wait_for 20 test -e "$T/fenced"
bm_fault "$PA" "disable name=link/send/fail"
sleep 1
cp "$T/olog" "$T/olog.fenced"
bm_kill9 "$PB"
"$BM_SRC/tests/oracle/oracle.py" check "$T/rb.img" "$T/olog.fenced" >"$T/ocheck" ||
    fail "writes acknowledged before the peer was fenced are not on it: $(tail -4 "$T/ocheck")"
[ -e "$T/w0b" ] && fail "a write started on a failed link completed before fencing"
touch "$T/ostop" "$T/go"
wait "$opid" || fail "oracle writer failed"
wait_for 20 test -e "$T/w0b"
grep -q '^E' "$T/olog" && fail "writer saw an error: $(grep '^E' "$T/olog")"
"$BM_SRC/tests/oracle/oracle.py" check "$T/ra.img" "$T/olog" >"$T/ocheck" ||
    fail "alpha lost acknowledged writes: $(tail -4 "$T/ocheck")"
rm -f "$T/go" "$T/fenced"
bm_start "$CB" beta; PB=$BM_PID
ctla wait-sync --timeout 30 || fail "beta did not come back"

# beta dies: the write waits for the fence handler.
bm_kill9 "$PB"
writer "$T/w1" &
wait_for 20 test -e "$T/fenced"
sleep 1
[ -e "$T/w1" ] && fail "a write completed while the peer was not fenced"
touch "$T/go"
wait_for 20 test -e "$T/w1"
assert_contains "$T/ra-alpha.log" "fence-peer succeeded: resuming I/O" "resume logged"

# DRBD's exit statuses: 4 (the peer is outdated) resumes, 6 (the peer is
# primary) leaves I/O frozen until resume-io.
rm -f "$T/go"
fence_with() {   # fence_with CODE WRITER-FILE: beta back, then lost again
    echo "$1" >"$T/code"
    bm_start "$CB" beta; PB=$BM_PID
    ctla wait-sync --timeout 30 || fail "beta did not come back"
    bm_kill9 "$PB"
    writer "$2" &
    wait_for 20 grep -q "fence-peer.*exit $1\|fence-peer failed ($1" "$T/ra-alpha.log"
}
fence_with 4 "$T/w4"
wait_for 20 test -e "$T/w4"
assert_contains "$T/ra-alpha.log" "exit 4: the peer is outdated" "exit 4 read as outdated"
fence_with 6 "$T/w6"
sleep 1
[ -e "$T/w6" ] && fail "a write completed although the peer said it is primary"
ctla resume-io
wait_for 20 test -e "$T/w6"
rm -f "$T/code"

# Again with a failing handler: frozen until resume-io.
touch "$T/fail"
bm_start "$CB" beta; PB=$BM_PID
ctla wait-sync --timeout 30 || fail "beta did not come back"
bm_kill9 "$PB"
writer "$T/w2" &
wait_for 20 grep -q "fence-peer failed" "$T/ra-alpha.log"
sleep 1
[ -e "$T/w2" ] && fail "a write completed although fencing failed"
expect_fail ctlb status
ctla resume-io
wait_for 20 test -e "$T/w2"
expect_fail ctla resume-io
