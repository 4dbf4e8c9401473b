#!/usr/bin/env bash
# Network faults between two nodes in their own network namespaces, joined
# by a veth pair, while the oracle writes through the primary: nftables
# drops the replication traffic both ways, one way only, and flaps the link.
# The primary goes on alone once ping-timeout declares the peer dead
# (degraded: writes are marked out of sync); after the heal the nodes
# reconnect, resync, and end in sync with equal disks and no acknowledged
# write lost.  Under fencing = resource-and-stonith the primary freezes
# instead: no write completes until handler-fence-peer succeeds.
# timeout: 300
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires "$PYTHON" -c 'import nbd'
requires nft
bm_setup
ORACLE=$BM_SRC/tests/oracle/oracle.py
bm_netns_pair
for n in alpha beta; do
    ip netns exec "$NS-$n" nft add table inet bm
    ip netns exec "$NS-$n" nft add chain inet bm in '{ type filter hook input priority 0; }'
    ip netns exec "$NS-$n" nft add chain inet bm out '{ type filter hook output priority 0; }'
done

drop() {   # drop NODE DIR: NODE drops replication traffic in DIR (in|out)
    ip netns exec "$NS-$1" nft add rule inet bm "$2" tcp dport 7789 drop
    ip netns exec "$NS-$1" nft add rule inet bm "$2" tcp sport 7789 drop
}
heal() {
    for n in alpha beta; do
        ip netns exec "$NS-$n" nft flush chain inet bm in
        ip netns exec "$NS-$n" nft flush chain inet bm out
    done
}
acks() { grep -c '^A' "$1" 2>/dev/null || echo 0; }

k=0
fault_case() {   # fault_case NAME ACTION...: oracle writes while ACTION runs
    local name=$1 log=$T/olog.$k w; shift
    rm -f "$T/ostop"
    "$ORACLE" write "$UA" "$log" --first $((k * 512)) --blocks 512 --depth 8 \
        --flush-every 16 --seed $((k + 1)) --stop "$T/ostop" &
    w=$!
    bm_kill_at_exit "$w"
    wait_for 20 sh -c "[ \$(grep -c '^A' '$log' 2>/dev/null) -ge 50 ]"
    "$@"
    heal
    sleep 1; touch "$T/ostop"; wait "$w" || fail "$name: oracle writer failed"
    grep -q '^E' "$log" && fail "$name: the writer saw an error: $(grep '^E' "$log")"
    ctla wait-connect --timeout 30 || fail "$name: no reconnection after the heal"
    ctla wait-sync --timeout 60 || fail "$name: not in sync after the heal"
    "$ORACLE" check "$T/ra.img" "$log" >"$T/ocheck" || fail "$name: $(tail -3 "$T/ocheck")"
    "$ORACLE" check "$T/rb.img" "$log" >"$T/ocheck" || fail "$name (beta): $(tail -3 "$T/ocheck")"
    cmp -s -n "$SIZE" "$T/ra.img" "$T/rb.img" || fail "$name: the disks differ after the heal"
    echo "$name: $(acks "$log") acknowledged writes, in sync, equal"
    k=$((k + 1))
}
degraded() {   # the primary goes on alone: acknowledgements continue
    wait_for 20 sh -c "[ \"\$($MIRRORCTL -c $CA status --json | grep -o '\"connection\":\"[a-z]*\"')\" != '\"connection\":\"connected\"' ]"
    local n=$(acks "$1"); sleep 1
    (($(acks "$1") > n)) || fail "the primary did not go on alone"
}
both_ways() { drop alpha in; drop beta in; degraded "$T/olog.$k"; }
one_way() { drop beta in; degraded "$T/olog.$k"; }
flap() {
    for ((i = 0; i < 8; i++)); do
        drop alpha in; drop beta in; sleep "0.$((3 + RANDOM % 5))"; heal; sleep "0.$((2 + RANDOM % 5))"
    done
}

bm_pair 64M alpha.address=10.213.0.1:7789 beta.address=10.213.0.2:7789
bm_pair_initial_sync
fault_case "partition both ways" both_ways
fault_case "partition one way (beta hears nothing)" one_way
fault_case "flapping link" flap

# Under fencing the primary freezes: no acknowledgement while the handler
# waits, every one after it succeeds.
bm_stop "$PA"; bm_stop "$PB"
cat >"$T/fence" <<HOOK
#!/bin/sh
touch "$T/fenced"
while [ ! -e "$T/go" ]; do sleep 0.1; done
HOOK
chmod +x "$T/fence"
for c in "$CA" "$CB"; do
    printf 'fencing = resource-and-stonith\nhandler-fence-peer = %s\n' "$T/fence" >>"$c.tmp"
    sed -i "/^\[resource\]/r $c.tmp" "$c"; rm "$c.tmp"
done
bm_start "$CA" alpha; PA=$BM_PID
bm_start "$CB" beta; PB=$BM_PID
ctla wait-connect --timeout 30 || fail "no connection with fencing"
ctla promote
ctla wait-sync --timeout 30 || fail "not in sync with fencing"
frozen() {
    drop alpha in; drop beta in
    wait_for 20 test -e "$T/fenced"
    local n=$(acks "$T/olog.$k"); sleep 1.5
    (($(acks "$T/olog.$k") == n)) || fail "a write was acknowledged while the peer was not fenced"
    touch "$T/go"
    wait_for 20 sh -c "[ \$(grep -c '^A' '$T/olog.$k') -gt $n ]"
}
fault_case "partition under fencing" frozen
