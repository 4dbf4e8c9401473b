#!/usr/bin/env bash
# qemu-img copies 256 MiB of random data into the export: qemu-img compare
# finds it identical (the rest of the larger export reads as zeros), a copy
# back out matches byte for byte, and so does the backing file after a clean
# stop.
# timeout: 120
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
requires qemu-img
bm_setup

bm_single r0 300M
conf=$BM_CONF
"$MIRRORCTL" -c "$conf" promote --force
uri=$(bm_nbd_uri r0)
size=$(bm_status_field "$conf" .size_bytes)
src_size=$((256 * 1024 * 1024))
((size > src_size)) || fail "data area $size is not larger than 256 MiB"

head -c "$src_size" /dev/urandom >"$T/src.img"
qemu-img convert -n -f raw -O raw "$T/src.img" "$uri"

# Sizes differ: compare checks the source's 256 MiB and that the export's
# tail reads as zeros.
out=$(qemu-img compare -f raw -F raw "$T/src.img" "$uri") ||
    fail "qemu-img compare src export: $out"
assert_contains "$out" '^Images are identical' "qemu-img compare"

# compare does notice a difference (the check above can fail): one byte
# flipped in the middle of a copy of the source.
off=$((100 * 1024 * 1024 + 12345))
cp "$T/src.img" "$T/changed.img"
"$PYTHON" -c '
import os, sys
fd, off = os.open(sys.argv[1], os.O_RDWR), int(sys.argv[2])
os.pwrite(fd, bytes([os.pread(fd, 1, off)[0] ^ 0xff]), off)' "$T/changed.img" "$off"
rc=0
out=$(qemu-img compare -f raw -F raw "$T/changed.img" "$uri") || rc=$?
assert_eq "$rc" 1 "qemu-img compare of a changed image (1: images differ)"
# (qemu-img names the 512-byte sector)
assert_contains "$out" "offset $((off / 512 * 512))!" "where compare finds the difference"

# Copied back out over the export, then the backing file itself.
qemu-img convert -f raw -O raw "$uri" "$T/out.img"
assert_eq "$(stat -c %s "$T/out.img")" "$size" "size of the image copied out"
cmp -n "$src_size" "$T/src.img" "$T/out.img" || fail "copy out differs from the source"
cmp -n $((size - src_size)) -i "$src_size:0" "$T/out.img" /dev/zero ||
    fail "copy out: the export's tail is not zeros"

bm_stop "$BM_PID"
cmp -n "$src_size" "$T/src.img" "$T/r0.img" || fail "backing file differs from the source"
cmp -n $((size - src_size)) -i "$src_size:0" "$T/r0.img" /dev/zero ||
    fail "backing file: the data area past the source is not zeros"
