#!/usr/bin/env bash
# Each protocol: fio writes with verify through the primary, then both
# disks' data areas are equal (cmp).
# timeout: 240
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires fio
bm_setup

for proto in sync semi-sync async; do
    bm_pair 128M protocol="$proto"
    bm_pair_initial_sync
    fio --name=w --ioengine=nbd --uri="$UA" --rw=randwrite --bs=4k --iodepth=32 \
        --size=48M --verify=crc32c --do_verify=1 --verify_state_save=0 --randrepeat=0 \
        --output-format=json --output="$T/fio-$proto.json" >/dev/null \
        || fail "fio failed ($proto)"
    errs=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["jobs"][0]["error"])' "$T/fio-$proto.json")
    assert_eq "$errs" 0 "fio errors ($proto)"
    # Overlapping writes from several jobs on one small region.
    fio --name=o --ioengine=nbd --uri="$UA" --rw=randwrite --bs=4k-64k --iodepth=16 \
        --numjobs=6 --size=2M --offset=1M --time_based --runtime=3 --randrepeat=0 \
        --output="$T/fio-overlap-$proto.txt" >/dev/null || fail "overlap fio failed ($proto)"
    ctla wait-sync --timeout 60 || fail "not in sync after writes ($proto)"
    assert_eq "$(field "$CA" replication)" established "replication ($proto)"
    assert_eq "$(field "$CB" peer.role)" primary "beta sees alpha primary ($proto)"
    bm_stop "$PA"; bm_stop "$PB"
    assert_disks_equal "disks differ after $proto"
    rm -f "$T"/r[ab].* "$T/ports"
done
