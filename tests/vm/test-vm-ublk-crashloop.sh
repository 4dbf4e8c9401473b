#!/usr/bin/env bash
# The crash loop through the kernel's ublk device: two nodes (protocol
# sync, frontend = ublk), the oracle (tests/oracle/oracle.py, block-device
# mode: O_DIRECT, 8 writes in flight, an fdatasync every 32) writing
# through the primary's /dev/ublkbN, and CRASH_POINTS (default 8) kill -9
# points at a random moment, each kind once in every four points in a
# random order:
#  restart   kill -9 of the primary's mirrord: the device holds the I/O;
#            mirrord starts again and re-attaches it once the peer
#            confirms (mirrord(8) "ublk device"); the writer goes on.
#  secondary kill -9 of the secondary's mirrord; the primary goes on
#            alone; the secondary starts again and resyncs as target.
#  failover  kill -9 of the primary's mirrord; the secondary is promoted
#            (judged at once: every acknowledged write is on it); the old
#            primary's mirrord starts again: its held writes fail, its
#            device goes, it comes back as sync target.
#  both      kill -9 of both mirrords at once; both start again, in a
#            random order: the primary re-attaches its held device once
#            the restarted secondary confirms nobody was promoted, and the
#            writer goes on without an error.
# After each point, as an operator would, the nodes are brought back and
# in sync; then judged: no acknowledged write lost on either node, the
# writer saw no error except the held writes of a failover, and the
# backing images are equal (cmp).
# SEED=N replays the random choices (timing still varies):
#   SEED=N CRASH_POINTS=K tests/run --bin DIR test-vm-ublk-crashloop
# (more than 8 points: TEST_TIMEOUT_SCALE=$(((K + 7) / 8)) as well)
# timeout: 400
if [[ ${BM_VM:-0} != 1 ]]; then
    source "$(dirname "$0")/lib.sh"
    SEED=${SEED:-$((RANDOM * 32768 + RANDOM))}
    echo "SEED=$SEED (replay: SEED=$SEED tests/run --bin DIR test-vm-ublk-crashloop)"
    # 35 s a point (they take 8-15 s alone): more points need
    # TEST_TIMEOUT_SCALE too, as in make soak.
    points=${CRASH_POINTS:-8}
    VM_TIMEOUT=$((60 + 35 * points)) vm_run "$0" "$SEED" "$points"
    exit
fi

source "$BM_SRC/tests/integration/functions.sh"
source "$BM_SRC/tests/integration/repl.sh"
source "$BM_SRC/tests/vm/ublk.sh"
SEED=$1 POINTS=$2
RANDOM=$((SEED % 32768))
ORACLE=$BM_SRC/tests/oracle/oracle.py
bm_setup
ublk_check_kernel
ublk_keep_logs
bm_pair 64M protocol=sync frontend=ublk export-listen=
bm_pair_initial_sync

P=a                             # the primary: a or b
other() { [[ $1 == a ]] && echo b || echo a; }
ctl() { local n=$1; shift; "ctl$n" "$@"; }
conf_of() { [[ $1 == a ]] && echo "$CA" || echo "$CB"; }
start() { if [[ $1 == a ]]; then bm_start "$CA" alpha; PA=$BM_PID; else bm_start "$CB" beta; PB=$BM_PID; fi; }
kill9() { if [[ $1 == a ]]; then bm_kill9 "$PA"; else bm_kill9 "$PB"; fi; }
log_of() { [[ $1 == a ]] && echo "$T/ra-alpha.log" || echo "$T/rb-beta.log"; }
acks() { grep -c '^A' "$1" 2>/dev/null || true; }
# progress LOG N SECS: N more writes acknowledged in LOG within SECS.
progress() {
    local base
    base=$(acks "$1")
    wait_for "$3" sh -c "[ \$(grep -c '^A' '$1') -ge $((base + $2)) ]"
}
is_primary() { "$MIRRORCTL" -c "$(conf_of "$1")" status --json | grep -q '"role":"primary"'; }
gone() { ! bm_alive "$1"; }
not_connected() { [[ $(field "$(conf_of "$1")" connection) != connected ]]; }

points=0 acked=0 lost=0 diverged=0
judge() {   # judge POINT NODE LOG: no acknowledged write of LOG lost on NODE's disk
    local out n
    out=$("$ORACLE" check "$T/r$2.img" "$3") && n=0 ||
        n=$(sed -n 's/.*; lost \([0-9]*\),.*/\1/p' <<<"${out##*$'\n'}")
    lost=$((lost + ${n:-0}))
    [[ $out == *"lost 0, torn 0, misplaced 0, unissued 0" ]] ||
        fail "point $1: node $2: $(tail -5 <<<"$out")"
}
settle() {   # settle POINT LOG: in sync, both disks hold every acknowledged write, equal
    local n
    ctl "$P" wait-sync --timeout 120 || fail "point $1: not in sync"
    assert_eq "$(field "$(conf_of "$(other "$P")")" disk)" uptodate "point $1: the secondary's disk"
    n=$(acks "$2")
    ((n > 0)) || fail "point $1: no acknowledged write logged"
    acked=$((acked + n))
    judge "$1" "$P" "$2"
    judge "$1" "$(other "$P")" "$2"
    if ! cmp -s -n "$SIZE" "$T/ra.img" "$T/rb.img"; then
        diverged=$((diverged + 1))
        fail "point $1: the disks differ once in sync: $(cmp -n "$SIZE" "$T/ra.img" "$T/rb.img")"
    fi
}
writer_done() {   # writer_done POINT PID LOG: ended, with no error logged
    wait "$2" || fail "point $1: the oracle writer failed"
    ! grep -q '^E' "$3" || fail "point $1: the writer saw an error: $(grep '^E' "$3")"
}

crash_point() {   # crash_point K KIND
    local k=$1 kind=$2 S dev w log=$T/olog.$1 n r i
    S=$(other "$P")
    dev=$(field "$(conf_of "$P")" device)
    [[ -b $dev ]] || fail "point $k: no device on the primary: '$dev'"
    echo "point $k: $kind (primary $P, $dev)"
    rm -f "$T/ostop"
    "$ORACLE" write "$dev" "$log" --first $((k % 60 * 256)) --blocks 256 \
        --depth 8 --flush-every 32 --seed "$RANDOM" --stop "$T/ostop" &
    w=$!
    bm_kill_at_exit "$w"
    wait_for 60 sh -c "[ \$(grep -c '^A' '$log' 2>/dev/null || echo 0) -ge 20 ]"
    sleep "0.$((RANDOM % 8))"
    case $kind in
    restart)
        kill9 "$P"
        n=$(acks "$log")
        r=$(grep -c "device re-attached after a restart" "$(log_of "$P")" || true)
        start "$P"
        wait_for 60 is_primary "$P" || fail "point $k: the primary did not resume"
        assert_eq "$(grep -c "device re-attached after a restart" "$(log_of "$P")" || true)" $((r + 1)) \
            "point $k: re-attached lines of the restarted primary"
        assert_eq "$(field "$(conf_of "$P")" device)" "$dev" "point $k: the device after the restart"
        progress "$log" 20 60     # the held writes went through, new ones too
        touch "$T/ostop"
        writer_done "$k" "$w" "$log"
        echo "point $k: $n writes acknowledged before the kill, $(acks "$log") in all" ;;
    secondary)
        kill9 "$S"
        progress "$log" 20 60     # the primary goes on alone
        start "$S"
        ctl "$S" wait-connect --timeout 60 || fail "point $k: the secondary did not reconnect"
        progress "$log" 10 60
        touch "$T/ostop"
        writer_done "$k" "$w" "$log" ;;
    failover)
        kill9 "$P"
        wait_for 30 not_connected "$S"
        ctl "$S" promote || fail "point $k: the survivor refused promote"
        n=$(acks "$log")
        judge "$k" "$S" "$log"          # before the old primary is back
        r=$(grep -c "device re-attached after a restart" "$(log_of "$P")" || true)
        start "$P"
        # Nobody may resume on the stale copy: the held writes fail.
        for ((i = 0; i < 600 && $(acks "$log") == n; i++)); do
            gone "$w" && break
            sleep 0.1
        done
        (($(acks "$log") == n)) || fail "point $k: $(($(acks "$log") - n)) writes" \
            "acknowledged on the old primary's stale copy after the failover"
        gone "$w" || fail "point $k: the old primary's held writes still wait after 60 s"
        wait "$w" || fail "point $k: the oracle writer failed"
        grep -q '^E' "$log" || fail "point $k: the held writes of the old primary did not fail"
        assert_eq "$(acks "$log")" "$n" "point $k: writes acknowledged after the kill"
        wait_for 30 sh -c "[ ! -e $dev ]"
        ctl "$S" wait-connect --timeout 60 || fail "point $k: the old primary did not reconnect"
        ctl "$S" wait-sync --timeout 120 || fail "point $k: the old primary did not resync"
        assert_eq "$(field "$(conf_of "$P")" role)" secondary "point $k: the old primary's role"
        grep -a 'peer: generations:' "$(log_of "$P")" | tail -1 | grep -q 'target' ||
            fail "point $k: the old primary was not the sync target"
        assert_eq "$(grep -c "device re-attached after a restart" "$(log_of "$P")" || true)" "$r" \
            "point $k: re-attached lines of the old primary (none at this start)"
        echo "point $k: $n writes acknowledged before the kill; the held writes failed"
        P=$S ;;
    both)
        kill9 "$P"; kill9 "$S"
        n=$(acks "$log")
        r=$(grep -c "device re-attached after a restart" "$(log_of "$P")" || true)
        if ((RANDOM % 2)); then
            echo "point $k: the secondary starts first"; start "$S"; start "$P"
        else
            echo "point $k: the primary starts first"; start "$P"; sleep 1; start "$S"
        fi
        wait_for 90 is_primary "$P" || fail "point $k: the primary did not resume after both restarted"
        assert_eq "$(grep -c "device re-attached after a restart" "$(log_of "$P")" || true)" $((r + 1)) \
            "point $k: re-attached lines of the restarted primary"
        assert_eq "$(field "$(conf_of "$S")" role)" secondary "point $k: the restarted secondary's role"
        progress "$log" 20 60
        touch "$T/ostop"
        writer_done "$k" "$w" "$log"
        echo "point $k: $n writes acknowledged before both were killed, $(acks "$log") in all" ;;
    esac
    settle "$k" "$log"
    points=$((points + 1))
}

echo "SEED=$SEED CRASH_POINTS=$POINTS"
kinds=(restart secondary failover both)
for ((k = 0; k < POINTS; k++)); do
    if ((k % 4 == 0)); then   # each kind once in every four points
        for ((i = 3; i > 0; i--)); do
            j=$((RANDOM % (i + 1)))
            t=${kinds[i]}; kinds[i]=${kinds[j]}; kinds[j]=$t
        done
    fi
    crash_point "$k" "${kinds[k % 4]}"
done
grep -q "split brain" "$T/ra-alpha.log" "$T/rb-beta.log" && fail "a split brain was reported"
echo "crash points $points, acknowledged writes checked $acked, lost $lost, divergences $diverged"
((points == POINTS)) || fail "only $points of $POINTS crash points ran"
