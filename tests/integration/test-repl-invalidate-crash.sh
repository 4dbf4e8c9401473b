#!/usr/bin/env bash
# invalidate marks every block out of sync, durably: killed with -9 before
# it ever reached the peer, the node comes back inconsistent with its whole
# bitmap set, and the resync then repairs every block (an empty bitmap on
# disk would make it "up to date" after moving nothing).
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
bm_pair 16M
bm_pair_initial_sync
ctla demote
ctlb disconnect
# beta's copy goes bad behind the mirror's back; invalidate is what repairs it.
for blk in 3 1000 3000; do
    head -c 4096 /dev/urandom | dd of="$T/rb.img" bs=4096 seek=$blk conv=notrunc status=none
done
ctlb invalidate --force
bm_kill9 "$PB"
bm_start "$CB" beta; PB=$BM_PID
ctlb connect 2>/dev/null || true
ctla wait-sync --timeout 60 || fail "no resync after the crash"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "the invalidated node came back in sync without its blocks"
