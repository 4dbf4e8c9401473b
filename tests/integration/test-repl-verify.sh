#!/usr/bin/env bash
# Online verify finds blocks that differ behind the mirror's back, marks
# them out of sync and the resync repairs them.  invalidate resyncs the
# whole disk comparing checksums first: only what differs moves.
# VERIFY_PROTO and VERIFY_MAXIO run it with another protocol or a
# max-io-size below the 64 KiB a checksum covers (test-repl-verify-*.sh).
# timeout: 180
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires fio
proto=${VERIFY_PROTO:-sync}
maxio=${VERIFY_MAXIO:-1048576}
chunk=$((maxio < 65536 ? maxio : 65536))  # what one checksum covers
bm_setup
bm_pair 64M protocol="$proto" max-io-size="$maxio"
bm_pair_initial_sync
fio --name=w --ioengine=nbd --uri="$UA" --rw=write --bs=$((maxio < 1048576 ? maxio : 1048576)) --size=48M \
    --output="$T/fio.txt" >/dev/null || fail "fio failed"
ctla wait-sync --timeout 30 || fail "not in sync"

# Three 4 KiB blocks of beta's copy change behind the mirror's back, in
# three different verify chunks.
for blk in 10 5000 9000; do
    head -c 4096 /dev/urandom | dd of="$T/rb.img" bs=4096 seek=$blk conv=notrunc status=none
done
cmp -s -n "$SIZE" "$T/ra.img" "$T/rb.img" && fail "corruption did not take"

ctla verify || fail "verify refused"
wait_for 60 grep -q "verify finished" "$T/ra-alpha.log"
grep -q "verify finished: $((3 * chunk)) bytes differ" "$T/ra-alpha.log" \
    || fail "verify did not find exactly the three corrupted chunks: $(grep 'verify finished' "$T/ra-alpha.log")"
ctla wait-sync --timeout 60 || fail "no resync after verify"
moved=$(sed -n 's/.*resync finished: \([0-9]*\) bytes.*/\1/p' "$T/ra-alpha.log" | tail -1)
assert_eq "$moved" $((3 * chunk)) "the resync after verify moved the marked chunks"
bm_stop "$PB"
assert_disks_equal "verify + resync did not repair beta"
bm_start "$CB" beta; PB=$BM_PID
ctla wait-sync --timeout 30 || fail "beta did not come back"

# invalidate on beta: everything is checked, only what differs moves.
head -c 4096 /dev/urandom | dd of="$T/rb.img" bs=4096 seek=77 conv=notrunc status=none
before=$(grep -c "resync finished" "$T/ra-alpha.log")
ctlb invalidate || fail "invalidate refused"
wait_for 60 sh -c "[ \$(grep -c 'resync finished' $T/ra-alpha.log) -gt $before ]"
ctla wait-sync --timeout 60 || fail "no resync after invalidate"
moved=$(sed -n 's/.*resync finished: \([0-9]*\) bytes.*/\1/p' "$T/ra-alpha.log" | tail -1)
assert_eq "$moved" "$chunk" "checksum resync after invalidate moved only the differing chunk"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal "invalidate did not repair beta"
