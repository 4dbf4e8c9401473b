#!/usr/bin/env bash
# frontend = ublk: a restarted primary keeps its held /dev/ublkbN only if
# the peer confirms that nobody went on without it.
#  1. Peer promoted meanwhile: two nodes (sync), alpha primary; a write is
#     acknowledged on alpha's /dev/ublkbN; kill -9 of alpha's mirrord; a
#     write issued now is held by the kernel; beta is promoted and writes;
#     alpha's mirrord starts again: it must not become primary, the held
#     write fails (EIO) and the device goes, alpha stays secondary and
#     becomes sync target of beta (DRBD's answer: alpha never wrote after
#     the split, beta's bitmap names alpha's generation, so no split brain);
#     beta's writes survive and both disks end equal.  beta never sees a
#     second primary.
#  2. Peer stayed secondary: kill -9 of alpha's mirrord; a held read; alpha
#     starts again: once connected to the secondary peer it resumes as
#     primary, the held read and a new write succeed on the same device.
#  3. No peer to ask (no replication configured): the restarted daemon
#     resumes at once; the resumed node is no longer a crashed primary
#     (show-md) and its first write starts a new generation, so that a peer
#     promoted apart would later meet it in a split brain, not overwrite it.
#  4. The re-attach itself fails (failpoint ublk/end-recovery/eio, no peer):
#     the held write fails, the device goes, the node stays secondary and
#     is still a crashed primary in its metadata.
# timeout: 900
if [[ ${BM_VM:-0} != 1 ]]; then
    source "$(dirname "$0")/lib.sh"
    VM_TIMEOUT=840 vm_run "$0"
    exit
fi

source "$BM_SRC/tests/integration/functions.sh"
source "$BM_SRC/tests/integration/repl.sh"
source "$BM_SRC/tests/vm/ublk.sh"
bm_setup
ublk_check_kernel
ublk_keep_logs

# pattern FILE BYTE: 1 MiB of BYTE (0-255) into FILE.
pattern() {
    head -c 1048576 /dev/zero | tr '\0' "\\$(printf '%03o' "$2")" >"$1"
}

# ---- 1. the peer was promoted: alpha must not resume ----
bm_pair 64M protocol=sync frontend=ublk export-listen=
bm_pair_initial_sync
dev=$(field "$CA" device)
[[ -b $dev ]] || fail "no device on the primary: '$dev'"
pattern "$T/pa" 65
pattern "$T/pb" 66
pattern "$T/pc" 67
dd if="$T/pa" of="$dev" bs=1M seek=1 oflag=direct status=none || fail "write on alpha"

bm_kill9 "$PA"
[[ -b $dev ]] || fail "$dev disappeared when mirrord was killed"
# Held by the kernel: no mirrord serves the device.
dd if="$T/pc" of="$dev" bs=1M seek=2 oflag=direct status=none 2>"$T/held.err" &
held=$!
bm_kill_at_exit "$held"
sleep 2
bm_alive "$held" || fail "a write completed while no mirrord served the device"

wait_for 30 sh -c "! $MIRRORCTL -c $CB status --json | grep -q '\"connection\":\"connected\"'"
ctlb promote || fail "beta refused promotion"
devb=$(field "$CB" device)
[[ -b $devb ]] || fail "no device on the promoted beta: '$devb'"
dd if="$T/pb" of="$devb" bs=1M seek=1 oflag=direct status=none || fail "write on beta"

t0=$SECONDS
bm_start "$CA" alpha; PA=$BM_PID
# Give it the time a resume would take; it must not happen.
wait_for 60 sh -c "! kill -0 $held 2>/dev/null" || fail "the held write still waits"
held_rc=0; wait "$held" || held_rc=$?
echo "held write ended with rc=$held_rc after $((SECONDS - t0)) s: $(cat "$T/held.err")"
((held_rc != 0)) || fail "the held write succeeded on the stale copy"
assert_eq "$(field "$CA" role)" secondary "alpha's role after the restart"
assert_eq "$(field "$CB" role)" primary "beta's role after alpha's restart"
wait_for 30 sh -c "[ ! -e $dev ]" || fail "$dev still exists on the secondary"
assert_eq "$(field "$CA" device)" null "alpha's device after the restart"
grep -q "re-attached" "$T/ra-alpha.log" && fail "alpha re-attached its device"
ctla wait-connect --timeout 60 || fail "alpha did not connect to beta"
ctla wait-sync --timeout 120 || fail "alpha did not sync from beta"
assert_eq "$(field "$CA" connection)" connected "alpha's connection"
assert_eq "$(field "$CA" disk)" uptodate "alpha's disk after the resync"
grep -q "split brain" "$T/ra-alpha.log" "$T/rb-beta.log" && fail "a split brain was reported"
grep -q "both nodes became primary" "$T/rb-beta.log" && fail "beta saw two primaries"
dd if="$devb" of="$T/rb1" bs=1M skip=1 count=1 iflag=direct status=none
cmp "$T/pb" "$T/rb1" || fail "beta's write did not survive"
ctlb demote
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "disks differ after alpha synced from beta"
ublk_assert_no_device "after both stopped"
rm -f "$T"/r[ab].* "$T/ports"

# ---- 2. the peer stayed secondary: alpha resumes once it confirms ----
bm_pair 64M protocol=sync frontend=ublk export-listen=
bm_pair_initial_sync
dev=$(field "$CA" device)
dd if="$T/pa" of="$dev" bs=1M seek=1 oflag=direct status=none || fail "write on alpha"
bm_kill9 "$PA"
dd if="$dev" of="$T/held-read" bs=1M skip=1 count=1 iflag=direct status=none &
held=$!
bm_kill_at_exit "$held"
sleep 2
bm_alive "$held" || fail "a read completed while no mirrord served the device"
bm_start "$CA" alpha; PA=$BM_PID
wait_for 60 sh -c "$MIRRORCTL -c $CA status --json | grep -q '\"role\":\"primary\"'" ||
    fail "alpha did not resume as primary with a secondary peer"
wait "$held" || fail "the held read failed"
cmp "$T/pa" "$T/held-read" || fail "the held read returned other data"
assert_eq "$(field "$CA" device)" "$dev" "the same device after the resume"
dd if="$T/pc" of="$dev" bs=1M seek=2 oflag=direct status=none || fail "write after the resume"
ctla wait-sync --timeout 120 || fail "not in sync after the resume"
assert_eq "$(field "$CB" role)" secondary "beta's role"
ctla demote
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "disks differ after the resume"
rm -f "$T"/r[ab].* "$T/ports"

# ---- 3. no peer configured: resumes alone, a new generation on its first write ----
C1=$(bm_conf r1 frontend=ublk export-listen=)
bm_disk r1 32M
"$MIRRORCTL" -c "$C1" create-md >/dev/null
bm_start "$C1" alpha; P1=$BM_PID
"$MIRRORCTL" -c "$C1" promote --force
dev=$(field "$C1" device)
dd if="$T/pa" of="$dev" bs=1M seek=1 oflag=direct status=none || fail "write before the kill"
bm_kill9 "$P1"
dd if="$T/pc" of="$dev" bs=1M seek=2 oflag=direct status=none &
held=$!
bm_kill_at_exit "$held"
sleep 2
bm_alive "$held" || fail "a write completed while no mirrord served the device"
bm_start "$C1" alpha; P1=$BM_PID
wait_for 20 sh -c "$MIRRORCTL -c $C1 status --json | grep -q '\"role\":\"primary\"'"
wait "$held" || fail "the held write failed without a peer to ask"
assert_contains "$T/r1-alpha.log" "no peer configured: the held device serves again" \
    "the log of a resume without a peer"
assert_contains "$T/r1-alpha.log" "first write without the peer: new generation" \
    "a new generation at the first write after the resume"
"$MIRRORCTL" -c "$C1" demote
bm_stop "$P1"
"$MIRRORCTL" -c "$C1" show-md --json >"$T/md1.json"
flags=$(bm_json_field flags <"$T/md1.json")
[[ $flags != *crashed-primary* ]] || fail "still a crashed primary after the resume: $flags"

# ---- 4. the re-attach fails: secondary, device gone, still a crashed primary ----
bm_start "$C1" alpha; P1=$BM_PID
"$MIRRORCTL" -c "$C1" promote
dev=$(field "$C1" device)
bm_kill9 "$P1"
dd if="$T/pc" of="$dev" bs=1M seek=3 oflag=direct status=none 2>/dev/null &
held=$!
bm_kill_at_exit "$held"
sleep 2
bm_alive "$held" || fail "a write completed while no mirrord served the device"
BM_FAULTS="enable name=ublk/end-recovery/eio" bm_start "$C1" alpha; P1=$BM_PID
wait_for 60 sh -c "! kill -0 $held 2>/dev/null"
held_rc=0; wait "$held" || held_rc=$?
((held_rc != 0)) || fail "the held write succeeded although the re-attach failed"
wait_for 30 sh -c "[ ! -e $dev ]"
assert_eq "$(field "$C1" role)" secondary "the role after a failed re-attach"
assert_eq "$(field "$C1" device)" null "the device after a failed re-attach"
bm_stop "$P1"
ublk_assert_no_device "after a failed re-attach"
"$MIRRORCTL" -c "$C1" show-md --json >"$T/md2.json"
flags=$(bm_json_field flags <"$T/md2.json")
[[ $flags == *crashed-primary* ]] || fail "no longer a crashed primary after a failed re-attach: $flags"
echo "ublk resume with peer: all checks passed"
