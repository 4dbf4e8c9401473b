#!/usr/bin/env bash
# A two-node Pacemaker + Corosync cluster runs blkmirror as a promotable
# clone (tools/ocf/blkmirror) with an ext4 Filesystem resource on the
# primary's /dev/blkmirror/r0 (tests/vm/cluster.crm), nodes alpha and beta
# in namespaces of one VM (tests/vm/cluster.sh says what each owns).
#  1. Set-up by hand, as an operator does once: create-md on both, the
#     first promote --force, the initial sync, mkfs; the daemons stopped.
#  2. The configuration loaded with crmsh: Pacemaker starts mirrord on both
#     nodes, promotes one and mounts the file system there (only there).
#  3. A planned switchover (crm resource move fs-r0, as blkmirror-ha(7)
#     says): the file system, and with it the Promoted role, moves to the
#     other node with its files; no ban is left.
#  4. Power failure of the primary's node (its link cut, every process
#     SIGKILLed) while a writer fsyncs files and logs each acknowledged
#     one: Pacemaker promotes the survivor and mounts the file system
#     there; every acknowledged file reads back with its checksum, and the
#     survivor takes new writes.  Prints the failover time, from the kill
#     to the file system mounted on the survivor.  The hook
#     (tools/ocf/blkmirror-cluster-hook) bans the lost node from promotion.
#  5. The lost node comes back: resync, the ban lifted, an online verify
#     finds no difference.
#  6. A node that missed writes is never promoted: the secondary goes to
#     standby, the primary writes alone and loses power, the stale node
#     comes back online alone and stays secondary (banned).
#  At the end the stale node stops its resources cleanly (stop-all-resources).
# timeout: 900
if [[ ${BM_VM:-0} != 1 ]]; then
    source "$(dirname "$0")/lib.sh"
    VM_TIMEOUT=840 vm_run "$0"
    exit
fi

source "$BM_SRC/tests/integration/functions.sh"
source "$BM_SRC/tests/vm/cluster.sh"
bm_setup
[[ -c /dev/ublk-control ]] || fail "no /dev/ublk-control in the VM (ublk_drv not loaded?)"
cluster_check_tools
requires findmnt
requires mkfs.ext4
cluster_install
cluster_keep_logs
cluster_network
hook=/usr/sbin/blkmirror-cluster-hook
cluster_files 96M ping-timeout=3 fencing=resource-and-stonith handler-fence-peer=$hook \
    handler-disconnect=$hook handler-role-change=$hook handler-connect=$hook \
    handler-resync-end=$hook
MNT=/srv/r0

# The node whose file system is mounted (exactly one), or "".
mounted_on() {
    local n on=()
    for n in "${CLUSTER_NODES[@]}"; do
        [[ -n ${CLUSTER_PID1[$n]:-} ]] && bm_alive "${CLUSTER_PID1[$n]}" || continue
        cluster_mounted "$n" "$MNT" && on+=("$n")
    done
    ((${#on[@]} <= 1)) || fail "the file system is mounted on ${on[*]} at once"
    echo "${on[0]:-}"
}
is_mounted_on() { [[ $(mounted_on) == "$1" ]]; }
mounted_somewhere() { [[ -n $(mounted_on) ]]; }
role_is() { [[ $(cluster_field "$1" role 2>/dev/null) == "$2" ]]; }
no_mirrord() { ! nodex "$1" pidof mirrord >/dev/null; }
bans_are() { [[ $(cluster_bans "$1") == "$2" ]]; }

# A resource's state in the cluster's view, from node NAME: "ROLE@NODE ...".
crm_where() {
    nodex "$1" crm_mon -1 --output-as=xml 2>/dev/null | /usr/bin/python3 -c '
import sys, xml.etree.ElementTree as ET
t = ET.parse(sys.stdin)
out = []
for r in t.iter("resource"):
    if r.get("id", "").split(":")[0] == sys.argv[1]:
        for n in r.iter("node"):
            out.append("%s@%s" % (r.get("role"), n.get("name")))
print(" ".join(sorted(out)))' "$2"
}

# files_write NODE N PREFIX: N files of random data in the mount, each
# fsync'd, and their checksums in $T/PREFIX.sums.
files_write() {
    nodex "$1" bash -c 'cd "$1" && for ((i = 0; i < $2; i++)); do
            dd if=/dev/urandom of="$3$i" bs=16k count=4 conv=fsync status=none || exit 1
        done && sha256sum "$3"*' _ "$MNT" "$2" "$3" >"$T/$3.sums" ||
        fail "writing files on $1"
}
files_check() {
    nodex "$1" bash -c 'cd "$1" && sha256sum --quiet -c "$2"' _ "$MNT" "$T/$2.sums" ||
        fail "files $2* differ or are missing on $1"
}

# ---- 1. By hand, once: metadata, initial sync, mkfs ----
for n in "${CLUSTER_NODES[@]}"; do cluster_boot "$n"; done
for n in "${CLUSTER_NODES[@]}"; do
    ctl "$n" create-md >/dev/null || fail "create-md on $n"
    nodex "$n" sh -c "mirrord -c $CLUSTER_CONF >>/var/log/blkmirror/r0.log 2>&1" ||
        fail "mirrord did not start on $n"
done
ctl alpha wait-connect --timeout 60 || fail "the nodes did not connect"
ctl alpha promote --force || fail "promote --force on alpha"
ctl alpha wait-sync --timeout 120 || fail "initial sync"
dev=$(nodex alpha readlink /dev/blkmirror/r0) || fail "no /dev/blkmirror/r0 on the primary"
assert_eq "$dev" "$(cluster_field alpha device)" "/dev/blkmirror/r0 on alpha"
nodex beta test ! -e /dev/blkmirror/r0 || fail "/dev/blkmirror/r0 on the secondary"
nodex alpha mkfs.ext4 -q -F /dev/blkmirror/r0 || fail "mkfs.ext4"
ctl alpha demote || fail "demote"
nodex alpha test ! -e /dev/blkmirror/r0 || fail "/dev/blkmirror/r0 left after demote"
for n in "${CLUSTER_NODES[@]}"; do
    nodex "$n" sh -c 'kill -TERM $(pidof mirrord)'
done
for n in "${CLUSTER_NODES[@]}"; do
    wait_for 30 nodex "$n" sh -c '! pidof mirrord >/dev/null'
done

# ---- 2. Under Pacemaker ----
start=$EPOCHREALTIME
wait_for 240 cluster_online alpha
echo "cluster: both nodes online after $(bm_elapsed "$start") s"
grep -v '^#' "$BM_SRC/tests/vm/cluster.crm" >"$T/cluster.crm"
nodex alpha crm configure load update "$T/cluster.crm" || fail "crm configure load update"
nodex alpha crm_verify -L -V || fail "crm_verify -L: the live configuration is not valid"
start=$EPOCHREALTIME
wait_for 240 mounted_somewhere
P=$(mounted_on)
[[ $P == alpha ]] && S=beta || S=alpha
echo "cluster: primary $P, file system mounted after $(bm_elapsed "$start") s"
assert_eq "$(cluster_field "$P" role)" primary "role of $P"
assert_eq "$(cluster_field "$S" role)" secondary "role of $S"
assert_eq "$(crm_where "$P" p-r0)" "Promoted@$P Unpromoted@$S" "clone roles in crm_mon"
assert_eq "$(crm_where "$P" fs-r0)" "Started@$P" "fs-r0 in crm_mon"
ctl "$P" wait-sync --timeout 60 || fail "not in sync under Pacemaker"
files_write "$P" 20 a

# ---- 3. Planned switchover ----
start=$EPOCHREALTIME
nodex "$P" crm resource move fs-r0 "$S" || fail "crm resource move"
wait_for 240 is_mounted_on "$S"
echo "switchover: $P -> $S in $(bm_elapsed "$start") s"
nodex "$P" crm resource clear fs-r0 || fail "crm resource clear"
assert_eq "$(cluster_field "$S" role)" primary "role of $S after the switchover"
wait_for 60 role_is "$P" secondary
files_check "$S" a
P=$S
[[ $P == alpha ]] && S=beta || S=alpha
ctl "$P" wait-sync --timeout 60 || fail "not in sync after the switchover"
assert_eq "$(cluster_bans "$P")" "" "ban constraints after the switchover"

# ---- 4. The primary's node loses power ----
files_write "$P" 10 b
: >"$T/acked"
nodex "$P" bash -c 'cd "$1" && i=0 && while :; do
        dd if=/dev/urandom of="w$i" bs=16k count=4 conv=fsync status=none || exit 1
        sha256sum "w$i" >>"$2" || exit 1
        i=$((i + 1))
    done' _ "$MNT" "$T/acked" &
writer=$!
bm_kill_at_exit "$writer"
wait_for 120 sh -c "[ \$(wc -l < '$T/acked') -ge 5 ]"
start=$EPOCHREALTIME
cluster_power_off "$P"
wait "$writer" 2>/dev/null || true
n_acked=$(wc -l <"$T/acked")
wait_for 300 role_is "$S" primary
promoted=$(bm_elapsed "$start")
wait_for 300 is_mounted_on "$S"
failover=$(bm_elapsed "$start")
echo "failover: $P lost power; $S promoted after $promoted s, file system mounted after $failover s"
assert_eq "$(crm_where "$S" fs-r0)" "Started@$S" "fs-r0 in crm_mon after the failover"
files_check "$S" a
files_check "$S" b
nodex "$S" bash -c 'cd "$1" && sha256sum --quiet -c "$2"' _ "$MNT" "$T/acked" ||
    fail "an acknowledged file is missing or differs on $S"
echo "failover: all $n_acked files acknowledged before the power failure are on $S"
files_write "$S" 5 c
echo "FAILOVER-TIME: $failover s (power off of $P to ext4 mounted on $S; promoted after $promoted s)"
# The survivor went on alone: the hook banned the lost node from promotion.
wait_for 60 bans_are "$S" "cli-ban-c-r0-on-$P"

# ---- 5. The lost node comes back: resync, then the ban is lifted ----
cluster_boot "$P"
wait_for 240 cluster_online "$S"
wait_for 240 role_is "$P" secondary
ctl "$S" wait-sync --timeout 240 || fail "the returning node did not get in sync"
wait_for 120 bans_are "$S" ""
echo "rejoin: $P back as secondary, in sync, ban lifted"
ctl "$S" verify || fail "verify"
wait_for 300 grep -q "verify finished" "$T/node-$S/var/log/blkmirror/r0.log"
grep "verify finished" "$T/node-$S/var/log/blkmirror/r0.log"
grep -q "verify finished: 0 bytes differ" "$T/node-$S/var/log/blkmirror/r0.log" ||
    fail "the online verify found differences after the resync"
files_check "$S" c

# ---- 6. A node that misses writes is never promoted ----
# The secondary leaves (standby: the cluster stops its mirrord); the
# primary writes alone, then loses power; the stale node comes back alone
# and must not be promoted: its data lacks files d*.  It is outdated (it
# left a primary in order), so the agent gives it no promotion score.
nodex "$S" crm node standby "$P" || fail "crm node standby"
wait_for 240 no_mirrord "$P"
wait_for 60 bans_are "$S" "cli-ban-c-r0-on-$P"
files_write "$S" 5 d
cluster_power_off "$S"
nodex "$P" crm node online "$P" || fail "crm node online"
wait_for 240 role_is "$P" secondary
# Judged once the stale node's cluster knows the other is gone: under load
# that took more than 30 s, and until then its view still had $S promoted.
wait_for 240 cluster_node_offline "$P" "$S"
for _ in $(seq 30); do
    [[ $(cluster_field "$P" role) == secondary ]] || fail "the stale node $P was promoted"
    cluster_mounted "$P" "$MNT" && fail "the file system was mounted on the stale node $P"
    sleep 1
done
assert_eq "$(crm_where "$P" p-r0)" "Unpromoted@$P" "clone roles with only the stale node"
# Kept from promotion twice over: it left the primary in order (standby),
# so it is outdated, in its metadata, and the agent gives it no score;
# and the hook's ban.
assert_eq "$(cluster_field "$P" disk)" outdated "the stale node's disk"
score=$(nodex "$P" crm_attribute -N "$P" -n master-p-r0 -l reboot -G -q 2>/dev/null) || score=
assert_eq "$score" "" "the stale node's promotion score (outdated: none)"
assert_eq "$(cluster_bans "$P")" "cli-ban-c-r0-on-$P" "the ban on the stale node"
echo "stale node: $P stayed secondary for 30 s after the primary's loss (outdated, no score, banned)"

nodex "$P" crm configure property stop-all-resources=true || fail "stop-all-resources"
wait_for 240 no_mirrord "$P"
echo "pacemaker: all checks passed"
