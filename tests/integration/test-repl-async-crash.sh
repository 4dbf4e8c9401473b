#!/usr/bin/env bash
# Marks made after a write completed must survive a crash.  Async: a write
# is acknowledged once it is in the socket, and stays in the transfer log
# until a flush on the peer covers it.  Here the peer stops reading
# (SIGSTOP), the primary writes block 0 and then enough other extents that
# block 0's activity extent would be evicted, the ping timeout fails the
# link (which marks every write the peer may not have out of sync), and
# the primary is killed with -9.  After both restart the resync must
# repair block 0 and everything else: the disks end equal.
# timeout: 180
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_pair 128M protocol=async al-extents=7
bm_pair_initial_sync

kill -STOP "$PB"
"$PYTHON" - "$UA" <<'PY' || fail "writes through alpha failed"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"0" * 4096, 0)                  # block 0, extent 0
for i in range(1, 21):                    # 20 other 4 MiB extents
    h.pwrite(b"%02d" % i * 2048, i << 22)
PY
wait_for 20 grep -q "peer considered dead" "$T/ra-alpha.log"
wait_for 20 sh -c "[ \"\$($MIRRORCTL -c $CA status --json | grep -o '\"connection\":\"[a-z]*\"')\" != '\"connection\":\"connected\"' ]"
bm_kill9 "$PA"
bm_kill9 "$PB"

bm_start "$CA" alpha; PA=$BM_PID
bm_start "$CB" beta; PB=$BM_PID
ctla wait-connect --timeout 30 || fail "no connection after the restart"
ctla wait-sync --timeout 60 || fail "no resync after the restart"
assert_eq "$(field "$CA" connection)" connected "no split brain"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "the resync missed writes the peer never got"
