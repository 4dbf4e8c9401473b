#!/usr/bin/env bash
# Overlapping writes under congestion: with protocol = async and a small
# max-async-lag, writes wait on the data link for lag room while they are
# in flight in the conflict tracker, and fencing can hold them as well.
# Each must stay on the tracker's list until it ends (the daemon aborts if
# one goes missing), and both disks must end equal.
# timeout: 240
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires fio

overlap_case() {
    local proto=$1; shift
    bm_setup
    bm_pair 64M protocol="$proto" "$@"
    bm_pair_initial_sync
    # 32 writers in 1 MiB: most writes overlap one in flight.
    fio --name=ov --ioengine=nbd --uri="$UA" --rw=randwrite --bsrange=4k-64k \
        --size=1M --iodepth=32 --time_based --runtime=5 --output="$T/fio.txt" \
        >/dev/null || fail "fio ($proto) failed: $(tail -3 "$T/fio.txt")"
    bm_alive "$PA" || fail "alpha died ($proto)"
    ctla wait-sync --timeout 60 || fail "not in sync after overlapping writes ($proto)"
    bm_stop "$PA"; bm_stop "$PB"
    assert_disks_equal "overlapping writes reached the disks in different orders ($proto)"
}

overlap_case async max-async-lag=64K
