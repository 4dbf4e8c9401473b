#!/usr/bin/env bash
# The crash loop: CRASH_POINTS (default 54) kill -9 points, a third each in
# sync, semi-sync and async (sync and async with al-extents = 7), of the
# primary, the secondary or both at a random moment while the oracle
# (tests/oracle/oracle.py) writes through the primary, with planned
# switchovers in between, and crashes in the middle of a resync (the
# target's disk slowed by the disk/write/slow failpoint so that the resync
# lasts: the target, the source or both killed in it).  Each is recovered as mirrord(8) tells an
# operator (promote the survivor; restart the crashed node, which comes back
# as sync target or, a crashed primary with its activity extents, as
# source), then judged: no acknowledged write lost (async: within
# max-async-lag when the primary dies), no split brain, the documented
# sync direction, and the disks equal (cmp) once in sync.
# SEED=N replays a run exactly (the random choices; timing still varies).
# timeout: 900
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
SEED=${SEED:-$((RANDOM * 32768 + RANDOM))}
echo "SEED=$SEED (replay: SEED=$SEED tests/run --bin DIR test-crashloop)"
RANDOM=$((SEED % 32768))
POINTS=${CRASH_POINTS:-54}
ORACLE=$BM_SRC/tests/oracle/oracle.py
LAG=262144                      # async max-async-lag: the loss bound
bm_setup
bm_faults   # a resync target's slow disk is switched off again (resync_crash)
bm_pair 64M protocol=sync al-extents=7 max-async-lag=$LAG
bm_pair_initial_sync

P=a                             # the primary: a or b
pid() { [ "$1" = a ] && echo "$PA" || echo "$PB"; }
other() { [ "$1" = a ] && echo b || echo a; }
ctl() { local n=$1; shift; "ctl$n" "$@"; }
uri() { [ "$1" = a ] && echo "$UA" || echo "$UB"; }
start() { if [ "$1" = a ]; then bm_start "$CA" alpha; PA=$BM_PID; else bm_start "$CB" beta; PB=$BM_PID; fi; }
kill9() { bm_kill9 "$(pid "$1")"; }
not_connected() { [ "$(field "$(conf_of "$1")" connection)" != connected ]; }
conf_of() { [ "$1" = a ] && echo "$CA" || echo "$CB"; }

points=0 acked=0 lost=0 diverged=0 splits=0 rs_ms=0 missed=0 inres=0
settle() {   # settle POINT: in sync, equal, no split brain
    local t0=${EPOCHREALTIME/./}
    ctl "$P" wait-sync --timeout 60 || fail "point $1: not in sync"
    rs_ms=$((rs_ms + (${EPOCHREALTIME/./} - t0) / 1000))
    for n in a b; do
        [ "$(field "$(conf_of $n)" connection)" = splitbrain ] && splits=$((splits + 1))
    done
    if ! cmp -s -n "$SIZE" "$T/ra.img" "$T/rb.img"; then
        diverged=$((diverged + 1))
        fail "point $1: the disks differ after the resync"
    fi
}
judge() {   # judge POINT IMAGE LOG BOUND: acknowledged writes on IMAGE
    local out n
    n=$(grep -c '^A' "$3") || fail "point $1: no acknowledged write logged"
    acked=$((acked + n))
    n=
    out=$("$ORACLE" check "$2" "$3") && n=0 ||
        n=$(sed -n 's/.*; lost \([0-9]*\),.*/\1/p' <<<"${out##*$'\n'}")
    grep -q 'torn [1-9]\|misplaced [1-9]\|unissued [1-9]' <<<"$out" &&
        fail "point $1: $(tail -3 <<<"$out")"
    lost=$((lost + ${n:-0}))
    ((${n:-0} <= $4)) || fail "point $1: $n acknowledged writes lost (bound $4): $(tail -3 <<<"$out")"
}

in_resync() { [ "$(field "$(conf_of "$1")" replication)" = synctarget ]; }
# resync_crash K S LOG WRITER: the secondary S dies, the primary writes
# alone, S comes back with its disk slowed and is killed in its resync,
# or its source is, or both.  An inconsistent target is never promotable;
# the source keeps every acknowledged write.
resync_crash() {
    local k=$1 S=$2 log=$3 w=$4 victim=$((RANDOM % 3)) n i
    kill9 "$S"
    n=$(grep -c '^A' "$log")
    wait_for 30 sh -c "[ \$(grep -c '^A' '$log') -ge $((n + 40)) ]"
    BM_FAULTS="enable name=disk/write/slow" start "$S"
    for ((i = 0; i < 300; i++)); do   # 30 s
        in_resync "$S" && break
        [ "$(field "$(conf_of "$S")" replication)" = established ] && i=300
        sleep 0.1
    done
    if ((i >= 300)); then
        echo "point $k: the resync ended before it was seen; no kill in it"
        missed=$((missed + 1))
        bm_fault "$(pid "$S")" "disable name=disk/write/slow"
        touch "$T/ostop"; wait "$w" || true
        judge "$k" "$T/r$P.img" "$log" 0
        return 0
    fi
    sleep "0.0$((RANDOM % 10))"
    echo "point $k: in the resync, kill -9 of $(echo target source both | cut -d' ' -f$((victim + 1)))"
    case $victim in
    0)  kill9 "$S"; touch "$T/ostop"; wait "$w" || true
        judge "$k" "$T/r$P.img" "$log" 0
        start "$S" ;;
    1)  kill9 "$P"; wait "$w" || true
        wait_for 20 not_connected "$S"
        # Read after the kill: a resync cannot end without its source.
        if [ "$(field "$(conf_of "$S")" disk)" = uptodate ]; then
            echo "point $k: the resync had ended before the kill"
            missed=$((missed + 1))
        else
            ! ctl "$S" promote 2>/dev/null ||
                fail "point $k: a sync target cut off in its resync was promoted"
        fi
        # S goes on as the target of the restarted source: its own pace.
        bm_fault "$(pid "$S")" "disable name=disk/write/slow"
        judge "$k" "$T/r$P.img" "$log" 0
        start "$P"
        ctl "$P" wait-connect --timeout 30 || fail "point $k: the source did not reconnect"
        ctl "$P" promote || fail "point $k: the restarted source refused promote" ;;
    2)  kill9 "$P"; kill9 "$S"; wait "$w" || true
        judge "$k" "$T/r$P.img" "$log" 0
        start "$P"; start "$S"
        ctl "$P" wait-connect --timeout 30 || fail "point $k: no connection after both crashed in a resync"
        ctl "$P" promote || fail "point $k: the source refused promote after both crashed" ;;
    esac
}

crash_point() {   # crash_point K PROTO
    local k=$1 proto=$2 kind=$((RANDOM % 4)) S log=$T/olog.$1 bound=0
    S=$(other "$P")
    local what=("kill -9 of the primary" "kill -9 of the secondary" "kill -9 of both"
                "a crash in a resync")
    echo "point $k: $proto, ${what[kind]} (primary $P)"
    rm -f "$T/ostop"
    "$ORACLE" write "$(uri "$P")" "$log" --first $((k % 60 * 256)) --blocks 256 \
        --depth 8 --flush-every 32 --seed "$RANDOM" --stop "$T/ostop" &
    local w=$!
    bm_kill_at_exit "$w"
    wait_for 30 sh -c "[ \$(grep -c '^A' '$log' 2>/dev/null || echo 0) -ge 20 ]"
    sleep "0.$((RANDOM % 8))"
    case $kind in
    0)  # the primary dies: promote the survivor, the old primary rejoins
        kill9 "$P"; wait "$w" || true
        wait_for 20 not_connected "$S"
        ctl "$S" promote || fail "point $k: the survivor refused promote"
        [ "$proto" = async ] && bound=$((LAG / 4096 + 8))
        judge "$k" "$T/r$S.img" "$log" "$bound"
        start "$P"
        ctl "$S" wait-sync --timeout 60 || fail "point $k: the old primary did not resync"
        grep -a 'peer: generations:' "$T/r$P-"*.log | tail -1 | grep -q 'target' ||
            fail "point $k: the old primary was not the sync target"
        P=$S ;;
    1)  # the secondary dies and comes back
        kill9 "$S"; sleep 0.3; touch "$T/ostop"; wait "$w" || true
        judge "$k" "$T/r$P.img" "$log" 0
        start "$S" ;;
    2)  # both die; the crashed primary comes back as the source
        kill9 "$P"; kill9 "$S"; wait "$w" || true
        start "$P"; start "$S"
        ctl "$P" wait-connect --timeout 30 || fail "point $k: no connection after both crashed"
        ctl "$P" promote || fail "point $k: the crashed primary refused promote"
        judge "$k" "$T/r$P.img" "$log" 0 ;;
    3)  resync_crash "$k" "$S" "$log" "$w"; inres=$((inres + 1)) ;;
    esac
    settle "$k"
    points=$((points + 1))
    if ((RANDOM % 4 == 0)); then   # a planned switchover
        ctl "$P" demote && ctl "$(other "$P")" promote || fail "point $k: switchover refused"
        P=$(other "$P")
    fi
}

per=$(((POINTS + 2) / 3)) k=0
for proto in sync semi-sync async; do
    al=7; [ "$proto" = semi-sync ] && al=257
    ctl "$P" demote
    bm_stop "$PA"; bm_stop "$PB"
    sed -i "s/^protocol = .*/protocol = $proto/; s/^al-extents = .*/al-extents = $al/" "$CA" "$CB"
    start a; start b
    ctla wait-connect --timeout 30 || fail "$proto: no connection"
    ctl "$P" promote
    for ((i = 0; i < per && k < POINTS; i++, k++)); do
        crash_point "$k" "$proto"
    done
done
echo "crash points $points, acknowledged writes checked $acked, lost $lost (async only)," \
     "divergences $diverged, split brains $splits, resync+wait-sync $rs_ms ms in all," \
     "in-resync points $inres ($missed ended before the kill)"
((splits == 0)) || fail "$splits false split brains"
# The kind must test what it claims: most of its kills land in a resync.
((inres < 4 || missed * 2 < inres)) ||
    fail "$missed of $inres crashes meant for a resync came after it ended"
((points == POINTS)) || fail "only $points of $POINTS crash points ran"
