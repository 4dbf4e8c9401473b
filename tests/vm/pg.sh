# tests/vm/pg.sh: PostgreSQL on the mirror, for tests/vm/test-vm-postgres.sh
# (sourced in the guest after functions.sh, repl.sh and ublk.sh, after
# bm_setup).
#
# PostgreSQL 15 runs as user postgres with Debian's binaries (PG_BIN), its
# data directory on ext4 on a /dev/ublkbN, its socket in a directory under $T
# (no TCP), and its log in $T/pg-NAME.log (kept with the daemons' logs by
# ublk_keep_logs, printed on failure).

PG_BIN=/usr/lib/postgresql/15/bin
PG_CLIENT=$BM_SRC/tests/vm/pg_client.py

pg_requires() {
    local t
    for t in initdb pg_ctl postgres psql pg_amcheck; do
        requires "$PG_BIN/$t"
    done
    requires runuser
    requires pgrep
    requires ip
    requires tc
    requires e2fsck
    requires mkfs.ext4
    requires "$PYTHON" -c 'import psycopg2'
    getent passwd postgres >/dev/null || fail "no user postgres: run make deps (postgresql)"
    # PostgreSQL runs as postgres: it must reach its log files and sockets.
    chmod 0711 "$T"
}

pg_as() { runuser -u postgres -- "$@"; }

# pg_initdb DIR: a new cluster in DIR/data (DIR on the file system under
# test), durable settings spelled out.  Sets nothing; prints nothing.
pg_initdb() {
    local dir=$1
    mkdir -p "$dir"
    chown postgres: "$dir"
    pg_as "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C \
        >"$T/initdb.out" 2>&1 || { cat "$T/initdb.out" >&2; fail "initdb on $dir failed"; }
    # Durability is what is tested: the defaults, said out loud.  Small
    # memory and WAL (the VM keeps the disks in RAM); no autovacuum, so no
    # process is forked while the test kills the server; new WAL segments
    # not filled with zeros (16 MiB at once, which with a small
    # max-async-lag stalls every commit for seconds: the kill would find
    # the clients waiting, not committing).
    cat >>"$dir/data/postgresql.conf" <<'EOF'

# tests/vm/test-vm-postgres.sh
listen_addresses = ''
fsync = on
synchronous_commit = on
full_page_writes = on
wal_sync_method = fdatasync
shared_buffers = 32MB
max_wal_size = 96MB
min_wal_size = 32MB
autovacuum = off
wal_init_zero = off
log_checkpoints = on
log_line_prefix = '%m [%p] '
EOF
    # Durable before the test counts on it: ext4 journals the new size of
    # a file appended to within its last block at once, but writes the data
    # only up to 30 s later, so a power cut in between leaves zeros at the
    # end of postgresql.conf (seen: "syntax error ... line 816").
    sync -f "$dir/data/postgresql.conf"
}

# pg_start NAME DATADIR PORT: starts the server with pg_ctl (-w: returns once
# it accepts connections, after any crash recovery) with its socket in
# $T/sock-NAME and its log in $T/pg-NAME.log.  Sets PG_SOCK, PG_PORT, PG_LOG
# and PG_PM (the postmaster's pid).
pg_start() {
    local name=$1 data=$2 port=$3
    PG_SOCK=$T/sock-$name
    PG_PORT=$port
    PG_LOG=$T/pg-$name.log
    PG_DATA=$data
    mkdir -p "$PG_SOCK"
    chown postgres: "$PG_SOCK"
    touch "$PG_LOG"
    chown postgres: "$PG_LOG"
    bm_on_exit pg_show_log_on_failure "$PG_LOG"
    pg_as "$PG_BIN/pg_ctl" -D "$data" -l "$PG_LOG" -w -t 300 \
        -o "-c port=$port -c unix_socket_directories='$PG_SOCK'" start >"$T/pg_ctl.out" 2>&1 || {
        cat "$T/pg_ctl.out" >&2
        fail "pg_ctl start ($name) failed"
    }
    PG_PM=$(head -n1 "$data/postmaster.pid")
    [[ $PG_PM =~ ^[0-9]+$ ]] && bm_alive "$PG_PM" || fail "no postmaster running after pg_ctl start ($name)"
    bm_on_exit pg_kill_quiet "$PG_PM"
}

# pg_sql SQL: runs SQL on the server of the last pg_start, prints the rows
# unaligned, without headers.
pg_sql() {
    "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres \
        -d postgres -c "$1"
}

# pg_stop: a clean shutdown of the server of the last pg_start.
pg_stop() {
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 120 stop >"$T/pg_ctl.out" 2>&1 || {
        cat "$T/pg_ctl.out" >&2
        fail "pg_ctl stop failed"
    }
    # pg_ctl returns once postmaster.pid is gone, just before the end.
    wait_for 30 pg_gone "$PG_PM"
}

pg_gone() { ! bm_alive "$1"; }

# pg_procs PM: the postmaster and its children (the backends, the
# checkpointer, the WAL writer...).
pg_procs() {
    echo "$1"
    pgrep -P "$1" || true
}

# pg_freeze_and_kill PM: SIGKILL to the postmaster and all its children.
# The postmaster is stopped first, so that it forks nothing between the
# listing and the kill.  Processes waiting for I/O on a device whose daemon
# is dead die only once that I/O ends; prints the pids.
pg_freeze_and_kill() {
    local pm=$1 pids
    kill -STOP "$pm"
    pids=$(pg_procs "$pm")
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true    # a backend may just have ended
    echo $pids
}

pg_kill_quiet() {
    local p
    for p in $(pg_procs "$1" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
}

# On failure (functions.sh's bm_cleanup runs the exit hooks with its rc in
# scope), the end of PostgreSQL's log.
pg_show_log_on_failure() {
    [[ ${rc:-0} != 0 && -s $1 ]] || return 0
    echo "--- $1 (last 40 lines)" >&2
    tail -n 40 "$1" >&2
}

# pg_check_ids NAME ACKLOG PRESENT: ACKLOG (the client's acknowledged ids)
# must be exactly 1..A; PRESENT (the ids found in the table, sorted) exactly
# 1..M with M <= A + 1 (the client may have been killed between a commit
# and its log line).  One client commits in id order and the WAL replays in
# commit order, so anything else means lost ordering or a corrupted table.
# Sets PG_ACKED=A, PG_PRESENT=M, PG_LOST=max(0, A - M).
pg_check_ids() {
    local name=$1 log=$2 present=$3
    awk 'NR != $1 { exit 1 }' "$log" || fail "$name: the client's log is not 1..N"
    awk 'NR != $1 { exit 1 }' "$present" ||
        fail "$name: the ids in the table are not 1..M (first lines: $(head -c 200 "$present" | tr '\n' ' '))"
    PG_ACKED=$(wc -l <"$log")
    PG_PRESENT=$(wc -l <"$present")
    ((PG_PRESENT <= PG_ACKED + 1)) ||
        fail "$name: $PG_PRESENT rows but only $PG_ACKED commits acknowledged (at most one more may be there)"
    PG_LOST=$((PG_ACKED > PG_PRESENT ? PG_ACKED - PG_PRESENT : 0))
}

# pg_netns: the peer's network namespace, once.
pg_netns() {
    ip netns add bmpg
    bm_on_exit ip netns del bmpg
    ip -n bmpg link set lo up
    printf '#!/bin/sh\nexec ip netns exec bmpg %q "$@"\n' "$MIRRORD" >"$T/mirrord-in-ns"
    chmod +x "$T/mirrord-in-ns"
}

pg_link_del() {
    ip link del "$1" 2>/dev/null || true
}

# pg_pair N [key=value ...]: resource r0 on two nodes: alpha here, beta in
# namespace bmpg behind a veth pair pgaN/pgbN, 10.99.N.1 and 10.99.N.2,
# with a netem qdisc on alpha's side (the data's way to the peer; 1 ms
# until pg_delay); 256 MiB disks, ublk, ping-timeout 3; initial full sync,
# alpha primary.  Sets CA, CB, PA, PB, VA (alpha's veth) and SIZE like
# bm_pair.
pg_pair() {
    local n=$1 mirrord_host=$MIRRORD
    shift
    VA=pga$n
    ip link add "$VA" type veth peer name "pgb$n"
    bm_on_exit pg_link_del "$VA"
    ip link set "pgb$n" netns bmpg
    ip addr add "10.99.$n.1/24" dev "$VA"
    ip link set "$VA" up
    ip -n bmpg addr add "10.99.$n.2/24" dev "pgb$n"
    ip -n bmpg link set "pgb$n" up
    tc qdisc add dev "$VA" root netem delay 1ms limit 100000
    [[ -f $T/secret ]] || { head -c 48 /dev/urandom | base64 >"$T/secret"; chmod 600 "$T/secret"; }
    local common=(name=r0 frontend=ublk export-listen= secret-file="$T/secret" ping-timeout=3
                  alpha.address="10.99.$n.1:7789" beta.address="10.99.$n.2:7789" "$@")
    CA=$(bm_conf "pa$n" "${common[@]}")
    CB=$(bm_conf "pb$n" "${common[@]}")
    bm_disk "pa$n" 256M
    bm_disk "pb$n" 256M
    ctla create-md >/dev/null
    ctlb create-md >/dev/null
    bm_start "$CA" alpha; PA=$BM_PID
    MIRRORD=$T/mirrord-in-ns
    bm_start "$CB" beta; PB=$BM_PID
    MIRRORD=$mirrord_host
    SIZE=$(field "$CA" size_bytes)
    ctla wait-connect --timeout 60
    ctla promote --force
    ctla wait-sync --timeout 300
}

# pg_delay DELAY: netem delay on alpha's side of the pair from now on.
pg_delay() {
    tc qdisc change dev "$VA" root netem delay "$1" limit 100000
}
