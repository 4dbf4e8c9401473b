#!/usr/bin/env bash
# Outdated, as DRBD has it: a secondary that the primary goes on writing
# without is "outdated", in its metadata too; promote refuses it without
# --force; only a resync makes it up to date again.  It happens when the
# secondary leaves a primary in order (disconnect, stop), when the primary
# disconnects from it, and with `mirrorctl outdate`; not when the primary
# stops (it writes nothing more).
# timeout: 180
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_pair 32M
bm_pair_initial_sync
write_a() {   # write_a OFFSET: 64 KiB through alpha
    "$PYTHON" -c 'import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b"w"*65536, int(sys.argv[2])); h.flush()' "$UA" "$1"
}
disk_b() { field "$CB" disk; }
uptodate_again() {   # reconnect beta, resync, beta up to date
    ctlb connect
    ctla wait-sync --timeout 30 || fail "$1: no resync"
    wait_for 10 sh -c "[ \"\$($MIRRORCTL -c $CB status --json | grep -o '\"disk\":\"[a-z]*\"' | head -1)\" = '\"disk\":\"uptodate\"' ]"
}

# 1. beta leaves the primary in order: outdated, and stays so over a restart.
ctlb disconnect
wait_for 10 sh -c "[ \"\$($MIRRORCTL -c $CB status --json | grep -o '\"disk\":\"[a-z]*\"' | head -1)\" = '\"disk\":\"outdated\"' ]"
write_a 0
out=$(ctlb promote 2>&1) && fail "an outdated secondary was promoted"
[[ $out == *outdated* ]] || fail "promote refusal does not say outdated: $out"
bm_stop "$PB"
"$MIRRORCTL" -c "$CB" --node beta show-md | grep -q "\"uptodate\"" &&
    fail "outdated is not in beta's metadata"
bm_start "$CB" beta; PB=$BM_PID
grep -q "ready: role secondary, disk outdated" "$T/rb-beta.log" ||
    fail "beta did not start outdated"
uptodate_again "after beta's disconnect"

# 2. the primary disconnects and goes on: it tells beta so.
ctla disconnect
wait_for 10 sh -c "[ \"\$($MIRRORCTL -c $CB status --json | grep -o '\"disk\":\"[a-z]*\"' | head -1)\" = '\"disk\":\"outdated\"' ]"
grep -q "goes on writing without this node" "$T/rb-beta.log" || fail "beta was not told"
ctla connect
uptodate_again "after alpha's disconnect"

# 3. the primary stops: it writes nothing more, beta stays up to date.
bm_stop "$PA"
sleep 1
assert_eq "$(disk_b)" uptodate "beta after the primary's clean stop"
bm_start "$CA" alpha; PA=$BM_PID
ctla wait-connect --timeout 30 || fail "alpha did not reconnect"

# 4. mirrorctl outdate: refused on a primary; on a secondary it sticks.
ctla promote
out=$(ctla outdate 2>&1) && fail "a primary was outdated"
[[ $out == *primary* ]] || fail "outdate refusal does not say primary: $out"
ctlb outdate
assert_eq "$(disk_b)" outdated "beta after mirrorctl outdate"
expect_fail ctlb promote
ctlb disconnect
uptodate_again "after mirrorctl outdate"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal
