#!/usr/bin/env bash
# What the NBD export advertises, as nbdinfo sees it: the size of the data
# area, read-only on a secondary, read-write (with flush, FUA, trim, zero and
# multi-conn) on a primary, block sizes, export names.
# timeout: 60
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
requires nbdinfo
bm_setup

bm_single r0 64M
conf=$BM_CONF
uri=$(bm_nbd_uri r0)
sock=$T/r0.nbd
size=$(bm_status_field "$conf" .size_bytes)
((size > 0 && size < 64 * 1024 * 1024)) || fail "size_bytes $size: not less than the disk"

# info FIELD [URI]: one field of the export nbdinfo describes.
info() {
    nbdinfo --json "${2:-$uri}" | bm_json ".exports.0.$1"
}

# A fresh node is a secondary: read-only, and as large as the data area.
assert_eq "$(bm_status_field "$conf" .role)" secondary "role of a fresh node"
nbdinfo --json "$uri" >"$T/sec.json"
assert_eq "$(bm_json .exports.0.export-size <"$T/sec.json")" "$size" "export size (secondary)"
assert_eq "$(bm_json .exports.0.is_read_only <"$T/sec.json")" true "is_read_only (secondary)"

"$MIRRORCTL" -c "$conf" promote --force
assert_eq "$(bm_status_field "$conf" .role)" primary "role after promote --force"

# The smallest block: 512 (or 4096) when the daemon uses O_DIRECT on the
# backing file, 1 when the file system refuses O_DIRECT.
if dd if="$T/r0.img" of=/dev/null iflag=direct bs=512 skip=1 count=1 2>/dev/null; then
    min_block=512
elif dd if="$T/r0.img" of=/dev/null iflag=direct bs=4096 count=1 2>/dev/null; then
    min_block=4096
else
    min_block=1
fi

nbdinfo --json "$uri" >"$T/pri.json"
pri() { bm_json ".exports.0.$1" <"$T/pri.json"; }
assert_eq "$(pri export-name)" r0 "export name"
assert_eq "$(pri export-size)" "$size" "export size (primary)"
assert_eq "$(pri is_read_only)" false "is_read_only (new connection to a primary)"
for f in can_flush can_fua can_trim can_zero can_multi_conn; do
    assert_eq "$(pri "$f")" true "$f"
done
assert_eq "$(pri block_size_minimum)" "$min_block" "block_size_minimum"
assert_eq "$(pri block_size_preferred)" 4096 "block_size_preferred"
assert_eq "$(pri block_size_maximum)" 1048576 "block_size_maximum"

# The default (empty) export name reaches the same export.
default_uri="nbd+unix:///?socket=$sock"
assert_eq "$(info export-size "$default_uri")" "$size" "export size under the default name"
assert_eq "$(info is_read_only "$default_uri")" false "is_read_only under the default name"

# The list holds r0, and only r0.
nbdinfo --list --json "$uri" >"$T/list.json"
assert_eq "$(bm_json .exports.0.export-name <"$T/list.json")" r0 "first listed export"
"$PYTHON" -c '
import json, sys
names = [e["export-name"] for e in json.load(open(sys.argv[1]))["exports"]]
sys.exit(0 if names == ["r0"] else "nbdinfo --list: exports %r, expected [\"r0\"]" % names)' "$T/list.json" ||
    fail "nbdinfo --list"

# Any other name is refused, and the daemon keeps serving.
expect_fail nbdinfo "nbd+unix:///r1?socket=$sock" 2>"$T/wrong.err"
# NBD_REP_ERR_UNKNOWN, which libnbd reports as ENOENT (not a dropped link)
assert_contains "$T/wrong.err" 'No such file or directory' "refusal of an unknown export"
expect_fail nbdinfo "nbd+unix:///r0x?socket=$sock" 2>/dev/null
assert_eq "$(info export-size)" "$size" "export size after refused names"
bm_stop "$BM_PID"
