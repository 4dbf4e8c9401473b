#!/usr/bin/env bash
# The NBD export against broken and hostile clients (helpers/nbd_raw.py):
# every bad request gets the NBD error nbdkit's validate_request gives, or
# the connection is dropped; after every drop a new client is served; a
# WRITE of 4 GiB is dropped without the daemon allocating it; pipelined
# requests are all answered with their own handles; a partial WRITE never
# reaches the disk.  The harness fails the test on any sanitizer report.
# timeout: 120
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
requires nbdinfo
requires "$PYTHON" -c 'import nbd'
bm_setup

bm_single r0 64M
conf=$BM_CONF
uri=$(bm_nbd_uri r0)
size=$(bm_status_field "$conf" .size_bytes)
MiB=$((1 << 20))

raw() { "$PYTHON" "$BM_SRC/tests/integration/helpers/nbd_raw.py" "$T/r0.nbd" "$@"; }

# The daemon still runs and a new client gets the export.
still_serving() {
    bm_alive "$BM_PID" || fail "mirrord died after: $*"
    assert_eq "$(nbdinfo --size "$uri")" "$size" "export size for a new client after: $*"
}

# check WANT CASE [ARGS...]: nbd_raw.py prints WANT, then a new client works.
check() {
    local want=$1 out; shift
    out=$(raw "$@") || fail "nbd_raw.py $* failed"
    assert_eq "$out" "$want" "nbd_raw.py $*"
    still_serving "$@"
}

# Requests are named by number: READ 0, WRITE 1, FLUSH 3, TRIM 4, WRITE_ZEROES 6.
# A secondary's export is read-only: changes get EPERM, reads work.
check "error=1 next=ok"  request 1 0 0 4096 4096
check "error=1 next=ok"  request 1 0 0 $((3 * MiB + 512)) $((3 * MiB + 512)) # in pieces, all refused
check "error=1 next=ok"  request 6 0 0 4096
check "error=1 next=ok"  request 4 0 0 4096
check "error=0 next=ok"  request 0 0 0 4096

"$MIRRORCTL" -c "$conf" promote --force
check "error=0 next=ok"  request 1 0 0 4096 4096
check "error=22 next=ok" request 99 0 0 4096                 # unknown command
check "error=22 next=ok" request 0 0x8000 0 4096             # unknown flag
check "error=22 next=ok" request 1 0x8000 0 4096 4096        # same on a WRITE: payload consumed
check "error=22 next=ok" request 0 0 0 0                     # zero length
check "error=22 next=ok" request 1 0 0 0
check "error=22 next=ok" request 3 0 4096 0                  # FLUSH with an offset
check "error=22 next=ok" request 3 0 0 1                     # FLUSH with a length
check "error=22 next=ok" request 0 0 $((size - 4096)) 8192   # READ past the end
check "error=22 next=ok" request 0 0 "$size" 4096
check "error=22 next=ok" request 0 0 0xfffffffffffff000 4096 # offset + length wraps
check "error=28 next=ok" request 1 0 $((size - 4096)) 8192 8192
check "error=28 next=ok" request 6 0 $((size - 4096)) 8192
check "error=0 next=ok"  request 0 0 0 $MiB                  # max-io-size
check "error=0 next=ok"  request 0 0 0 $((MiB + 1))          # more: in pieces (test-export-large)
check "error=22 next=ok" request 0 0 0 $((32 * MiB + 1))     # over the spec's default of 32 MiB
check "error=22 next=ok" request 0 0 0 0xffffffff
check "closed"           request 1 0 0 $((32 * MiB + 1))     # WRITE too big: dropped
# A client that asked for the block size constraints keeps to max-io-size.
check "error=22 next=ok" --block-size request 0 0 0 $((MiB + 1))
check "closed"           --block-size request 1 0 0 $((MiB + 1))
check "closed"           request 0 0 0 4096 0 0x12345678     # bad request magic

# The handshake.
check "closed" garbage 10000
check "closed" option 7 0 0x1234567812345678                  # bad option magic
check "reply=0x80000001 then go=ok" option 99 0               # unknown option: ERR_UNSUP
out=$(raw option 7 5000)                                      # over 4096 bytes: dropped
[[ $out =~ ^(reply=0x80000009\ then\ )?closed$ ]] || fail "option GO with 5000 bytes: got '$out'"
still_serving "option 7 5000"

# Cut-off requests and clients that leave with requests in flight.
check "sent" short-header
check "sent" short-write $((32 * MiB))
bm_nbdsh -u "$uri" -c "assert h.pread(65536, $((32 * MiB))) == bytes(65536), 'partial WRITE reached the disk'"
check "sent" abandon 100
check "answered 50 then closed" disc 50

# A WRITE announcing 4 GiB: dropped at once, nothing allocated for it.
rss() {
    local kb
    kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$BM_PID/status")
    [[ $kb =~ ^[0-9]+$ ]] || fail "no VmRSS in /proc/$BM_PID/status"
    echo "$kb"
}
before=$(rss)
start=${EPOCHREALTIME/./}
assert_eq "$(raw --timeout 2 request 1 0 0 0xffffffff)" "closed" "WRITE of 0xffffffff bytes"
took_ms=$(( (${EPOCHREALTIME/./} - start) / 1000 ))
((took_ms < 2000)) || fail "the 4 GiB WRITE took ${took_ms} ms to be dropped"
after=$(rss)
echo "VmRSS around the 4 GiB WRITE: $before kB -> $after kB, dropped in $took_ms ms"
((after - before < 64 * 1024)) ||
    fail "VmRSS grew from $before kB to $after kB after a 4 GiB WRITE header"
still_serving "WRITE of 0xffffffff bytes"

# 200 WRITEs then 200 READs, each batch sent before reading any reply
# (more than the queue depth of 128): all answered, data intact.
check "answered 200 writes, 200 reads" pipeline 200

log=$T/r0-alpha.log
assert_contains "$log" 'WRITE of 4294967295 bytes exceeds the maximum of 33554432' "log names the huge WRITE"
assert_contains "$log" 'bad request magic 0x12345678' "log names the bad magic"
bm_stop "$BM_PID"
