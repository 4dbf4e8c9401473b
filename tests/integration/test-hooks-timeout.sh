#!/usr/bin/env bash
# A hook still running after handler-timeout is killed together with what
# it started: it runs in its own process group and the whole group gets
# SIGKILL, so a "sleep 1000 &" in the script does not outlive it.  The
# daemon goes on (the next hook runs).
# timeout: 60
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
bm_setup

marker=bmhook-$$-$RANDOM   # in the hook's and its child's command lines only
hook=$T/$marker
cat >"$hook" <<HOOK
#!/bin/bash
echo "\$1 \$BLKMIRROR_ROLE" >>"$T/ran"
[ "\$BLKMIRROR_ROLE" = primary ] || exit 0
echo \$\$ >"$T/hook.pid"
bash -c 'sleep 1000; true' $marker-child &
echo \$! >"$T/child.pid"
sleep 30
HOOK
chmod +x "$hook"
bm_single r0 32M handler-role-change="$hook" handler-timeout=1
assert_eq "$("$MIRRORD" --check --dump -c "$BM_CONF" --node alpha | grep handler-timeout)" \
    "handler-timeout = 1" "handler-timeout in the dump"
# Whatever survives a failure is killed at exit, by pid.
kill_left() {
    local f
    for f in "$T/hook.pid" "$T/child.pid"; do
        if [[ -s $f ]]; then kill -KILL "$(cat "$f")" 2>/dev/null || true; fi
    done
}
bm_on_exit kill_left

"$MIRRORCTL" -c "$BM_CONF" promote --force
wait_for 5 pgrep -f "$marker-child" >/dev/null
# Killed 1 s after it started; give it 5.
gone() { ! pgrep -f "$marker" >/dev/null; }
wait_for 5 gone
assert_contains "$T/r0-alpha.log" "hook role-change: .* still running after 1 s: killed" "the daemon's log"
# The next hook still runs.
"$MIRRORCTL" -c "$BM_CONF" demote
wait_for 5 grep -q "role-change secondary" "$T/ran"
bm_stop "$BM_PID"
