#!/usr/bin/env bash
# Disk faults at random points: ROUNDS (default 8) rounds, each switching
# one failpoint (EIO, short or slow; data or metadata; read or write) on
# for a random fraction of the calls, on the primary or the secondary, for
# a random moment while the oracle (tests/oracle/oracle.py) writes and a
# reader reads back a region written once, through the primary.  Then the
# round is healed as mirrord(8) tells an operator: a detached secondary is
# attached; a detached primary is demoted, its peer promoted, and then
# attached; the resync runs (sometimes with short or slow I/O of its own).
# Judged: no client write or read fails and no read returns wrong data
# (one disk at a time fails, the peer's serves), each detach went
# uptodate -> failed -> diskless -> inconsistent (attach) as documented,
# no acknowledged write is lost on either disk once both are up to date,
# and the disks are equal (cmp).
# SEED=N replays the choices (which failpoint, where, how often, when);
# which calls fail is libfiu's choice, and timing varies.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
SEED=${SEED:-$((RANDOM * 32768 + RANDOM))}
echo "SEED=$SEED (replay: SEED=$SEED tests/run --bin DIR test-disk-faults-random)"
RANDOM=$((SEED % 32768))
ROUNDS=${ROUNDS:-8}
ORACLE=$BM_SRC/tests/oracle/oracle.py
FAULTS=(disk/write/eio disk/read/eio meta/write/eio disk/write/short disk/read/short
        meta/write/short disk/write/slow disk/read/slow meta/write/slow)
RD_FIRST=$((24 << 20)) RD_LEN=$((2 << 20))   # the reader's region
# Each round's writer has blocks of its own, below the reader's region.
BLOCKS=$((RD_FIRST / 4096 / ROUNDS)); ((BLOCKS <= 512)) || BLOCKS=512
((BLOCKS >= 16)) || fail "ROUNDS=$ROUNDS: too many rounds for the disk"
bm_setup
bm_faults   # failpoints under fiu-ctrl
# Few, small activity extents: the metadata is written often.
bm_pair 32M al-extents=7 al-extent-size=64K
bm_pair_initial_sync
"$PYTHON" - "$UA" "$RD_FIRST" "$RD_LEN" <<'PY' || fail "writing the reader's region failed"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
off, n = int(sys.argv[2]), int(sys.argv[3])
data = bytes(i * 7 % 251 for i in range(n))
for o in range(0, n, 262144):
    h.pwrite(data[o:o + 262144], off + o)
h.flush()
PY

P=a
pid() { [ "$1" = a ] && echo "$PA" || echo "$PB"; }
other() { [ "$1" = a ] && echo b || echo a; }
ctl() { local n=$1; shift; "ctl$n" "$@"; }
uri() { [ "$1" = a ] && echo "$UA" || echo "$UB"; }
conf_of() { [ "$1" = a ] && echo "$CA" || echo "$CB"; }
log_of() { [ "$1" = a ] && echo "$T/ra-alpha.log" || echo "$T/rb-beta.log"; }
disk_of() { field "$(conf_of "$1")" disk; }
disk_is() { [ "$(disk_of "$1")" = "$2" ]; }
acks_at_least() { local n; n=$(grep -c '^A' "$1" 2>/dev/null); ((${n:-0} >= $2)); }

# reader URI STOP: reads random pieces of the region until STOP exists;
# exit 1 on a wrong byte or a failed read.
reader() {
    "$PYTHON" - "$1" "$RD_FIRST" "$RD_LEN" "$2" "$RANDOM" <<'PY'
import nbd, os, random, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
off, n, stop = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = random.Random(int(sys.argv[5]))
want = bytes(i * 7 % 251 for i in range(n))
reads = 0
while not os.path.exists(stop):
    o = rng.randrange(n // 4096) * 4096
    k = min(n - o, rng.choice((4096, 65536, 262144)))
    try:
        got = h.pread(k, off + o)
    except nbd.Error as e:
        sys.exit("reader: a read at %d+%d failed: %s" % (off + o, k, e))
    if got != want[o:o + k]:
        sys.exit("reader: the read at %d+%d came back wrong" % (off + o, k))
    reads += 1
print("reader: %d reads" % reads)
PY
}

detaches=0 attaches=0 switchovers=0
# heal: each detached disk is attached (a primary's after a switchover),
# then the resync runs, sometimes with a short or slow disk of its own.
heal() {
    local n fp
    for n in a b; do
        disk_is "$n" uptodate && continue
        wait_for 30 disk_is "$n" diskless
        detaches=$((detaches + 1))
        if [ "$n" = "$P" ]; then
            ctl "$P" demote || fail "a diskless primary refused demote"
            ctl "$(other "$P")" promote || fail "the up-to-date peer refused promote"
            P=$(other "$P") switchovers=$((switchovers + 1))
        fi
        ctl "$n" attach || fail "attach refused on $n"
        attaches=$((attaches + 1))
    done
    fp=${FAULTS[3 + RANDOM % 6]}
    n=$(echo a b | cut -d' ' -f$((RANDOM % 2 + 1)))
    if ((RANDOM % 2)); then
        echo "  resync with $fp on $n"
        bm_fault "$(pid "$n")" "enable_random name=$fp,probability=0.1"
    else
        fp=
    fi
    ctl "$P" wait-sync --timeout 60 || fail "no resync after the heal"
    [ -z "$fp" ] || bm_fault "$(pid "$n")" "disable name=$fp"
    wait_for 30 disk_is a uptodate
    wait_for 30 disk_is b uptodate
}

for ((k = 0; k < ROUNDS; k++)); do
    n=$(echo a b | cut -d' ' -f$((RANDOM % 2 + 1)))
    fp=${FAULTS[RANDOM % ${#FAULTS[@]}]}
    prob=0.0$((RANDOM % 5 + 1))
    echo "round $k: $fp on $n (primary $P), probability $prob"
    rm -f "$T/stop"
    "$ORACLE" write "$(uri "$P")" "$T/olog.$k" --first $((k * BLOCKS)) --blocks "$BLOCKS" \
        --depth 8 --flush-every 32 --seed "$RANDOM" --stop "$T/stop" &
    w=$!
    bm_kill_at_exit "$w"
    reader "$(uri "$P")" "$T/stop" >"$T/reader.$k" 2>&1 &
    r=$!
    bm_kill_at_exit "$r"
    wait_for 30 acks_at_least "$T/olog.$k" 20
    bm_fault "$(pid "$n")" "enable_random name=$fp,probability=$prob"
    sleep "0.$((RANDOM % 8 + 2))"
    bm_fault "$(pid "$n")" "disable name=$fp"
    touch "$T/stop"
    wait "$w" || fail "round $k: the oracle writer failed"
    wait "$r" || fail "round $k: $(cat "$T/reader.$k")"
    ! grep '^E' "$T/olog.$k" || fail "round $k: a client write failed"
    echo "  $(grep -c '^A' "$T/olog.$k") writes acknowledged, $(cat "$T/reader.$k")," \
         "disks $(disk_of a)/$(disk_of b)"
    heal
done

# Documented detach: uptodate -> failed -> diskless, then attach.
n=0
for node in a b; do
    l=$(log_of "$node")
    d=$(grep -c "detaching the disk" "$l" || true)
    f=$(grep -c "disk uptodate -> failed (disk I/O error)" "$l" || true)
    s=$(grep -c "disk failed -> diskless" "$l" || true)
    a=$(grep -c "disk diskless -> inconsistent (attach)" "$l" || true)
    ((d == f && f == s && s == a)) ||
        fail "$node: $d detaches logged, $f uptodate -> failed, $s failed -> diskless, $a attaches"
    n=$((n + d))
done
((n == detaches)) || fail "$n detaches logged, $detaches seen"
bm_stop "$PA"; bm_stop "$PB"
acked=0
for ((k = 0; k < ROUNDS; k++)); do
    acked=$((acked + $(grep -c '^A' "$T/olog.$k")))
    for img in "$T/ra.img" "$T/rb.img"; do
        out=$("$ORACLE" check "$img" "$T/olog.$k") ||
            fail "round $k: $(basename "$img"): $(tail -3 <<<"$out")"
    done
done
assert_disks_equal "the disks differ after the resync"
echo "rounds $ROUNDS, acknowledged writes checked $acked (on both disks), detaches $detaches," \
     "attaches $attaches, switchovers $switchovers"
