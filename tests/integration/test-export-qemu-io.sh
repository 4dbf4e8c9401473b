#!/usr/bin/env bash
# qemu-io against the export: aligned and unaligned writes, a write across a
# 4 MiB boundary, overlapping writes (the last one wins), writes larger than
# max-io-size, write -z (with and without unmap), discard and FUA writes.
# Each byte is checked twice: read back with "read -P" over a new
# connection, and in the backing file after a clean stop, against a model
# of the same writes; the metadata has all of them out of sync.
# timeout: 90
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
requires qemu-io
bm_setup

bm_single r0 64M
conf=$BM_CONF
"$MIRRORCTL" -c "$conf" promote --force
uri=$(bm_nbd_uri r0)
size=$(bm_status_field "$conf" .size_bytes)

K=1024 M=$((1024 * 1024))
# KIND PATTERN OFFSET LENGTH, applied in order.  KIND: P write -P, F write
# -f -P (FUA), Z write -z, U write -z -u (may unmap), D discard.
ops=(
    "P 0x11 0 $((64 * K))"
    "P 0x22 3584 512"                            # 512 bytes, not 4 KiB aligned
    "P 0x23 $((M + 512)) 1536"                   # unaligned start and end
    "P 0x24 $((64 * K - 512)) 1024"              # across a 64 KiB boundary
    "P 0x33 $((4 * M - 64 * K)) $((128 * K))"    # across 4 MiB
    "P 0x34 $((4 * M - 512)) 1024"               # unaligned, across 4 MiB, over 0x33
    "P 0x44 $((8 * M)) $((64 * K))"
    "P 0x55 $((8 * M + 16 * K)) $((16 * K))"     # inside 0x44: last wins
    "P 0x56 $((8 * M + 60 * K)) $((8 * K))"      # overlaps the end of 0x44
    "P 0x57 $((8 * M + 17 * K + 512)) 512"       # inside 0x55
    "P 0x66 $((12 * M)) $((64 * K))"
    "Z 0 $((12 * M + 4 * K)) $((8 * K))"
    "U 0 $((12 * M + 32 * K)) $((16 * K))"
    "Z 0 $((12 * M + 56 * K + 512)) 1024"        # unaligned zeroes
    "P 0x77 $((16 * M)) $((64 * K))"
    "D 0 $((16 * M + 8 * K)) $((16 * K))"
    "D 0 $((16 * M + 60 * K)) $((8 * K))"        # past the end of 0x77
    "F 0x88 $((20 * M)) $((4 * K))"
    "F 0x89 $((20 * M + 4 * K + 512)) 512"
    "P 0x99 $((24 * M)) $M"                      # max-io-size
    "P 0x9a $((28 * M + 512)) $((2 * M + 1024))" # more than one request
    "P 0xab $((size - 4 * K)) $((4 * K))"        # the last block of the export
)

cmds=()
for op in "${ops[@]}"; do
    read -r kind pat off len <<<"$op"
    case $kind in
    P) cmds+=(-c "write -P $pat $off $len") ;;
    F) cmds+=(-c "write -f -P $pat $off $len") ;;
    Z) cmds+=(-c "write -z $off $len") ;;
    U) cmds+=(-c "write -z -u $off $len") ;;
    D) cmds+=(-c "discard $off $len") ;;
    esac
done
qemu-io -f raw "$uri" "${cmds[@]}" >"$T/write.out" ||
    { cat "$T/write.out" >&2; fail "qemu-io writes"; }
# The block layer must not have split a zero or discard into nothing.
assert_eq "$(grep -Ec '^(wrote|discard) ' "$T/write.out")" "${#ops[@]}" "qemu-io operations done"

# The model: the data area after the same operations, and one "read -P"
# per run of equal bytes (runs only change where an operation starts or
# ends) over the whole data area.
printf '%s\n' "${ops[@]}" | "$PYTHON" -c '
import sys
size, model, cmds = int(sys.argv[1]), sys.argv[2], sys.argv[3]
data = bytearray(size)
edges = {0, size}
for line in sys.stdin:
    kind, pat, off, n = line.split()
    off, n = int(off), int(n)
    data[off:off + n] = bytes([int(pat, 0) if kind in "PF" else 0]) * n
    edges |= {off, off + n}
with open(model, "wb") as f:
    f.write(data)
edges = sorted(edges)
runs = []
for a, b in zip(edges, edges[1:]):
    if runs and runs[-1][0] == data[a]:
        runs[-1][2] = b
    else:
        runs.append([data[a], a, b])
with open(cmds, "w") as f:
    for v, a, b in runs:
        f.write("read -P 0x%02x %d %d\n" % (v, a, b - a))' "$size" "$T/model.img" "$T/reads.txt"

reads=()
while read -r line; do reads+=(-c "$line"); done <"$T/reads.txt"
nreads=$(wc -l <"$T/reads.txt")
((nreads > 30)) || fail "only $nreads runs in the model"
qemu-io -f raw "$uri" "${reads[@]}" >"$T/read.out" ||
    { grep -B1 -A1 'Pattern verification failed' "$T/read.out" >&2; fail "qemu-io read -P"; }
assert_eq "$(grep -c '^read ' "$T/read.out")" "$nreads" "qemu-io reads done"

# The same bytes reached the backing file (data area only: the metadata
# follows it).
bm_stop "$BM_PID"
if ! cmp -n "$size" "$T/model.img" "$T/r0.img" >"$T/cmp.out"; then
    cat "$T/cmp.out" >&2
    cmp -l -n "$size" "$T/model.img" "$T/r0.img" | head -n 5 >&2 || true
    fail "backing file differs from the model"
fi

# The metadata marks every granule the operations touched as out of sync
# (a standalone primary has no peer to send them to).
"$MIRRORCTL" -c "$conf" show-md --json >"$T/md.json"
printf '%s\n' "${ops[@]}" | "$PYTHON" -c '
import json, sys
md = json.load(open(sys.argv[1]))
g = md["granularity"]
oos = set()
for off, n in md["out_of_sync"]:
    oos.update(range(off // g, (off + n + g - 1) // g))
for line in sys.stdin:
    kind, pat, off, n = line.split()
    off, n = int(off), int(n)
    miss = set(range(off // g, (off + n - 1) // g + 1)) - oos
    if miss:
        sys.exit("%s at %d+%d: granules %s not out of sync" % (kind, off, n, sorted(miss)[:4]))
' "$T/md.json" || fail "show-md out_of_sync"
