#!/usr/bin/env bash
# Two threads' updates of the superblock do not undo each other.  A
# switchover demotes the primary right after its resync ends, while its
# peer thread records that the target took its generation (the bitmap
# generation goes: peer_sync_confirmed).  The failpoint meta/sb/slow holds
# that update for 2 s between its copy of the superblock and its write;
# the demote (the primary flag goes) runs meanwhile.  dm_sb_begin and
# dm_sb_commit hold sb_lock across the window, so the demote waits and both
# changes reach the disk; a read-modify-write without the lock would write
# the peer thread's stale copy over the demote (primary again: a crashed
# primary at the next start).  Checked on disk, and after kill -9 and a
# restart.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
bm_faults
# The held peer thread sends no pings meanwhile: beta must not drop it.
bm_pair 16M ping-timeout=10
bm_pair_initial_sync

# md FIELD: one field of alpha's superblock on disk (show-md).
md() { ctla show-md --json | bm_json "$1"; }
conn_is() { [[ $(field "$1" connection) == "$2" ]]; }
peer_role_is() { [[ $(field "$1" peer.role) == "$2" ]]; }
# check_md WHEN: both updates are in alpha's superblock on disk.
check_md() {
    local flags
    flags=$(md flags)
    [[ $flags != *'"primary"'* ]] ||
        fail "$1: the demote's update was lost: alpha's superblock still says primary ($flags)"
    [[ $flags != *crashed-primary* ]] || fail "$1: alpha is a crashed primary ($flags)"
    assert_eq "$(md generations.bitmap)" 0000000000000000 \
        "$1: the peer thread's update was lost: alpha's bitmap generation"
    assert_eq "$(md generations.current)" "$gen" "$1: alpha's current generation"
}

# alpha goes on alone: its first write starts a generation, the one it
# shared with beta becoming its bitmap generation.
ctlb disconnect
wait_for 10 conn_is "$CA" connecting
"$PYTHON" - "$UA" <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
for b in range(8):
    h.pwrite(bytes([b + 1]) * 4096, b * 65536)
h.flush(); h.shutdown()
PY
gen=$(md generations.current)
[[ $(md generations.bitmap) != 0000000000000000 ]] ||
    fail "alpha's write alone started no generation: $(ctla show-md --json)"

# beta comes back and alpha resyncs it; the first superblock update after
# that, the peer thread's once beta reports alpha's generation, is held.
bm_fault "$PA" "enable name=meta/sb/slow,onetime"
ctlb connect
wait_for 60 grep -q 'failpoint meta/sb/slow' "$T/ra-alpha.log"
ctla wait-sync --timeout 10 || fail "alpha not in sync"
ctla demote || fail "demote refused"
# beta hears of the demote from alpha's peer thread once the held update
# is written: both writers are done.
wait_for 20 peer_role_is "$CB" secondary
assert_eq "$(field "$CA" role)" secondary "alpha's role after the demote"
check_md "after the demote"
assert_eq "$(ctlb show-md --json | bm_json generations.current)" "$gen" \
    "beta took alpha's generation"

# Durable: what a crash leaves on disk, and what a restart makes of it.
bm_kill9 "$PA"
check_md "after kill -9"
bm_start "$CA" alpha; PA=$BM_PID
if grep -q 'crashed primary' "$T/ra-alpha.log"; then
    fail "alpha restarted as a crashed primary: $(grep 'crashed primary' "$T/ra-alpha.log")"
fi
assert_eq "$(field "$CA" role)" secondary "alpha's role after the restart"
assert_eq "$(field "$CA" disk)" uptodate "alpha's disk after the restart"
ctla wait-connect --timeout 20 || fail "no reconnect after the restart"
ctla wait-sync --timeout 30 || fail "not in sync after the restart"
check_md "after the restart"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "at the end"
