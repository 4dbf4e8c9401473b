#!/usr/bin/env bash
# frontend = ublk: the device outlives a crashed mirrord.
#  1. Restart: two nodes (sync); ext4 on the primary's /dev/ublkbN, a writer
#     running (fsync'd files, each logged once acknowledged) and fio; kill -9
#     of the primary's mirrord; the writer blocks; mirrord starts again and
#     re-attaches the same device (primary again, no split brain); the
#     writer goes on, every acknowledged file reads back, the file system
#     stayed mounted, e2fsck -n is clean after umount, and once in sync both
#     disks are equal (requests the dead daemon held ran twice).
#  2. Failover: the same set-up; kill -9 of the primary's mirrord during
#     fio; the secondary is promoted; on its /dev/ublkbN the journal
#     replays, e2fsck -n is clean and every file acknowledged before the
#     kill reads back.  The old primary's mirrord, restarted while the
#     peer is down, gets no answer: it stays secondary (promote is refused
#     while it waits), the writers' held I/O fails and its device goes.
# timeout: 1200
if [[ ${BM_VM:-0} != 1 ]]; then
    source "$(dirname "$0")/lib.sh"
    VM_TIMEOUT=1140 vm_run "$0"
    exit
fi

source "$BM_SRC/tests/integration/functions.sh"
source "$BM_SRC/tests/integration/repl.sh"
source "$BM_SRC/tests/vm/ublk.sh"
requires fio
requires mkfs.ext4
bm_setup
ublk_check_kernel
ublk_keep_logs

# ---- 1. kill -9 and restart: the device is re-attached ----
bm_pair 128M protocol=sync frontend=ublk export-listen=
bm_pair_initial_sync
dev=$(field "$CA" device)
[[ -b $dev ]] || fail "no device on the primary: '$dev'"
mkfs.ext4 -q -F "$dev"
MA=/mnt/ublk-a
ublk_mount "$dev" "$MA"
ublk_writer "$MA" "$T/acked1"
ublk_fio_load "$MA" load1
ublk_wait_progress "$T/acked1" 5 120

bm_kill9 "$PA"
sleep 2
n_killed=$(wc -l <"$T/acked1")
[[ -b $dev ]] || fail "$dev disappeared when mirrord was killed"
# I/O issued now waits for the new daemon.
dd if="$dev" of="$T/block0" bs=4k count=1 iflag=direct status=none &
reader=$!
bm_kill_at_exit "$reader"
sleep 3
bm_alive "$reader" || fail "a read completed while no mirrord served the device"
assert_eq "$(wc -l <"$T/acked1")" "$n_killed" "writes acknowledged while no mirrord ran"
bm_start "$CA" alpha; PA=$BM_PID
# Primary again only once the peer confirmed it stayed secondary.
wait_for 60 sh -c "$MIRRORCTL -c $CA status --json | grep -q '\"role\":\"primary\"'"
assert_eq "$(field "$CA" device)" "$dev" "the same device after the restart"
grep -q "re-attached" "$T/ra-alpha.log" || fail "no 're-attached' in the log"
wait "$reader" || fail "the read issued during the outage failed"
assert_eq "$(stat -c %s "$T/block0")" 4096 "bytes read during the outage"
ublk_wait_progress "$T/acked1" 10 120
findmnt -n "$MA" >/dev/null || fail "the file system is not mounted any more"
ublk_stop_bg
ublk_check_acked "$MA" "$T/acked1"
n_after=$(wc -l <"$T/acked1")
echo "writer: $n_killed files before the kill, $n_after in all"
ublk_umount "$MA"
e2fsck -fn "$dev" >"$T/fsck1.txt" 2>&1 || { cat "$T/fsck1.txt"; fail "e2fsck -n after the restart"; }
! grep -qi "I/O error" "$T/ra-alpha.log" || fail "I/O errors logged by the primary"
dmesg | grep -E "EXT4-fs (error|warning)|I/O error, dev ublkb|Buffer I/O error" && fail "ext4 or block errors in dmesg"
ctla wait-connect --timeout 60 || fail "the restarted primary did not reconnect"
ctla wait-sync --timeout 120 || fail "not in sync after the restart"
assert_eq "$(field "$CA" connection)" connected "no split brain after the restart"
ctla demote
ublk_assert_no_device "after demote"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "disks differ after a restart that reissued requests"
rm -f "$T"/r[ab].* "$T/ports"

# ---- 2. kill -9 during fio, failover to the secondary ----
bm_pair 128M protocol=sync frontend=ublk export-listen=
bm_pair_initial_sync
dev=$(field "$CA" device)
mkfs.ext4 -q -F "$dev"
ublk_mount "$dev" "$MA"
ublk_writer "$MA" "$T/acked2"
ublk_fio_load "$MA" load2
ublk_wait_progress "$T/acked2" 5 120
bm_kill9 "$PA"
sleep 1
n_killed=$(wc -l <"$T/acked2")
# The dead primary's device keeps waiting; this node is fenced from here on.
umount -l "$MA" || true
wait_for 30 sh -c "! $MIRRORCTL -c $CB status --json | grep -q '\"connection\":\"connected\"'"
ctlb promote || fail "the secondary refused promotion"
devb=$(field "$CB" device)
[[ -b $devb && $devb != "$dev" ]] || fail "no new device on the promoted secondary: '$devb'"
MB=/mnt/ublk-b
ublk_mount "$devb" "$MB"     # replays the journal
ublk_check_acked "$MB" "$T/acked2" "$n_killed"
ublk_umount "$MB"
e2fsck -fn "$devb" >"$T/fsck2.txt" 2>&1 || { cat "$T/fsck2.txt"; fail "e2fsck -n on the new primary"; }
echo "failover: $n_killed files acknowledged before the kill, all present on $devb"
ctlb demote
bm_stop "$PB"

# The old primary's node is not rebooted here: its device still waits, and
# would hang anything that syncs.  Its mirrord comes back with the peer
# down: nobody confirms that this node may be primary, so after the wait
# (RESUME_WAIT_MS) the held I/O fails, the writers exit, and the device
# goes.  It never becomes primary.
n_reattached=$(grep -c "re-attached" "$T/ra-alpha.log" || true)
bm_start "$CA" alpha; PA=$BM_PID
assert_eq "$(field "$CA" role)" secondary "the old primary's role at its restart"
# Meanwhile the operator cannot make it primary over the held device.
expect_fail ctla promote --force
assert_eq "$(field "$CA" role)" secondary "the old primary's role after a refused promote"
wait_for 90 sh -c "[ ! -e $dev ]"
assert_eq "$(field "$CA" role)" secondary "the old primary's role without its peer"
assert_eq "$(field "$CA" device)" null "the old primary's device without its peer"
for p in "${UBLK_BG[@]}"; do
    wait_for 30 sh -c "! kill -0 $p 2>/dev/null"
    rc=0; wait "$p" 2>/dev/null || rc=$?
    ((rc != 0)) || fail "a writer of the old primary's device ended without an error"
done
UBLK_BG=()
assert_eq "$(grep -c "re-attached" "$T/ra-alpha.log" || true)" "$n_reattached" \
    "re-attached lines in the old primary's log (none at this start)"
bm_stop "$PA"
ublk_assert_no_device "after the old primary's clean stop"
echo "ublk recovery: all checks passed"
