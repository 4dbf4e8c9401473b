#!/usr/bin/env bash
# A planned switchover with async writes still on their way: demote
# returns only once the peer has every write of this node, so the new
# primary never receives an old write (it would refuse it, or apply it
# over its own), and nothing acknowledged is lost.  Ten rounds, alternating.
# timeout: 180
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
bm_faults   # failpoints under fiu-ctrl
bm_pair 64M protocol=async max-async-lag=64M
bm_pair_initial_sync
# Data links that deliver slowly, meta links that do not: what a demote
# says can overtake the writes before it.
for pid in "$PA" "$PB"; do
    bm_fault "$pid" "enable name=link/recv/slow"
done

burst() {   # burst URI BYTE: 16 MiB in 1 MiB writes, then 4 KiB at 60 MiB
    "$PYTHON" - "$@" <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
b = sys.argv[2].encode()
for i in range(16):
    h.pwrite(b * (1 << 20), i << 20)
h.pwrite(b * 4096, 60 << 20)
PY
}
for ((i = 0; i < 10; i++)); do
    if ((i % 2 == 0)); then p=a; s=b; else p=b; s=a; fi
    byte=$(printf "\\x$(printf %x $((65 + i)))")
    uri=U${p^^}; burst "${!uri}" "$byte"
    ctl$p demote || fail "round $i: demote refused"
    ctl$s promote || fail "round $i: promote right after the demote refused"
done
# alpha is secondary, beta primary after 10 rounds; both must hold round 9.
ctlb wait-sync --timeout 60 || fail "not in sync"
for n in a b; do
    if grep -q "but this node is primary" "$T/r$n-"*.log; then
        fail "node $n received a write from its peer while primary"
    fi
done
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "the disks differ after the switchovers"
"$PYTHON" - "$T/rb.img" <<'PY' || fail "the last round's writes are not there"
import sys
with open(sys.argv[1], "rb") as f:
    d = f.read(16 << 20)
    f.seek(60 << 20); e = f.read(4096)
sys.exit(0 if d == b"J" * (16 << 20) and e == b"J" * 4096 else "block content differs")
PY
