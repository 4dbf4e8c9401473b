#!/usr/bin/env bash
# Disconnect, write, reconnect: out_of_sync_bytes rises with the writes,
# the resync brings it back to 0 moving about what was dirtied (not a full
# copy), and the disks are equal.
# timeout: 180
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
bm_pair 256M
bm_pair_initial_sync

ctlb disconnect
wait_for 10 sh -c "[ \"\$($MIRRORCTL -c $CA status --json | grep -o '\"connection\":\"[a-z]*\"')\" = '\"connection\":\"connecting\"' ]"
# 1% of the blocks, scattered: 655 random 4 KiB blocks of 256 MiB.
"$PYTHON" - "$UA" <<'PY'
import nbd, random, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
random.seed(7)
blocks = random.sample(range(h.get_size() // 4096), 655)
for b in blocks:
    h.pwrite(random.randbytes(4096), b * 4096)
h.flush(); h.shutdown()
PY
oos=$(field "$CA" out_of_sync_bytes)
assert_eq "$oos" $((655 * 4096)) "out_of_sync_bytes counts exactly the written blocks"
assert_eq "$(field "$CA" resync)" null "no resync while disconnected"

ctlb connect
ctla wait-sync --timeout 60 || fail "resync did not finish"
assert_eq "$(field "$CA" out_of_sync_bytes)" 0 "nothing out of sync after the resync"
assert_eq "$(field "$CB" disk)" uptodate "target up to date"
moved=$(sed -n 's/.*resync finished: \([0-9]*\) bytes.*/\1/p' "$T/ra-alpha.log" | tail -1)
[ -n "$moved" ] || fail "the source did not log the resync"
"$PYTHON" -c "import sys; m,d=int(sys.argv[1]),int(sys.argv[2]); sys.exit(0 if d <= m <= d*1.05 else 1)" \
    "$moved" "$oos" || fail "resync moved $moved bytes for $oos dirtied"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal
