#!/usr/bin/env bash
# mirrorctl attach: a secondary whose disk failed (detached, diskless) and
# was repaired takes its disk back, is inconsistent and gets a full resync
# from the primary; then both disks are equal, the writes it missed
# included.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_faults   # failpoints under fiu-ctrl
bm_pair 16M
bm_pair_initial_sync

write() {   # write BYTE MIB
    "$PYTHON" - "$UA" "$1" "$2" <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(sys.argv[2].encode() * (1 << 20), int(sys.argv[3]) << 20)
h.flush()
PY
}
disk_is() { [[ $(field "$CB" disk) == "$1" ]]; }
expect_fail ctlb attach   # nothing to attach
bm_fault "$PB" "enable name=disk/write/eio"
write A 0 || fail "a write failed on the primary"
wait_for 5 disk_is diskless
write B 3 || fail "a write failed on the primary"

# The disk is repaired.
bm_fault "$PB" "disable name=disk/write/eio"
ctlb attach || fail "attach refused"
grep -q "disk diskless -> inconsistent (attach)" "$T/rb-beta.log" ||
    fail "attach did not make the disk inconsistent"
ctla wait-sync --timeout 30 || fail "no resync after attach"
wait_for 10 disk_is uptodate
write C 5 || fail "a write after the attach failed"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "the disks differ after attach and resync"
