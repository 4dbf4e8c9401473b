#!/usr/bin/env bash
# A flapping link does not pile up hooks: with a hook that takes 2 s and
# 200 disconnect/connect cycles, the queue of pending hooks stays bounded
# (events of a kind already pending are merged, which the log shows), the
# last hook that runs reports the final state, and mirrord stops in its
# normal time.
# timeout: 300
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup

cat >"$T/hook" <<HOOK
#!/bin/bash
sleep 2
echo "\$1 \$BLKMIRROR_CONNECTION" >>"$T/events.\$BLKMIRROR_NODE"   # beta's hooks run on
HOOK
chmod +x "$T/hook"
bm_pair 16M handler-connect="$T/hook" handler-disconnect="$T/hook"
ctla wait-connect --timeout 20

start=$EPOCHREALTIME
for ((i = 0; i < 200; i++)); do
    ctla disconnect >/dev/null
    ctla connect >/dev/null
    ctla wait-connect --timeout 20 >/dev/null || fail "cycle $i: no connection"
done
echo "200 cycles in $(bm_elapsed "$start") s"

merged=$(grep -c "hooks: .*merged" "$T/ra-alpha.log" || true)
((merged > 0)) || fail "no hook events were merged in 200 cycles"
max=$(sed -n 's/.*hooks: .*merged.* \([0-9][0-9]*\) queued.*/\1/p' "$T/ra-alpha.log" | sort -n | tail -n 1)
echo "$merged merges, at most ${max:-?} queued"
((${max:-0} <= 64)) || fail "alpha queued $max hooks"
# Connected in the end: once the queue is empty, the last hook says so.
wait_for 40 sh -c "tail -n 1 '$T/events.alpha' | grep -q '^connect connected$'"

# Flapping again, then disconnected and stopped at once: what is still
# pending is merged, so mirrord stops in time (bm_stop: 10 s), and the
# last hook reports the disconnect.
for ((i = 0; i < 30; i++)); do
    ctla disconnect >/dev/null
    ctla connect >/dev/null
    ctla wait-connect --timeout 20 >/dev/null || fail "cycle $i: no connection"
done
ctla disconnect >/dev/null
bm_stop "$PA"
assert_eq "$(tail -n 1 "$T/events.alpha")" "disconnect connecting" "the last hook after the stop"
