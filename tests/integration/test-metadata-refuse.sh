#!/usr/bin/env bash
# mirrord refuses a disk whose metadata it cannot trust (none, corrupt, or
# created for another size): exit 1, a message that names the disk and says
# which, and not a byte of the file changed.  create-md refuses to overwrite
# metadata without --force, and a disk too small for any.
# (A second mirrord on a disk in use: test-metadata-refuse-running.sh.)
# timeout: 90
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
bm_setup

conf=$(bm_conf r0)
img=$T/r0.img
MiB=$((1 << 20))

# refused PATTERN: mirrord exits 1 with "DISK: PATTERN" on stderr, before
# touching the disk: same size, same bytes, no control socket.
refused() {
    local rc=0 sum size
    sum=$(md5sum <"$img")
    size=$(stat -c %s "$img")
    timeout 20 "$MIRRORD" -c "$conf" --node alpha --foreground 2>"$T/err" || rc=$?
    assert_eq "$rc" 1 "exit code of mirrord"
    assert_contains "$T/err" "$img: $1" "mirrord's reason"
    assert_eq "$(stat -c %s "$img")" "$size" "disk size after the refusal"
    assert_eq "$(md5sum <"$img")" "$sum" "disk content after the refusal"
    [[ ! -e $T/r0.sock ]] || fail "a refused mirrord left its control socket"
}

# new_disk SIZE: a fresh all-zero disk of SIZE bytes with metadata.
new_disk() {
    rm -f "$img"
    bm_disk r0 "$1"
    "$MIRRORCTL" -c "$conf" create-md >/dev/null
}

# No metadata at all.
bm_disk r0 64M
refused "no blkmirror metadata found at offset $((64 * MiB - 4096)) \(the last 4 KiB of the disk\): run 'mirrorctl create-md'"

# create-md on a disk too small for any metadata.
rm "$img"
bm_disk r0 8K
rc=0
"$MIRRORCTL" -c "$conf" create-md 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "exit code of create-md on an 8 KiB disk"
assert_contains "$T/err" "disk $img \(8192 bytes\) is too small for its metadata" "create-md's reason"
assert_eq "$(stat -c %s "$img")" 8192 "size of the 8 KiB disk after create-md"
cmp -s "$img" <(head -c 8192 /dev/zero) || fail "create-md wrote to a disk it found too small"

# create-md over existing metadata: refused without --force, done with it.
new_disk 64M
bm_start "$conf"
"$MIRRORCTL" -c "$conf" promote --force
bm_stop "$BM_PID"
md() { "$MIRRORCTL" -c "$conf" show-md --json; }
gen=$(md | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["generations"]["current"])')
[[ $gen != 0000000000000004 ]] || fail "promote did not start a new generation"
sum=$(md5sum <"$img")
rc=0
"$MIRRORCTL" -c "$conf" create-md 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "exit code of create-md over metadata"
assert_contains "$T/err" "$img already has blkmirror metadata .*--force" "create-md's reason"
assert_eq "$(md5sum <"$img")" "$sum" "disk after the refused create-md"
"$MIRRORCTL" -c "$conf" create-md --force >/dev/null
assert_contains "$(md)" '"flags":\["just-created"\],"generations":\{"current":"0000000000000004"' \
    "show-md after create-md --force"

# A corrupt superblock: one byte flipped inside it.
sb=$(($(stat -c %s "$img") - 4096))
printf '\x5a' | dd of="$img" bs=1 seek=$((sb + 100)) conv=notrunc status=none
refused "metadata checksum mismatch at offset $sb: the metadata is corrupt"
rc=0
"$MIRRORCTL" -c "$conf" create-md 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "exit code of create-md over corrupt metadata"
assert_contains "$T/err" "already has blkmirror metadata: .*checksum mismatch" "create-md over corrupt metadata"

# Shrunk by part of a 4 KiB block: the superblock is still there.
new_disk $((64 * MiB + 2048))
truncate -s -1024 "$img"
refused "disk is $((64 * MiB + 1024)) bytes but its metadata was created for $((64 * MiB + 2048)) bytes"

# Shrunk by 1 MiB: the superblock went with the cut-off end, so there is
# no metadata to find any more.
new_disk 64M
truncate -s -1M "$img"
refused "no blkmirror metadata found"

# Grown by 1 MiB: the superblock is intact, 1 MiB before the new end.  The
# refusal must say the size changed: "no metadata, run create-md" would send
# the operator to wipe the bitmap and generation identifiers.
new_disk 64M
truncate -s +1M "$img"
refused "disk is $((65 * MiB)) bytes but its metadata was created for $((64 * MiB)) bytes"
rc=0
"$MIRRORCTL" -c "$conf" create-md 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "exit code of create-md on the grown disk"
