#!/usr/bin/env bash
# fencing = resource-and-stonith while a connection comes up: the peer was
# lost and fenced, comes back up to date at the same generation, and the
# primary writes while the session is between the state exchange (which
# told the peer "no sync") and connected.  Such a write may not be
# acknowledged alone: the connect that follows reports "in sync" (the
# cluster hook lifts the fence on it) while the peer would lack the write,
# and a failover then loses it.  It waits until the session is connected
# and goes to the peer like any other.  (The failpoint peer/session/slow
# holds the session for 3 s before the data links open.)
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup

cat >"$T/fence" <<HOOK
#!/bin/sh
echo "fence \$BLKMIRROR_NODE" >>"$T/fenced"
exit 0
HOOK
# The connect hook is where the cluster lifts the fence: it records how
# much the primary still had out of sync then.
cat >"$T/connect" <<HOOK
#!/bin/sh
[ "\$BLKMIRROR_ROLE" = primary ] || exit 0
oos=\$("$MIRRORCTL" -c "$T/ra.conf" --node alpha status --json |
      sed -n 's/.*"out_of_sync_bytes": *\([0-9]*\).*/\1/p')
echo "\$BLKMIRROR_REPLICATION \$oos" >>"$T/connects"
HOOK
chmod +x "$T/fence" "$T/connect"
bm_faults
# A slow repair, so that what it has left is seen by the connect hook.
bm_pair 16M fencing=resource-and-stonith handler-fence-peer="$T/fence" \
    handler-connect="$T/connect" resync-rate=2M
bm_pair_initial_sync

# beta is lost: fenced, I/O resumes; alpha writes nothing meanwhile.
bm_kill9 "$PB"
wait_for 20 test -e "$T/fenced"
wait_for 20 grep -q "fence-peer succeeded" "$T/ra-alpha.log"
rm -f "$T/connects"

# beta returns; alpha's session stalls before its data links open.
bm_fault "$PA" "enable name=peer/session/slow"
nosync=$(grep -c "generations: .*no-sync" "$T/ra-alpha.log" || true)
bm_start "$CB" beta; PB=$BM_PID
wait_for 20 sh -c "[ \$(grep -c 'generations: .*no-sync' '$T/ra-alpha.log') -gt $nosync ]"
"$PYTHON" - "$UA" "$T/written" <<'PY' &
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
for i in range(8):
    h.pwrite(b"S" * (1 << 20), (4 + i) << 20)
h.flush()
open(sys.argv[2], "w").close()
PY
wpid=$!
sleep 1
connected=$(field "$CA" connection)
if [[ -e $T/written && $connected != connected ]]; then
    fail "a write was acknowledged while the session was still $connected"
fi
bm_fault "$PA" "disable name=peer/session/slow"
wait "$wpid" || fail "the write failed"
ctla wait-connect --timeout 20 || fail "no connection"
wait_for 20 test -s "$T/connects"
read -r repl oos <"$T/connects"
if [[ $repl == established && $oos != 0 ]]; then
    fail "connected as in sync (the fence is lifted then) with $oos bytes the peer lacks"
fi
ctla wait-sync --timeout 60 || fail "not in sync"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "after the connect"
