#!/usr/bin/env bash
# The oracle (tests/oracle/oracle.py) judges a disk fairly: a run through a
# real export checks clean, and a reverted, a torn and a misplaced block are
# each reported as such.  A checker that cannot fail proves nothing.
# The writer's block-device mode (O_DIRECT, a pool of threads: what the VM
# crash loop runs on /dev/ublkbN) is run here on a plain file.
# timeout: 60
source "$(dirname "$0")/functions.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup
ORACLE=$BM_SRC/tests/oracle/oracle.py

bm_single r0 16M
"$MIRRORCTL" -c "$BM_CONF" promote --force
"$ORACLE" write "$(bm_nbd_uri r0)" "$T/log" --blocks 64 --depth 8 --max-writes 400 \
    --flush-every 50 || fail "oracle writer failed"
grep -q '^E' "$T/log" && fail "writer saw an error: $(grep '^E' "$T/log")"
assert_eq "$(grep -c '^A' "$T/log")" 400 "acknowledged writes logged"
"$ORACLE" check "$T/r0.img" "$T/log" >"$T/out" || fail "clean run judged bad: $(cat "$T/out")"

damaged() {   # damaged KIND: a copy of the image with one block of KIND
    cp "$T/r0.img" "$T/bad.img"
    "$PYTHON" - "$T/bad.img" "$1" "$ORACLE" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("oracle", sys.argv[3])
o = importlib.util.module_from_spec(spec); spec.loader.exec_module(o)
img, kind, bs = sys.argv[1], sys.argv[2], 4096
with open(img, "r+b") as f:
    f.seek(5 * bs); b, v = o.parse_block(f.read(bs))
    data = {"reverted": o.block_bytes(5, v - 1, bs) if v > 1 else bytes(bs),
            "torn": o.block_bytes(5, v, bs)[:2048] + o.block_bytes(5, v + 7, bs)[2048:],
            "misplaced": o.block_bytes(6, 1, bs),
            "unissued": o.block_bytes(5, v + 1000, bs)}[kind]
    f.seek(5 * bs); f.write(data)
PY
}
for kind in reverted torn misplaced unissued; do
    damaged "$kind"
    want=$kind; [[ $kind == reverted ]] && want=lost
    if "$ORACLE" check "$T/bad.img" "$T/log" >"$T/out"; then
        fail "a $kind block was not found"
    fi
    grep -q "^block 5: $want" "$T/out" || fail "$kind: wrong verdict: $(cat "$T/out")"
done

# Block-device mode on a plain file of the test's file system.  O_DIRECT is
# what makes an acknowledgement mean "on the device"; without it the mode
# cannot be exercised here, which is said, not passed over.
truncate -s 16M "$T/dev.img"
if "$PYTHON" -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT))' \
        "$T/dev.img" 2>"$T/odirect.err"; then
    "$ORACLE" write "$T/dev.img" "$T/dlog" --blocks 64 --depth 8 --max-writes 400 \
        --flush-every 50 || fail "oracle writer (block-device mode) failed"
    grep -q '^E' "$T/dlog" && fail "block-device writer saw an error: $(grep '^E' "$T/dlog")"
    assert_eq "$(grep -c '^A' "$T/dlog")" 400 "acknowledged writes logged (block-device mode)"
    assert_eq "$(grep -c '^I' "$T/dlog")" 400 "issued writes logged (block-device mode)"
    (($(grep -c '^F' "$T/dlog") >= 1)) || fail "no acknowledged flush in block-device mode"
    "$ORACLE" check "$T/dev.img" "$T/dlog" >"$T/out" ||
        fail "clean block-device run judged bad: $(cat "$T/out")"
    # A block written behind the writer's back is found.
    dd if=/dev/zero of="$T/dev.img" bs=4096 seek=5 count=1 conv=notrunc status=none
    if "$ORACLE" check "$T/dev.img" "$T/dlog" >"$T/out"; then
        fail "a zeroed block of the block-device run was not found"
    fi
    grep -q '^block 5: lost' "$T/out" || fail "block-device mode: wrong verdict: $(cat "$T/out")"
else
    echo "NOT RUN: block-device mode: O_DIRECT is not supported on $T" \
         "($(cat "$T/odirect.err")); only the VM crash loop exercises it"
fi
