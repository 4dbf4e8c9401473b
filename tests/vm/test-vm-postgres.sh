#!/usr/bin/env bash
# PostgreSQL on the mirror, and what a hard failover costs it (the RPO).
# Two nodes of r0 with frontend = ublk: alpha in the VM's network
# namespace, beta in another one (bmpg) behind a veth pair with netem delay
# on alpha's side.  For each protocol (PG_RUNS="sync semi-sync async" on
# the host by default; PG_RUNS=async tests/run ... runs one):
#  - initdb on ext4 on alpha's /dev/ublkbN, PostgreSQL 15 started on it
#    (fsync, synchronous_commit and full_page_writes on); two clients
#    (tests/vm/pg_client.py) commit one transaction at a time, ids 1, 2,
#    3..., and log each id once its commit is acknowledged: one inserts
#    small rows, the other also puts 32 KiB of incompressible data into the
#    WAL per commit; a CHECKPOINT halfway.
#  - A power cut on alpha: its link goes down first (what its kernel still
#    held for beta, in the socket or the netem queue, never arrives), then
#    SIGKILL to its mirrord, PostgreSQL and the clients; the file system is
#    detached.
#  - beta sees the link gone and is promoted; its own /dev/ublkbN is mounted
#    (the ext4 journal replays) and PostgreSQL starts on it: it runs crash
#    recovery from the WAL and accepts connections.  The ids in each table
#    must be exactly 1..M (commit order survived), pg_amcheck finds the
#    tables and indexes sound, a clean stop and e2fsck -fn are clean.
#  - sync, and semi-sync (only the primary fails; the peer writes what it
#    had received): every acknowledged commit is there.
#    async (max-async-lag = max-io-size = 64K, 200 ms to the peer: without
#    the limit the clients would keep some 200 KiB in flight, so it is
#    reached; a mirrord that ignores it fails here): the acknowledged
#    commits missing are counted (the RPO in practice) and must fit in
#    max-async-lag (the bound is explained at pg_async_bound).
# The lines "RPO sync: ...", "RPO semi-sync: ..." and "RPO async: ..."
# report the numbers; the time from the kill to ext4 mounted on beta is
# printed as "failover".
# Between the kill and PostgreSQL's start on beta, alpha's mirrord is
# started again, alone (its link stays down): it does not resume as primary
# without the peer's word, so the I/O of the processes killed while waiting
# for its device fails, they end, and the device goes away: the lock file
# and shared memory of the dead server would otherwise look alive to the
# new one on the same machine.
# timeout: 900
if [[ ${BM_VM:-0} != 1 ]]; then
    source "$(dirname "$0")/lib.sh"
    rc=0
    # shellcheck disable=SC2086
    VM_TIMEOUT=840 vm_run "$0" ${PG_RUNS:-} || rc=$?
    # The daemons' and PostgreSQL's logs, for a look afterwards.
    keep=$BM_SRC/build/test-logs/test-vm-postgres.logs
    rm -rf "$keep"
    if [[ -d $VM_OUT/logs ]]; then
        mkdir -p "$keep" && cp -r "$VM_OUT/logs/." "$keep/" && vm_log "logs kept in ${keep#"$BM_SRC"/}"
    fi
    exit "$rc"
fi

source "$BM_SRC/tests/integration/functions.sh"
source "$BM_SRC/tests/integration/repl.sh"
source "$BM_SRC/tests/vm/ublk.sh"
source "$BM_SRC/tests/vm/pg.sh"
bm_setup
pg_requires
ublk_check_kernel
ublk_keep_logs

PG_RUNS=${*:-sync semi-sync async}         # (to try one: PG_RUNS=async tests/run ...)
PG_RUN_SECS=${PG_RUN_SECS:-16}   # how long the clients commit before the kill
PG_PAYLOAD=32768                 # bytes of WAL data per commit of the load client
ASYNC_LAG=$((64 << 10))          # max-async-lag and max-io-size of the async run
ASYNC_DELAY=200ms

not_connected() { [[ $(field "$CB" connection) != connected ]]; }
no_ext4() { [[ ! -e /proc/fs/ext4/$1 ]]; }
# committing LOG...: each LOG (a client's acknowledged ids) grows within 1 s.
committing() {
    local f n=() i=0
    for f; do n+=("$(wc -l <"$f")"); done
    sleep 1
    for f; do
        (($(wc -l <"$f") > n[i++])) || return 1
    done
}

# pg_async_bound LAG PER_COMMIT: the most acknowledged commits of one client
# that async replication may lose with max-async-lag = max-io-size = LAG,
# when each commit of that client puts at least PER_COMMIT bytes into the
# WAL (PER_COMMIT >= 4096).
#  - What the promoted peer lacks: one data link (queues = 1) carries the
#    writes in the order they were handed to it, and the peer writes what
#    it received, so it misses a suffix of that stream.  Each write missing
#    was sent and not acknowledged by the peer, i.e. counted in the link's
#    lag, which never exceeds max(max-async-lag, one request) = LAG (a
#    write waits while it would take the lag beyond max-async-lag, unless
#    nothing is outstanding; max-io-size bounds one request).
#  - Commit k of a client is acknowledged only after the write requests
#    carrying its WAL reached the link; commit k+1 begins after that, so its
#    WAL goes in requests issued later, hence later in the stream.  If
#    commit j+1 is the first one missing, some request needed by it is in
#    the missing suffix, and every request issued after commit j+1 was
#    acknowledged is too: those of commits j+2..N (N acknowledged), disjoint
#    sets of at least PER_COMMIT bytes each, plus that first request (4 KiB
#    at least: ext4 with 4 KiB blocks writes whole blocks).
#  So lost = N - j satisfies 4096 + (lost - 1) * PER_COMMIT <= LAG, that is
#  lost <= 1 + (LAG - 4096) / PER_COMMIT (LAG / 4096 for PER_COMMIT = 4096:
#  one WAL block per commit at least).
pg_async_bound() {
    echo $((1 + ($1 - 4096) / $2))
}

# pg_run PROTO N DELAY [key=value ...]: the whole scenario over veth pair N.
# Sets LOST_N, ACKED_N (numbered client), LOST_L, ACKED_L (load client),
# FAILOVER_S.
pg_run() {
    local proto=$1 n=$2 delay=$3
    shift 3
    local dev devb MA=/mnt/pg-a$n MB=/mnt/pg-b$n t0 pma c1 c2 old_pg p half
    echo "== $proto: two nodes, $delay to the peer${*:+, $*}"
    pg_pair "$n" protocol="$proto" "$@"
    dev=$(field "$CA" device)
    [[ -b $dev ]] || fail "$proto: no device on the primary: '$dev'"
    mkfs.ext4 -q -F -b 4096 "$dev"
    ublk_mount "$dev" "$MA"
    t0=$SECONDS
    pg_initdb "$MA/pg"
    echo "$proto: initdb on $dev took $((SECONDS - t0)) s"
    pg_start "a$n" "$MA/pg/data" $((5440 + n))
    pma=$PG_PM
    pg_sql "CREATE TABLE acked (id integer PRIMARY KEY, note text NOT NULL);
            CREATE TABLE load (id integer PRIMARY KEY); CHECKPOINT;"
    pg_delay "$delay"     # set up quickly, then the link gets slow

    "$PYTHON" "$PG_CLIENT" --host "$PG_SOCK" --port "$PG_PORT" --log "$T/acked-$proto" \
        numbered 2>"$T/client-$proto.log" &
    c1=$!
    bm_kill_at_exit "$c1"
    "$PYTHON" "$PG_CLIENT" --host "$PG_SOCK" --port "$PG_PORT" --log "$T/load-$proto" \
        --payload "$PG_PAYLOAD" load 2>"$T/client-load-$proto.log" &
    c2=$!
    bm_kill_at_exit "$c2"
    wait_for 60 test -s "$T/acked-$proto"
    wait_for 60 test -s "$T/load-$proto"
    half=$((PG_RUN_SECS / 2))
    sleep "$half"
    pg_sql "CHECKPOINT"       # data pages written while the clients go on
    sleep $((PG_RUN_SECS - half))
    for p in "$c1" "$c2"; do
        bm_alive "$p" || { cat "$T"/client*-"$proto".log >&2; fail "$proto: a client died"; }
    done
    # Replicating until the end: a link that broke on its own would make
    # the result mean nothing.
    assert_eq "$(field "$CA" connection)" connected "$proto: alpha's connection before the kill"
    assert_eq "$(field "$CA" replication)" established "$proto: alpha's replication before the kill"
    echo "$proto: alpha in flight: $(field "$CA" inflight)"
    # The kill must hit both clients while they commit, not while they wait.
    wait_for 60 committing "$T/acked-$proto" "$T/load-$proto"

    # ---- The power cut ----
    echo "$proto: the kill, after $(wc -l <"$T/acked-$proto") + $(wc -l <"$T/load-$proto") commits"
    t0=$EPOCHREALTIME
    ip link set "$VA" down          # first: nothing more reaches beta
    bm_kill9 "$PA"
    old_pg=$(pg_freeze_and_kill "$pma")
    kill -KILL "$c1" "$c2" 2>/dev/null || true
    wait "$c1" "$c2" 2>/dev/null || true
    umount -l "$MA"

    wait_for 60 not_connected
    ctlb promote || fail "$proto: beta refused promotion"
    devb=$(field "$CB" device)
    [[ -b $devb && $devb != "$dev" ]] || fail "$proto: no new device on the promoted beta: '$devb'"
    ublk_mount "$devb" "$MB"     # replays the ext4 journal
    FAILOVER_S=$(bm_elapsed "$t0")
    echo "$proto: failover: from the kill to ext4 mounted on beta's $devb: $FAILOVER_S s"

    # ---- The dead node goes away for good ----
    # Its device waits for a server: a new mirrord (its link still down)
    # hears nothing from the peer, so it does not resume as primary: the
    # I/O the killed processes waited for fails, they exit, the detached
    # file system is released, and the device goes.
    bm_start "$CA" alpha; PA=$BM_PID
    assert_eq "$(field "$CA" role)" secondary "$proto: the dead node's mirrord at its start"
    wait_for 90 sh -c "[ ! -e $dev ]"
    assert_eq "$(field "$CA" role)" secondary "$proto: the dead node's mirrord without its peer"
    for p in $old_pg; do wait_for 60 pg_gone "$p"; done
    wait_for 60 no_ext4 "${dev#/dev/}"
    bm_stop "$PA"
    [[ ! -e $dev ]] || fail "$proto: $dev still exists after the dead node's clean stop"

    # ---- PostgreSQL on the promoted node: crash recovery ----
    t0=$EPOCHREALTIME
    pg_start "b$n" "$MB/pg/data" $((5450 + n))
    echo "$proto: PostgreSQL recovered and accepts connections after $(bm_elapsed "$t0") s"
    assert_contains "$PG_LOG" "database system was not properly shut down; automatic recovery in progress" \
        "$proto: PostgreSQL ran crash recovery"
    assert_contains "$PG_LOG" "redo done at" "$proto: the WAL was replayed"
    grep -E "PANIC|invalid page|could not read block|unexpected pageaddr" "$PG_LOG" >&2 &&
        fail "$proto: errors in PostgreSQL's log during recovery"
    pg_sql "SELECT id FROM acked ORDER BY id" >"$T/present-$proto"
    pg_sql "SELECT id FROM load ORDER BY id" >"$T/present-load-$proto"
    pg_check_ids "$proto numbered" "$T/acked-$proto" "$T/present-$proto"
    ACKED_N=$PG_ACKED LOST_N=$PG_LOST
    echo "$proto: numbered client: $PG_ACKED acknowledged, $PG_PRESENT rows (1..$PG_PRESENT) present"
    pg_check_ids "$proto load" "$T/load-$proto" "$T/present-load-$proto"
    ACKED_L=$PG_ACKED LOST_L=$PG_LOST
    echo "$proto: load client: $PG_ACKED acknowledged, $PG_PRESENT rows (1..$PG_PRESENT) present"
    ((ACKED_N >= 20 && ACKED_L >= 5)) ||
        fail "$proto: too few commits before the kill to mean anything ($ACKED_N, $ACKED_L)"
    "$PG_BIN/pg_amcheck" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres --install-missing \
        --heapallindexed -t acked -t load >"$T/amcheck-$proto.out" 2>&1 ||
        { cat "$T/amcheck-$proto.out" >&2; fail "$proto: pg_amcheck found corruption"; }
    pg_sql "INSERT INTO acked (id, note) VALUES (0, 'after the failover')"
    pg_stop
    ublk_umount "$MB"
    e2fsck -fn "$devb" >"$T/fsck-$proto.txt" 2>&1 ||
        { cat "$T/fsck-$proto.txt" >&2; fail "$proto: e2fsck -n on beta's device"; }
    ! grep -qi "I/O error" "$T/pb$n-beta.log" || fail "$proto: I/O errors logged by beta"
    ctlb demote
    bm_stop "$PB"
    ublk_assert_no_device "after the $proto run"
    pg_link_del "$VA"
}

pg_netns
RESULTS=()
for run in $PG_RUNS; do
    case $run in
    sync)
        pg_run sync 1 2ms
        assert_eq "$LOST_N" 0 "sync: acknowledged commits of the numbered client lost"
        assert_eq "$LOST_L" 0 "sync: acknowledged commits of the load client lost"
        RESULTS+=("RPO sync: 0 of $ACKED_N acknowledged commits lost (and 0 of $ACKED_L of the load client); failover $FAILOVER_S s")
        ;;
    semi-sync)
        # Acknowledged once the peer has received the write: only the
        # primary failed, so the peer still writes all it received.
        pg_run semi-sync 3 2ms
        assert_eq "$LOST_N" 0 "semi-sync: acknowledged commits of the numbered client lost"
        assert_eq "$LOST_L" 0 "semi-sync: acknowledged commits of the load client lost"
        RESULTS+=("RPO semi-sync: 0 of $ACKED_N acknowledged commits lost (and 0 of $ACKED_L of the load client); failover $FAILOVER_S s")
        ;;
    async)
        pg_run async 2 "$ASYNC_DELAY" max-async-lag=$ASYNC_LAG max-io-size=$ASYNC_LAG
        bound_n=$(pg_async_bound "$ASYNC_LAG" 4096)
        bound_l=$(pg_async_bound "$ASYNC_LAG" "$PG_PAYLOAD")
        rpo="RPO async: $LOST_N of $ACKED_N acknowledged commits lost (max-async-lag=$((ASYNC_LAG >> 10))K, bound $bound_n); load client ($((PG_PAYLOAD >> 10)) KiB of WAL per commit): $LOST_L of $ACKED_L lost (bound $bound_l)"
        ((LOST_N <= bound_n && LOST_L <= bound_l)) || fail "$rpo: more than max-async-lag allows"
        RESULTS+=("$rpo; failover $FAILOVER_S s")
        ;;
    *) fail "PG_RUNS: unknown run '$run'" ;;
    esac
done
printf '%s\n' "${RESULTS[@]}"
echo "postgres: all checks passed"
