#!/usr/bin/env bash
# A bad network under replication, in a VM (the host kernel has no netem):
# two nodes in their own network namespaces over a veth pair, the oracle
# writing through the primary's export, and netem on both ends of the
# link.  Protocol sync:
#   delay with jitter and reordering: the link stays up (a live peer is
#     heard from several times per ping-timeout), writes go on, and every
#     acknowledged write is already on the peer's disk;
#   packet loss: writes go on (TCP retransmits; a reconnection is allowed);
#   all packets lost for longer than ping-timeout, then the link flapping:
#     the primary degrades (goes on alone, marks its writes out of sync);
# then protocol async, delay, reordering and loss, then a cut.  After each
# phase netem goes, the nodes reconnect and resync, and both disks are
# equal and hold every acknowledged write (tests/oracle/oracle.py check).
# tests/integration/test-net-partition.sh does the cuts with nftables on
# the host, and freezing under fencing.
# timeout: 300
if [[ ${BM_VM:-0} != 1 ]]; then
    source "$(dirname "$0")/lib.sh"
    VM_TIMEOUT=270 vm_run "$0"
    exit
fi

source "$BM_SRC/tests/integration/functions.sh"
source "$BM_SRC/tests/integration/repl.sh"
requires "$PYTHON" -c 'import nbd'
requires tc
bm_setup
ORACLE=$BM_SRC/tests/oracle/oracle.py
bm_netns_pair

# netem ARGS...: both ends' egress (so both directions) get "netem ARGS".
netem() {
    tc -n "$NS-alpha" qdisc replace dev "$NS-a" root netem "$@" || fail "tc netem $* (alpha)"
    tc -n "$NS-beta" qdisc replace dev "$NS-b" root netem "$@" || fail "tc netem $* (beta)"
}
heal() {
    tc -n "$NS-alpha" qdisc del dev "$NS-a" root 2>/dev/null || true
    tc -n "$NS-beta" qdisc del dev "$NS-b" root 2>/dev/null || true
}
count() { local n; n=$(grep -c -- "$1" "$2" 2>/dev/null) || true; echo "${n:-0}"; }
acks() { count '^A' "$1"; }
# Handshakes alpha has done: one per (re)connection.
sessions() { count 'peer: generations' "$T/ra-alpha.log"; }
conn() { field "$CA" connection; }
# more_acks LOG N SECS: N more acknowledgements within SECS.
more_acks() {
    local want=$(($(acks "$1") + $2))
    wait_for "$3" acks_at_least "$1" "$want"
}
acks_at_least() { (($(acks "$1") >= $2)); }
not_connected() { [[ $(conn) != connected ]]; }

stop_writer() {
    [[ -n $w ]] || return 0
    touch "$T/ostop"; wait "$w" || fail "oracle writer failed"
    w=
}

k=0
fault_case() {   # fault_case NAME ACTION...: oracle writes while ACTION runs
    local name=$1 t0=$EPOCHREALTIME; shift
    log=$T/olog.$k
    rm -f "$T/ostop"
    "$ORACLE" write "$UA" "$log" --first $((k * 512)) --blocks 512 --depth 8 \
        --flush-every 16 --seed $((k + 1)) --stop "$T/ostop" &
    w=$!
    bm_kill_at_exit "$w"
    more_acks "$log" 30 30
    s0=$(sessions)
    "$@"
    stop_writer
    grep -q '^E' "$log" && fail "$name: the writer saw an error: $(grep '^E' "$log")"
    heal
    ctla wait-connect --timeout 30 || fail "$name: no reconnection after the heal"
    ctla wait-sync --timeout 60 || fail "$name: not in sync after the heal"
    assert_eq "$(field "$CA" out_of_sync_bytes)" 0 "$name: alpha's out-of-sync bytes after the resync"
    "$ORACLE" check "$T/ra.img" "$log" >"$T/ocheck" || fail "$name: $(tail -3 "$T/ocheck")"
    "$ORACLE" check "$T/rb.img" "$log" >"$T/ocheck" || fail "$name (beta): $(tail -3 "$T/ocheck")"
    cmp -s -n "$SIZE" "$T/ra.img" "$T/rb.img" || fail "$name: the disks differ after the heal"
    echo "$name: $(acks "$log") acknowledged writes, $(($(sessions) - s0)) reconnection(s)," \
        "in sync, equal ($(bm_elapsed "$t0") s)"
    k=$((k + 1))
}

# Writes go on over a slow, reordering link that never drops: no
# reconnection, nothing out of sync, and (protocol sync) every write
# acknowledged so far is on beta's disk already.
slow_link() {
    netem delay 20ms 10ms reorder 25% 50%
    more_acks "$log" 100 60
    stop_writer
    assert_eq "$(conn)" connected "connection over the slow link"
    assert_eq "$(sessions)" "$s0" "handshakes over the slow link (a reconnection?)"
    assert_eq "$(field "$CA" out_of_sync_bytes)" 0 "out-of-sync bytes over the slow link"
    [[ $(field "$CA" protocol) != sync ]] ||
        "$ORACLE" check "$T/rb.img" "$log" >"$T/ocheck" ||
        fail "beta lacks an acknowledged write (protocol sync): $(tail -3 "$T/ocheck")"
}
lossy_link() {
    netem delay 5ms loss 10%
    more_acks "$log" 100 60
}
# The peer is silent for longer than ping-timeout: the primary goes on
# alone, its writes marked out of sync; then the link flaps.
degraded() {
    local i
    netem loss 100%
    wait_for 20 not_connected
    more_acks "$log" 20 20
    (($(field "$CA" out_of_sync_bytes) > 0)) || fail "writes while degraded are not marked out of sync"
    assert_eq "$(field "$CA" role)" primary "alpha's role while degraded"
    for ((i = 0; i < 4; i++)); do
        netem loss 0%; sleep "0.$((3 + RANDOM % 7))"
        netem loss 100%; sleep "0.$((3 + RANDOM % 7))"
    done
    more_acks "$log" 10 20
}

bm_pair 32M ping-timeout=3 alpha.address=10.213.0.1:7789 beta.address=10.213.0.2:7789
bm_pair_initial_sync
fault_case "sync, delay 20ms 10ms, reorder 25% 50%" slow_link
fault_case "sync, loss 10%" lossy_link
fault_case "sync, all lost beyond ping-timeout, flapping" degraded

bm_stop "$PA"; bm_stop "$PB"
sed -i 's/^protocol = .*/protocol = async/' "$CA" "$CB"
bm_start "$CA" alpha; PA=$BM_PID
bm_start "$CB" beta; PB=$BM_PID
ctla wait-connect --timeout 30 || fail "no connection with protocol async"
ctla promote
ctla wait-sync --timeout 30 || fail "not in sync with protocol async"
async_bad_link() {
    netem delay 20ms 10ms reorder 25% 50% loss 5%
    more_acks "$log" 100 60
    degraded
}
fault_case "async, delay, reorder, loss 5%, then cut" async_bad_link
echo "netem: all checks passed"
