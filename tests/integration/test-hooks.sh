#!/usr/bin/env bash
# handler-* scripts run on role change, connect, disconnect, resync start
# and end, and split brain, with the resource, node and event in their
# environment, one at a time in the order of the events (a hook that takes
# its time, here the first connect's, delays the later ones).
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup

cat >"$T/hook" <<HOOK
#!/bin/bash
if [ "\$1" = connect ] && [ ! -e "$T/slow.\$BLKMIRROR_NODE" ]; then
    touch "$T/slow.\$BLKMIRROR_NODE"; sleep 1
fi
while read -r k v; do [ "\$k" = SigBlk: ] && echo "\$k \$v" >>"$T/sigblk"; done </proc/\$\$/status
echo "\$1 \$BLKMIRROR_EVENT \$BLKMIRROR_RESOURCE \$BLKMIRROR_NODE \$BLKMIRROR_PEER \$BLKMIRROR_ROLE \$BLKMIRROR_CONNECTION \$BLKMIRROR_REPLICATION" >>"$T/events.\$BLKMIRROR_NODE"
HOOK
chmod +x "$T/hook"
h=()
for ev in role-change connect disconnect resync-start resync-end split-brain; do
    h+=("handler-$ev=$T/hook")
done
bm_pair 32M "${h[@]}"
bm_pair_initial_sync
ctlb disconnect
ctla disconnect
ctla demote
ctlb promote --force   # beta left a primary in order: outdated
ctlb demote
ctla promote
"$PYTHON" -c 'import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b"x"*4096, 0); h.flush()' "$UA"
ctla demote
"$PYTHON" -c 'import sys' # both changed nothing on beta; alpha wrote: split brain needs both changed
ctlb promote --force
"$PYTHON" -c 'import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b"y"*4096, 8192); h.flush()' "$UB"
ctlb demote
ctla connect; ctlb connect
wait_for 20 grep -q "split-brain" "$T/events.beta"
wait_for 10 grep -q "split-brain" "$T/events.alpha"

a=$T/events.alpha
assert_contains "$(cat "$a")" '^connect connect r0 alpha beta secondary connected ' "connect hook with its environment"
assert_contains "$(cat "$a")" '^role-change role-change r0 alpha beta primary ' "role change to primary"
assert_contains "$(cat "$a")" '^resync-start resync-start r0 alpha beta primary connected syncsource' "resync start on the source"
assert_contains "$(cat "$a")" '^resync-end resync-end r0 alpha beta primary connected established' "resync end"
assert_contains "$(cat "$a")" '^disconnect disconnect r0 alpha beta primary ' "disconnect"
assert_contains "$(cat "$a")" '^split-brain split-brain r0 alpha beta secondary splitbrain' "split brain"
assert_contains "$(cat "$T/events.beta")" '^resync-start resync-start r0 beta alpha secondary connected synctarget' "resync start on the target"
# mirrord's blocked signals are not the hooks' (bash keeps the mask it
# inherits; dash would clear it).
assert_eq "$(sort -u "$T/sigblk" | tr -s '\t ' ' ')" "SigBlk: 0000000000000000" "the hooks' blocked signals"
# In event order: connect (1 s late), then the promotion and the
# reconnect it makes (a new generation).
assert_eq "$(cut -d' ' -f1 "$a" | head -n 3 | tr '\n' ' ')" "connect role-change disconnect " \
    "the first hooks on alpha, in event order"
