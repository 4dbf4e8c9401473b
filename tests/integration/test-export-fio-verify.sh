#!/usr/bin/env bash
# fio writes and verifies (crc32c) through the export: 4 KiB random writes at
# queue depth 32 over 128 MiB, then 4 jobs (4 connections) of 4k-256k random
# writes, each on its own 32 MiB.  After a clean restart the same jobs in
# verify_only mode find every block intact; after one block of the backing
# file is overwritten, they do not.
# timeout: 180
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
requires fio
requires fio --enghelp=nbd
bm_setup

bm_single r0 300M
conf=$BM_CONF
"$MIRRORCTL" -c "$conf" promote --force
uri=$(bm_nbd_uri r0)
M=$((1024 * 1024))

cat >"$T/verify.fio" <<EOF
[global]
ioengine=nbd
uri=$uri
rw=randwrite
randseed=4242
verify=crc32c
do_verify=1
verify_fatal=1
verify_state_save=0  # no *-verify.state files in the working directory

[rand4k]
bs=4k
iodepth=32
offset=0
size=128M

[mix]
stonewall
bsrange=4k-256k
iodepth=8
numjobs=4
offset=128M
offset_increment=32M
size=32M
EOF

# check_fio JSON: every job ended without error and read back (verified)
# all it was given: 128 MiB for rand4k, 32 MiB for each mix job.
check_fio() {
    "$PYTHON" -c '
import json, sys
d = json.load(open(sys.argv[1]))
jobs = d["jobs"]
want = {"rand4k": 128 << 20, "mix": 32 << 20}
names = sorted(j["jobname"] for j in jobs)
if names != ["mix"] * 4 + ["rand4k"]:
    sys.exit("fio jobs %r" % names)
for j in jobs:
    if j["error"] != 0:
        sys.exit("fio job %s: error %d" % (j["jobname"], j["error"]))
    if j["read"]["io_bytes"] != want[j["jobname"]]:
        sys.exit("fio job %s verified %d bytes, expected %d"
                 % (j["jobname"], j["read"]["io_bytes"], want[j["jobname"]]))' "$1" ||
        fail "fio results in ${1##*/}"
}

fio --output-format=json --output="$T/write.json" "$T/verify.fio" ||
    { cat "$T/write.json" >&2; fail "fio write+verify"; }
check_fio "$T/write.json"

# Clean restart: the data survives (read-only export of a secondary is
# enough to verify).
bm_stop "$BM_PID"
bm_start "$conf" alpha
fio --output-format=json --output="$T/verify.json" --verify_only "$T/verify.fio" ||
    { cat "$T/verify.json" >&2; fail "fio verify_only after a clean restart"; }
check_fio "$T/verify.json"

# verify_only does check: one 4 KiB block of rand4k's area overwritten in
# the backing file (daemon stopped) makes it fail.
bm_stop "$BM_PID"
head -c 4096 /dev/urandom |
    dd of="$T/r0.img" bs=4096 seek=$((64 * M / 4096)) conv=notrunc status=none
bm_start "$conf" alpha
rc=0
fio --output-format=json --output="$T/bad.json" --verify_only "$T/verify.fio" \
    2>"$T/bad.err" || rc=$?
((rc != 0)) || fail "fio verify_only passed over a corrupted block"
assert_contains "$(cat "$T/bad.json" "$T/bad.err")" 'verify: bad header|crc32c: verify failed|bad magic' \
    "fio's verify error"
bm_stop "$BM_PID"
