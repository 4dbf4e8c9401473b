#!/usr/bin/env bash
# tools/ocf/blkmirror-cluster-hook, event by event, with Pacemaker's tools
# replaced by stubs that log their arguments (the real ones, in a real
# cluster, are driven by tests/vm/test-vm-pacemaker.sh): which events ban
# the peer from the Promoted role and which lift the ban, fence-peer's
# partition check and its fencing, an unban only when mirrorctl wait-sync
# says the two are in sync, the retries, the clone found from the CIB by
# the configuration file, and the exit codes mirrord acts on.
# timeout: 60
source "$(dirname "$0")/functions.sh"
bm_setup
HOOK=$BM_SRC/tools/ocf/blkmirror-cluster-hook
[[ -x $HOOK ]] || fail "$HOOK is not executable"

# Stubs: each logs "NAME ARGS" to $T/calls; behaviour from files in $T.
mkdir -p "$T/bin"
for t in crm_resource crm_node stonith_admin cibadmin logger mirrorctl; do
    cat >"$T/bin/$t" <<EOF
#!/bin/sh
echo "$t \$*" >>"$T/calls"
case $t in
crm_resource) exit \$(cat "$T/rc.crm_resource" 2>/dev/null || echo 0) ;;
mirrorctl) exit \$(cat "$T/rc.mirrorctl" 2>/dev/null || echo 0) ;;
crm_node) cat "$T/partition" ;;
stonith_admin) exit \$(cat "$T/rc.stonith" 2>/dev/null || echo 0) ;;
cibadmin) [ "\${BLKMIRROR_CONFIG:-}" = /etc/blkmirror/r0.conf ] || exit 6
    echo "/cib/configuration/resources/clone[@id='c-r0']/primitive[@id='p-r0']/instance_attributes[@id='p-r0-instance_attributes']/nvpair[@id='p-r0-instance_attributes-config']" ;;
esac
exit 0
EOF
    chmod +x "$T/bin/$t"
done

# run EVENT ROLE CONNECTION REPLICATION: the hook as mirrord runs it, on
# alpha with peer beta; the exit code in RC, the stub calls (logger's left
# out) in CALLS.
run() {
    : >"$T/calls"
    RC=0
    env -i PATH="$T/bin:/usr/bin:/bin" BLKMIRROR_RESOURCE=r0 BLKMIRROR_NODE=alpha \
        BLKMIRROR_PEER=beta BLKMIRROR_EVENT="$1" BLKMIRROR_ROLE="$2" BLKMIRROR_DISK=uptodate \
        BLKMIRROR_CONNECTION="$3" BLKMIRROR_REPLICATION="$4" \
        BLKMIRROR_CONFIG=${CONFIG:-/etc/blkmirror/r0.conf} ${CLONE:+BLKMIRROR_CLONE=$CLONE} \
        /bin/sh "$HOOK" "$1" || RC=$?
    CALLS=$(grep -v -e '^logger ' -e '^cibadmin ' -e '^mirrorctl ' "$T/calls" || true)
    grep -q "^logger -t blkmirror-r0 $1: role $2" "$T/calls" || fail "$1: the event was not logged"
}
BAN="crm_resource --resource c-r0 --ban --promoted --node beta"
UNBAN="crm_resource --resource c-r0 --clear --node beta"

echo "alpha beta" >"$T/partition"
run disconnect primary connecting off
assert_eq "$RC/$CALLS" "0/$BAN" "disconnect of a primary"
run disconnect secondary connecting off
assert_eq "$RC/$CALLS" "0/" "disconnect of a secondary"
run role-change primary connecting off
assert_eq "$RC/$CALLS" "0/$BAN" "promoted without the peer"
run role-change primary connected established
assert_eq "$RC/$CALLS" "0/" "promoted while connected"
run role-change secondary connected established
assert_eq "$RC/$CALLS" "0/" "demoted"
run connect secondary connected established
assert_eq "$RC/$CALLS" "0/$UNBAN" "connect with nothing to resync"
run connect primary connected syncsource
assert_eq "$RC/$CALLS" "0/" "connect with a resync to come"
run resync-end primary connected established
assert_eq "$RC/$CALLS" "0/$UNBAN" "resync-end"
grep -qx "mirrorctl -c /etc/blkmirror/r0.conf wait-sync --timeout 10" "$T/calls" ||
    fail "resync-end: no mirrorctl wait-sync before the unban"
echo 1 >"$T/rc.mirrorctl"
run resync-end primary connected established
assert_eq "$RC/$CALLS" "0/" "resync-end while wait-sync says not in sync"
rm "$T/rc.mirrorctl"
for ev in resync-start split-brain; do
    run "$ev" primary connected established
    assert_eq "$RC/$CALLS" "0/" "$ev (only logged)"
done

# fence-peer: the peer in this partition sees the ban; one outside it is
# powered off, and the hook's exit status is the fencing's.
run fence-peer primary connected established
assert_eq "$RC/$CALLS" "0/$BAN"$'\n'"crm_node --partition" "fence-peer, peer in the partition"
echo "alpha" >"$T/partition"
run fence-peer primary connected established
assert_eq "$RC/$CALLS" "0/$BAN"$'\n'"crm_node --partition"$'\n'"stonith_admin --fence beta --timeout 50" \
    "fence-peer, peer outside the partition"
echo 1 >"$T/rc.stonith"
run fence-peer primary connected established
assert_eq "$RC" 1 "fence-peer when the fencing fails"
echo 1 >"$T/rc.crm_resource"
run fence-peer primary connected established
assert_eq "$RC/$CALLS" "1/$BAN"$'\n'"$BAN"$'\n'"$BAN" "fence-peer when the ban fails (3 tries)"
rm "$T/rc.crm_resource" "$T/rc.stonith"

# The clone: from BLKMIRROR_CLONE, else found by the configuration file.
CLONE=ms-other run disconnect primary connecting off
assert_eq "$CALLS" "crm_resource --resource ms-other --ban --promoted --node beta" "BLKMIRROR_CLONE"
CONFIG=/etc/blkmirror/other.conf run disconnect primary connecting off
assert_eq "$RC/$CALLS" "1/" "no clone for the configuration file"
echo "cluster hook: all checks passed"
