#!/usr/bin/env bash
# ocf-tester (Debian's resource-agents) passes on the OCF agent
# tools/ocf/blkmirror against a real mirrord that the agent starts and stops:
# node alpha of a two-node resource whose peer beta runs on loopback, so that
# promote and demote have a connected peer.  No cluster runs here: the agent
# must do without crm_master.  A second run starts from a promoted instance
# (ocf-tester then demotes and stops it first).
# timeout: 240
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires ocf-tester
requires xmllint
bm_setup

AGENT=tools/ocf/blkmirror  # ocf-tester runs it from the source tree, as nobody too
cd "$BM_SRC"
export OCF_ROOT=/usr/lib/ocf
export PATH=$BM_BIN:$PATH
export BLKMIRROR_LOG_DIR=$T/agent-log
ALOG=$BLKMIRROR_LOG_DIR/r0.log
BM_LOGS+=("$ALOG")

# The mirrord processes started with config $1 (the agent's daemons are not
# our children: find them in /proc).
conf_pids() {
    local d
    for d in /proc/[0-9]*; do
        [[ $(cat "$d/comm" 2>/dev/null) == mirrord ]] || continue
        if tr '\0' '\n' <"$d/cmdline" 2>/dev/null | grep -qxF -- "$1"; then
            echo "${d#/proc/}"
        fi
    done
}
# Whatever the agent left running is killed at exit, like bm_start's daemons.
kill_conf_daemons() {
    local p
    for p in $(conf_pids "$1"); do
        kill -TERM "$p" 2>/dev/null
        wait_gone "$p" || kill -KILL "$p" 2>/dev/null
    done
    return 0
}
wait_gone() {
    local i
    for ((i = 0; i < 50; i++)); do
        bm_alive "$1" || return 0
        sleep 0.1
    done
    return 1
}

# The meta-data is valid against the DTD that resource-agents ships.
DTD=$(dpkg -L resource-agents | grep '/ra-api-1\.dtd$' | head -n 1)
[[ -f $DTD ]] || fail "resource-agents ships no ra-api-1.dtd"
"$AGENT" meta-data >"$T/meta-data.xml"
xmllint --noout --dtdvalid "$DTD" "$T/meta-data.xml" ||
    fail "meta-data is not valid against $DTD"
for a in start stop promote demote notify meta-data validate-all; do
    assert_contains "$T/meta-data.xml" "<action name=\"$a\"" "meta-data lists $a"
done
assert_contains "$T/meta-data.xml" '<action name="monitor".*role="Promoted"' "monitor for the promoted role"
assert_contains "$T/meta-data.xml" '<action name="monitor".*role="Unpromoted"' "monitor for the unpromoted role"

# Both nodes up to date, alpha secondary and stopped cleanly: from here on
# the agent runs alpha, beta stays up.
bm_pair 16M
bm_pair_initial_sync
ctla demote
bm_stop "$PA"
bm_on_exit kill_conf_daemons "$CA"

run_tester() {
    local out=$1 rc=0
    ocf-tester -v -n blkmirror -o config="$CA" -o node=alpha "$AGENT" >"$out" 2>&1 || rc=$?
    cat "$out"
    assert_eq "$rc" 0 "ocf-tester exit code (see $out above)"
    assert_contains "$out" "passed all tests" "ocf-tester verdict"
    [[ -z $(conf_pids "$CA") ]] || fail "ocf-tester left mirrord running: $(conf_pids "$CA")"
}

# 1. From a stopped resource.
run_tester "$T/ocf-tester-1.out"
# ocf-tester started mirrord twice (start, restart; the third start found it
# running) and every stop was a clean SIGTERM shutdown.
assert_eq "$(grep -c 'info: ready:' "$ALOG")" 2 "daemons started by the agent"
assert_eq "$(grep -c 'stopped (exit 0)' "$ALOG")" 2 "clean shutdowns by the agent"
assert_contains "$ALOG" 'role secondary -> primary \(promote\)$' "promote without --force"
grep -qF -- '-> primary (promote --force)' "$ALOG" && fail "the agent used promote --force"

# 2. From a promoted instance: ocf-tester's first monitor sees 8, demotes
# and stops it.
env OCF_RESOURCE_INSTANCE=blkmirror OCF_RESKEY_config="$CA" OCF_RESKEY_node=alpha \
    "$AGENT" start || fail "agent start"
env OCF_RESOURCE_INSTANCE=blkmirror OCF_RESKEY_config="$CA" OCF_RESKEY_node=alpha \
    "$AGENT" promote || fail "agent promote"
rc=0
env OCF_RESOURCE_INSTANCE=blkmirror OCF_RESKEY_config="$CA" OCF_RESKEY_node=alpha \
    OCF_RESKEY_CRM_meta_interval=10000 "$AGENT" monitor || rc=$?
assert_eq "$rc" 8 "monitor of the promoted instance"
run_tester "$T/ocf-tester-2.out"
assert_contains "$T/ocf-tester-2.out" 'Cleanup, demote' "ocf-tester found the instance promoted"

# The peer saw a clean demote before every stop: no split brain, in sync.
assert_eq "$(field "$CB" connection)" connecting "beta after alpha stopped"
assert_eq "$(field "$CB" disk)" uptodate "beta's disk"
bm_stop "$PB"
