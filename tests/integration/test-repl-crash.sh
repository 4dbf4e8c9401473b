#!/usr/bin/env bash
# Sync protocol: a client writes numbered blocks and logs each
# acknowledgement; the primary is killed with -9 mid-run; the secondary is
# promoted and every acknowledged write is there.  The old primary comes
# back as sync target (no split brain) and the disks end equal.
# timeout: 180
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
bm_pair 128M
bm_pair_initial_sync

"$PYTHON" - "$UA" "$T/acked" <<'PY' &
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
log = open(sys.argv[2], "w", buffering=1)
i = 0
try:
    while i < 30000:
        h.pwrite(b"%08d" % i * 512, (i % 30000) * 4096)
        log.write("%d\n" % i)   # acknowledged
        i += 1
except nbd.Error:
    pass
PY
client=$!
wait_for 20 sh -c "[ \$(wc -l < $T/acked) -gt 300 ]"
bm_kill9 "$PA"
wait "$client" || true
acked=$(wc -l < "$T/acked")
[ "$acked" -gt 300 ] || fail "too few writes before the kill: $acked"

wait_for 10 sh -c "[ \"\$($MIRRORCTL -c $CB status --json | grep -o '\"connection\":\"[a-z]*\"')\" != '\"connection\":\"connected\"' ]"
ctlb promote || fail "the up-to-date secondary refused to be promoted"
"$PYTHON" - "$UB" "$T/acked" <<'PY' || fail "an acknowledged write is missing on the promoted node"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
n = sum(1 for _ in open(sys.argv[2]))
for i in range(n):
    got = h.pread(4096, i * 4096)
    if got != b"%08d" % i * 512:
        sys.exit("block %d: acknowledged but not on the new primary" % i)
print("all %d acknowledged writes present" % n)
PY
# New primary writes a little more; then the old primary returns.
"$PYTHON" -c 'import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b"N"*65536, 50<<20); h.flush()' "$UB"
bm_start "$CA" alpha; PA=$BM_PID
ctlb wait-sync --timeout 60 || fail "old primary did not resync"
assert_eq "$(field "$CA" role)" secondary "old primary comes back secondary"
assert_eq "$(field "$CA" connection)" connected "no split brain"
grep -q "target-bitmap" "$T/ra-alpha.log" || fail "old primary was not a bitmap sync target"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal
