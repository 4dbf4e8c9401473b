# tests/integration/functions.sh: sourced by every shell test.
#
#   source "$BM_SRC/tests/integration/functions.sh"   (or: "$(dirname "$0")/functions.sh")
#   bm_setup
#   conf=$(bm_conf r0)
#   bm_disk r0 64M
#   "$MIRRORCTL" -c "$conf" create-md
#   bm_start "$conf" alpha
#   nbdinfo "$(bm_nbd_uri r0)"
#   bm_stop "$BM_PID"
#
# tests/run sets BM_BIN (the build directory) and BM_SRC (the repository root);
# to run one test by hand: BM_BIN=build/asan bash tests/integration/test-x.sh
# (BM_KEEP=1 keeps the temporary directory with the daemon logs).
#
# Every helper fails the test (exit 1, message on stderr) rather than returning
# an error, so tests read as a straight list of steps under "set -e".

set -eEuo pipefail

BM_SRC=${BM_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BM_BIN=${BM_BIN:-$BM_SRC/build}
PYTHON=/usr/bin/python3  # Debian's: python3-libnbd imports only here
BM_PIDS=()               # daemons still to be killed at exit
BM_LOGS=()               # their logs, scanned for sanitizer reports at exit
BM_EXIT_HOOKS=()         # commands for bm_on_exit, run last-first
BM_FAIL_MSG=
# A report of ASan, LSan, UBSan or TSan (the TSan build, make check-tsan).
BM_SAN_RE='ERROR: (Address|Leak)Sanitizer|runtime error:|WARNING: ThreadSanitizer'
BM_LAST_ERR=
trap 'BM_LAST_ERR="${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND"' ERR

fail() {
    BM_FAIL_MSG="$*"
    echo "FAIL: $*" >&2
    exit 1
}

# assert_eq ACTUAL EXPECTED MSG
assert_eq() {
    [[ $1 == "$2" ]] || fail "$3: got '$1', expected '$2'"
}

# assert_contains FILE_OR_STRING PATTERN MSG: PATTERN is an extended regex.
assert_contains() {
    if [[ -f $1 ]]; then
        grep -Eq -- "$2" "$1" && return 0
        echo "--- $1 (last 20 lines)" >&2
        tail -n 20 "$1" >&2
    else
        grep -Eq -- "$2" <<<"$1" && return 0
        echo "--- in: $1" >&2
    fi
    fail "$3: no match for /$2/"
}

# expect_fail CMD...: the test fails if CMD succeeds.  A crash is not the
# failure a test expects: a status of 126 or more (not found, not executable,
# killed by a signal, sanitizer abort) fails the test too.
expect_fail() {
    local rc=0
    "$@" || rc=$?
    ((rc != 0)) || fail "expected failure, but it succeeded: $*"
    ((rc < 126)) || fail "expected failure, got rc=$rc (crash?): $*"
}

# bm_elapsed T0: seconds since T0 (a value of $EPOCHREALTIME), 1 decimal.
bm_elapsed() {
    local us=$(( ${EPOCHREALTIME/./} - ${1/./} ))
    printf '%d.%d' $((us / 1000000)) $(( (us % 1000000) / 100000 ))
}

# wait_for SECS CMD...: poll CMD every 0.1 s until it succeeds (SECS may be
# fractional).
wait_for() {
    local secs=$1 us; shift
    printf -v us '%.0f' "${secs}e6" 2>/dev/null || fail "wait_for: bad time '$secs'"
    local end=$(( ${EPOCHREALTIME/./} + us ))
    until "$@"; do
        ((${EPOCHREALTIME/./} < end)) || fail "timed out after ${secs}s waiting for: $*"
        sleep 0.1
    done
}

# requires CMD [ARGS...]: CMD must be on PATH; with ARGS, "CMD ARGS" must
# succeed (e.g. requires /usr/bin/python3 -c 'import nbd').  A missing tool
# fails the test: tests are never skipped.
requires() {
    if (($# == 1)); then
        command -v "$1" >/dev/null || fail "missing $1: run make deps"
    else
        "$@" >/dev/null 2>&1 || fail "missing $*: run make deps"
    fi
}

# bm_faults: the daemons started after it take failpoint commands (lib/fault.h,
# the test build's libfiu); bm_fault PID 'enable name=X' sends one.
bm_faults() {
    requires fiu-ctrl
    export BM_FAULT_FIFO=$T/fiu
}
bm_fault() {
    fiu-ctrl -f "$T/fiu" -c "$2" "$1" || fail "fiu-ctrl $2 on $1 failed"
}

# bm_on_exit CMD...: run CMD at exit (after the daemons are killed), e.g. to
# delete a network namespace.  Hooks run last-registered first.
bm_on_exit() {
    BM_EXIT_HOOKS+=("$(printf '%q ' "$@")")
}

bm_setup() {
    MIRRORD=$BM_BIN/mirrord
    MIRRORCTL=$BM_BIN/mirrorctl
    [[ -x $MIRRORD && -x $MIRRORCTL ]] ||
        fail "no mirrord/mirrorctl in $BM_BIN: build first (make), or set BM_BIN"
    T=$(mktemp -d "/tmp/blkmirror-$(basename "$0" .sh).XXXXXX")
    trap bm_cleanup EXIT
    trap 'exit 143' TERM  # so that a timeout still cleans up
    trap 'exit 130' INT
}

# True while PID runs (a zombie counts as gone).
bm_alive() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# Forget PID: it is no longer ours to kill.
bm_forget() {
    local p keep=()
    for p in "${BM_PIDS[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    BM_PIDS=("${keep[@]}")
}

bm_any_alive() {
    local p
    for p in "${BM_PIDS[@]}"; do
        if bm_alive "$p"; then return 0; fi
    done
    return 1
}

bm_cleanup() {
    local rc=$? p i log
    set +e
    trap - ERR
    for p in "${BM_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for ((i = 0; i < 50; i++)); do
        bm_any_alive || break
        sleep 0.1
    done
    for p in "${BM_PIDS[@]}"; do
        bm_alive "$p" && echo "cleanup: daemon $p ignored SIGTERM for 5 s, SIGKILL" >&2
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    for ((i = ${#BM_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
        eval "${BM_EXIT_HOOKS[i]}"
    done

    # A sanitizer report in any daemon's log fails the test (with TSan's
    # halt_on_error=0 the daemon runs on and reports every race).
    for log in "${BM_LOGS[@]}"; do
        if grep -Eq "$BM_SAN_RE" "$log" 2>/dev/null; then
            echo "--- sanitizer report in $log" >&2
            grep -E -A 30 "$BM_SAN_RE" "$log" | head -n 60 >&2
            rc=1
            BM_FAIL_MSG="sanitizer report in ${log##*/}"
        fi
    done
    if ((rc != 0)); then
        for log in "${BM_LOGS[@]}"; do
            [[ -f $log ]] || continue
            echo "--- $log (last 30 lines)" >&2
            tail -n 30 "$log" >&2
        done
        # Repeat the cause last: the runner shows only the end of the log.
        if [[ -z $BM_FAIL_MSG ]]; then
            BM_FAIL_MSG="exit status $rc${BM_LAST_ERR:+ after $BM_LAST_ERR}"
            ((rc != 143)) || BM_FAIL_MSG="killed by SIGTERM (test timeout?)"
        fi
        echo "FAIL: $BM_FAIL_MSG" >&2
    fi
    if [[ ${BM_KEEP:-0} == 1 ]]; then
        echo "kept $T" >&2
    else
        rm -rf "$T"
    fi
    exit "$rc"
}

# Prints N free TCP ports on 127.0.0.1, held open together so they differ.
bm_free_ports() {
    "$PYTHON" -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])' "$1"
}

# bm_conf NAME [key=value ...]: writes $T/NAME.conf and prints its path.
# key=value sets a key in [resource]; NODE.key=value one in [node NODE]
# (e.g. beta.address=127.0.0.1:7000, gamma.address=... adds a node); an empty
# value drops the key.  The node addresses are picked once per test, so the
# configs of the two ends of one resource (bm_conf r0a name=r0, bm_conf r0b
# name=r0) agree on them.
bm_conf() {
    local name=$1; shift
    local conf=$T/$name.conf kv k n pa pb
    [[ -f $T/ports ]] || bm_free_ports 2 >"$T/ports"
    read -r pa pb <"$T/ports"
    local keys=(name protocol frontend disk meta-disk control export-listen
                alpha.address beta.address)
    local -A val=([name]=$name [protocol]=sync [frontend]=export
                  [disk]=$T/$name.img [meta-disk]=internal [control]=$T/$name.sock
                  [export-listen]=unix:$T/$name.nbd
                  [alpha.address]=127.0.0.1:$pa [beta.address]=127.0.0.1:$pb)
    for kv; do
        [[ $kv == *=* ]] || fail "bm_conf: '$kv' is not key=value"
        k=${kv%%=*}
        [[ -v val[$k] ]] || keys+=("$k")
        val[$k]=${kv#*=}
    done
    local nodes=()
    for k in "${keys[@]}"; do
        if [[ $k == *.* && " ${nodes[*]} " != *" ${k%%.*} "* ]]; then
            nodes+=("${k%%.*}")
        fi
    done
    {
        echo "[resource]"
        for k in "${keys[@]}"; do
            if [[ $k != *.* && -n ${val[$k]} ]]; then echo "$k = ${val[$k]}"; fi
        done
        for n in "${nodes[@]}"; do
            printf '\n[node %s]\n' "$n"
            for k in "${keys[@]}"; do
                if [[ $k == "$n".* && -n ${val[$k]} ]]; then echo "${k#*.} = ${val[$k]}"; fi
            done
        done
    } >"$conf"
    echo "$conf"
}

# bm_disk NAME SIZE: creates (or resizes) the backing file $T/NAME.img.
bm_disk() {
    truncate -s "$2" "$T/$1.img"
}

# bm_start CONF [NODE] [ARGS...]: starts mirrord as NODE (default alpha) in
# the background, logging to $T/<conf>-<node>.log, and returns once its
# control socket answers.  Sets BM_PID.  On failure the exit handler prints
# the daemon's log.
bm_start() {
    local conf=$1 node=${2:-alpha}
    shift $(($# < 2 ? $# : 2))
    local base=${conf##*/} rc
    local log=$T/${base%.conf}-$node.log
    local end=$(( ${EPOCHREALTIME/./} + 20000000 ))
    "$MIRRORD" -c "$conf" --node "$node" --foreground --log-level debug "$@" \
        </dev/null >>"$log" 2>&1 &
    BM_PID=$!
    BM_PIDS+=("$BM_PID")
    BM_LOGS+=("$log")
    while ((${EPOCHREALTIME/./} < end)); do
        if "$MIRRORCTL" -c "$conf" status >/dev/null 2>&1; then return 0; fi
        if ! bm_alive "$BM_PID"; then
            rc=0; wait "$BM_PID" || rc=$?
            bm_forget "$BM_PID"
            fail "mirrord ($node, $conf) exited with rc=$rc before answering"
        fi
        sleep 0.1
    done
    fail "mirrord ($node, $conf) did not answer on its control socket in 20 s"
}

# bm_stop PID: SIGTERM, then the daemon must exit with 0 within 10 s.
bm_stop() {
    local pid=$1 rc=0 i
    kill -TERM "$pid" || fail "bm_stop: no process $pid"
    for ((i = 0; i < 100; i++)); do
        bm_alive "$pid" || break
        sleep 0.1
    done
    bm_alive "$pid" && fail "mirrord $pid still running 10 s after SIGTERM"
    wait "$pid" || rc=$?
    bm_forget "$pid"
    assert_eq "$rc" 0 "exit code of mirrord $pid after SIGTERM"
}

# bm_kill9 PID: kills the daemon hard (a crash, a power cut).
bm_kill9() {
    kill -KILL "$1" || fail "bm_kill9: no process $1"
    wait "$1" 2>/dev/null || true
    bm_forget "$1"
}

# bm_nbd_uri NAME: the NBD URI of the export configured in $T/NAME.conf.
bm_nbd_uri() {
    local conf=$T/$1.conf res=$1 sock=$T/$1.nbd
    if [[ -f $conf ]]; then
        res=$(sed -n 's/^name *= *//p' "$conf")
        sock=$(sed -n 's/^export-listen *= *unix://p' "$conf")
    fi
    echo "nbd+unix:///$res?socket=$sock"
}

# bm_status_field CONF EXPR: one field of "mirrorctl status --json", EXPR a
# jq-like path (.role, .peer.disk, .resync.done_percent).  Strings print raw,
# null as "null", objects as JSON.
bm_status_field() {
    "$MIRRORCTL" -c "$1" status --json | bm_json_field "$2"
}

# bm_json_field FIELD: FIELD (dotted: peer.role) of the JSON object on stdin.
bm_json_field() {
    "$PYTHON" -c '
import json, sys
v = json.load(sys.stdin)
for k in filter(None, sys.argv[1].split(".")):
    if not isinstance(v, dict) or k not in v:
        sys.exit("no field %s in the JSON object" % sys.argv[1])
    v = v[k]
print(v if isinstance(v, str) else json.dumps(v))' "$1"
}

# ---- Helpers for the NBD export tests (tests/integration/test-export-*.sh) ----

# bm_json EXPR: one field of the JSON document on stdin, EXPR a jq-like path
# (.size_bytes, .exports.0.is_read_only: a number indexes a list).  Prints
# like bm_status_field: strings raw, null as "null", the rest as JSON.
bm_json() {
    "$PYTHON" -c '
import json, sys
v = json.load(sys.stdin)
for k in filter(None, sys.argv[1].split(".")):
    if isinstance(v, list) and k.isdigit() and int(k) < len(v):
        v = v[int(k)]
    elif isinstance(v, dict) and k in v:
        v = v[k]
    else:
        sys.exit("bm_json: no field %s" % sys.argv[1])
print(v if isinstance(v, str) else json.dumps(v))' "$1"
}

# bm_nbdsh ARGS...: nbdsh on Debian's python3.  /usr/bin/nbdsh runs
# "python3 -m nbd" with the first python3 on PATH, which may lack the module.
bm_nbdsh() {
    "$PYTHON" -m nbd "$@"
}

# bm_kill_at_exit PID...: background clients of the test, killed at exit if
# they still run (a failed step leaves no process behind).
bm_kill_at_exit() {
    local p
    for p; do bm_on_exit bm_kill_quiet "$p"; done
}
bm_kill_quiet() {
    kill "$@" 2>/dev/null || true
}

# bm_single NAME SIZE [key=value ...]: one node with fresh metadata, started
# as alpha (secondary, inconsistent).  Sets BM_CONF and BM_PID.
bm_single() {
    local name=$1 size=$2
    shift 2
    BM_CONF=$(bm_conf "$name" "$@")
    bm_disk "$name" "$size"
    "$MIRRORCTL" -c "$BM_CONF" create-md >/dev/null
    bm_start "$BM_CONF" alpha
}
