#!/usr/bin/env bash
# on-io-error = detach on a secondary: the replicated write that fails
# there is reported to the primary (WRITE_ACK with the error), which marks
# its blocks out of sync and still completes the client's write; the
# secondary goes failed, then diskless, writes nothing more locally (the
# primary marks every later write too) and cannot be promoted.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_faults   # failpoints under fiu-ctrl
bm_pair 16M
bm_pair_initial_sync

bm_fault "$PB" "enable name=disk/write/eio"
write() {   # write BYTE MIB
    "$PYTHON" - "$UA" "$1" "$2" <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(sys.argv[2].encode() * (1 << 20), int(sys.argv[3]) << 20)
h.flush()
PY
}
write A 0 || fail "the client's write failed on the primary"
disk_is() { [[ $(field "$CB" disk) == "$1" ]]; }
wait_for 5 disk_is diskless
grep -q "disk uptodate -> failed" "$T/rb-beta.log" || fail "beta's disk never went failed"
oos=$(field "$CA" out_of_sync_bytes)
((oos >= 1048576)) || fail "the primary did not mark the failed write out of sync ($oos)"

# Diskless: nothing is written there, and the primary knows it.
bm_fault "$PB" "disable name=disk/write/eio"
peer_disk_is() { [[ $(field "$CA" peer.disk) == "$1" ]]; }
wait_for 5 peer_disk_is diskless
write B 4 || fail "a later write failed on the primary"
# Expected of a diskless peer: not a warning per write.
grep -q "warn: peer failed a write at 4194304" "$T/ra-alpha.log" &&
    fail "the primary warns about every write its diskless peer refuses"
oos=$(field "$CA" out_of_sync_bytes)
((oos >= 2097152)) || fail "the primary did not mark the later write out of sync ($oos)"
"$PYTHON" - "$T/rb.img" <<'PY' || fail "the diskless secondary wrote to its disk"
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(4 << 20)
    sys.exit("written" if f.read(1 << 20) == b"B" * (1 << 20) else 0)
PY

ctla demote || fail "demote refused"
out=$(ctlb promote 2>&1) && fail "a diskless secondary was promoted"
assert_contains "$out" "diskless" "promote refused for the disk"
expect_fail ctlb promote --force
bm_stop "$PA"; bm_stop "$PB"
