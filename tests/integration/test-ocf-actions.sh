#!/usr/bin/env bash
# The OCF agent's actions one by one, with the environment Pacemaker gives
# it, against a real mirrord (node alpha, started by the agent) whose peer
# beta runs on loopback: the exit codes of monitor, start, promote, demote,
# stop and validate-all, and the promotion score, recorded by a fake
# crm_master (the cluster boundary) first on PATH.  stop fails while a ublk
# device of the resource is left (a fake one: this host has no ublk).
# timeout: 240
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
requires test -r /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs
bm_setup

AGENT=$BM_SRC/tools/ocf/blkmirror
FAKE=$T/fake-sbin
SCORES=$T/scores
mkdir -p "$FAKE" "$T/empty"
for tool in crm_master crm_attribute; do
    printf '#!/bin/sh\necho "%s $*" >>"%s"\n' "$tool" "$SCORES" >"$FAKE/$tool"
    chmod +x "$FAKE/$tool"
done
: >"$SCORES"

export OCF_ROOT=/usr/lib/ocf
export OCF_RESOURCE_INSTANCE=blkmirror
export OCF_RESKEY_node=alpha
export OCF_RESKEY_CRM_meta_timeout=20000
export OCF_RESKEY_CRM_meta_interval=10000
export HA_SBIN_DIR=$FAKE  # ocf_promotion_score calls $HA_SBIN_DIR/crm_master
export PATH=$FAKE:$BM_BIN:$PATH
export BLKMIRROR_LOG_DIR=$T/agent-log
unset OCF_RESKEY_crm_feature_set
ALOG=$BLKMIRROR_LOG_DIR/r0.log
BM_LOGS+=("$ALOG")

OCF_SUCCESS=0 OCF_ERR_GENERIC=1 OCF_ERR_INSTALLED=5 OCF_ERR_CONFIGURED=6
OCF_NOT_RUNNING=7 OCF_RUNNING_MASTER=8

# ra [VAR=value...] ACTION: runs the agent, its output to $T/ra.out; prints
# nothing, returns the agent's exit code.
ra() {
    env "${@:1:$#-1}" "$AGENT" "${@: -1}" >"$T/ra.out" 2>&1
}
# expect_rc CODE [VAR=value...] ACTION
expect_rc() {
    local want=$1 rc=0
    shift
    env "${@:1:$#-1}" "$AGENT" "${@: -1}" >"$T/ra.out" 2>&1 || rc=$?
    if [[ $rc != "$want" ]]; then
        cat "$T/ra.out" >&2
        fail "agent ${*: -1} (${*:1:$#-1}): exit $rc, expected $want"
    fi
    return 0
}
# The last promotion-score call, without the tool name and "-l reboot".
last_score() {
    tail -n 1 "$SCORES" | sed 's/^crm_master -l reboot //; s/^crm_attribute -p //'
}
score_calls() { grep -c . "$SCORES" || true; }

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
# Registers the agent's daemon for the exit handler, like bm_start's.
adopt() {
    local pids
    pids=$(conf_pids "$CA")
    assert_eq "$(wc -w <<<"$pids")" 1 "mirrord processes for $CA"
    BM_PIDS+=("$pids")
    APID=$pids
}

# The resource: alpha and beta on fresh disks (inconsistent), beta up.
# A slow resync (resync-rate) so that a sync in progress can be watched.
head -c 48 /dev/urandom | base64 >"$T/secret"
chmod 600 "$T/secret"
CA=$(bm_conf ra name=r0 secret-file="$T/secret" ping-timeout=2 resync-rate=64K)
CB=$(bm_conf rb name=r0 secret-file="$T/secret" ping-timeout=2 resync-rate=64K)
bm_disk ra 4M
bm_disk rb 4M
ctla create-md >/dev/null
ctlb create-md >/dev/null
UA=$(bm_nbd_uri ra)
bm_start "$CB" beta; PB=$BM_PID
export OCF_RESKEY_config=$CA

# ---- validate-all --------------------------------------------------------
expect_rc $OCF_SUCCESS validate-all
sed '/^\[resource\]/a bogus-key = 1' "$CA" >"$T/broken.conf"
expect_rc $OCF_ERR_CONFIGURED OCF_RESKEY_config="$T/broken.conf" validate-all
assert_contains "$T/ra.out" 'bogus-key' "validate-all names the bad key"
expect_rc $OCF_ERR_CONFIGURED OCF_RESKEY_config="$T/missing.conf" validate-all
expect_rc $OCF_ERR_CONFIGURED OCF_RESKEY_config=ra.conf validate-all
expect_rc $OCF_ERR_CONFIGURED OCF_RESKEY_config= validate-all
expect_rc $OCF_ERR_CONFIGURED OCF_RESKEY_node=gamma validate-all
# No mirrord on PATH.  The agent also looks where make install put it: a
# copy that looks in an empty directory instead, as if never installed.
NOBIN_PATH=$FAKE:$T/empty:/usr/bin:/bin
if PATH=$NOBIN_PATH:/sbin:/usr/sbin command -v mirrord >/dev/null; then
    fail "a mirrord is installed in /usr/sbin or /sbin: cannot test a missing one"
fi
sed "s|^sbindir=.*|sbindir=$T/empty|" "$AGENT" >"$T/agent-uninstalled"
chmod +x "$T/agent-uninstalled"
AGENT=$T/agent-uninstalled expect_rc $OCF_ERR_INSTALLED PATH="$NOBIN_PATH" validate-all
AGENT=$T/agent-uninstalled expect_rc $OCF_ERR_INSTALLED PATH="$NOBIN_PATH" start
AGENT=$T/agent-uninstalled expect_rc $OCF_ERR_INSTALLED PATH="$NOBIN_PATH" monitor
AGENT=$T/agent-uninstalled expect_rc $OCF_NOT_RUNNING PATH="$NOBIN_PATH" \
    OCF_RESKEY_CRM_meta_interval=0 monitor
expect_rc $OCF_NOT_RUNNING OCF_RESKEY_config="$T/missing.conf" OCF_RESKEY_CRM_meta_interval=0 monitor

# ---- stopped -------------------------------------------------------------
expect_rc $OCF_NOT_RUNNING OCF_RESKEY_CRM_meta_interval=0 monitor  # a probe
expect_rc $OCF_NOT_RUNNING monitor
expect_rc $OCF_SUCCESS stop
expect_rc $OCF_ERR_GENERIC promote
assert_eq "$(score_calls)" 1 "score calls while stopped (the stop's removal)"
assert_eq "$(last_score)" "-D" "stop removes the score"
expect_rc $OCF_SUCCESS notify

# ---- start: secondary, inconsistent: no score ----------------------------
expect_rc $OCF_SUCCESS start
adopt
[[ -z $(find /proc/"$APID"/fd -lname "$T/ra.out" 2>/dev/null) ]] ||
    fail "mirrord holds the agent's output open"
expect_rc $OCF_SUCCESS monitor
expect_rc $OCF_SUCCESS OCF_RESKEY_CRM_meta_interval=0 monitor
assert_eq "$(field "$CA" role)" secondary "role after start"
assert_eq "$(field "$CA" disk)" inconsistent "disk of fresh metadata"
assert_eq "$(last_score)" "-D" "no promotion score for an inconsistent disk"
expect_rc $OCF_SUCCESS start  # idempotent: the same daemon
assert_eq "$(conf_pids "$CA")" "$APID" "mirrord after a second start"

# The agent never forces: an inconsistent disk is not promoted.
expect_rc $OCF_ERR_GENERIC promote
assert_contains "$T/ra.out" 'inconsistent' "promote's exit reason"
expect_rc $OCF_SUCCESS monitor
assert_eq "$(field "$CA" role)" secondary "role after the refused promote"
grep -qF -- '-> primary (promote --force)' "$ALOG" && fail "the agent used promote --force"

# ---- the operator's first promotion: up to date --------------------------
ctla wait-connect --timeout 20
ctla promote --force
ctla wait-sync --timeout 120
expect_rc $OCF_RUNNING_MASTER monitor
assert_eq "$(last_score)" "-v 10000" "score of an up-to-date primary"
expect_rc $OCF_SUCCESS promote  # already primary
expect_rc $OCF_SUCCESS demote
expect_rc $OCF_SUCCESS monitor
assert_eq "$(field "$CA" role)" secondary "role after demote"
assert_eq "$(last_score)" "-v 1000" "score of an up-to-date secondary, peer up to date"
expect_rc $OCF_SUCCESS demote  # already secondary

# The peer throws its data away: while it resyncs from alpha, alpha holds
# the only good copy and scores highest.
alpha_is_syncsource() { [[ $(field "$CA" replication) == syncsource ]]; }
ctlb invalidate
wait_for 20 alpha_is_syncsource
expect_rc $OCF_SUCCESS monitor
assert_eq "$(field "$CA" peer.disk)" inconsistent "beta during its resync"
assert_eq "$(last_score)" "-v 10000" "score of the only up-to-date copy"
# ... and beta, the sync target, is not promotable (its own view).
assert_eq "$(field "$CB" disk)" inconsistent "beta's disk during the resync"
ctla wait-sync --timeout 120

# ---- promote / demote with the peer connected -----------------------------
expect_rc $OCF_SUCCESS promote
expect_rc $OCF_RUNNING_MASTER monitor
assert_eq "$(field "$CA" role)" primary "role after promote"
assert_eq "$(last_score)" "-v 10000" "score after promote"
expect_rc $OCF_SUCCESS demote
expect_rc $OCF_SUCCESS monitor

# A switch-over: promote waits while the peer is still primary (it is being
# demoted, or it died and its link has not timed out yet) and succeeds once
# the peer has stepped down.
ctlb promote
expect_rc $OCF_SUCCESS monitor
assert_eq "$(field "$CA" peer.role)" primary "beta's role seen from alpha"
assert_eq "$(last_score)" "-v 1000" "score of a secondary whose peer is primary"
prc=0
"$AGENT" promote >"$T/promote.out" 2>&1 &
PROMOTE=$!
sleep 2
bm_alive "$PROMOTE" || { cat "$T/promote.out" >&2; fail "promote did not wait for the primary peer"; }
assert_eq "$(field "$CA" role)" secondary "alpha while beta is primary"
ctlb demote
wait "$PROMOTE" || prc=$?
cat "$T/promote.out"
assert_eq "$prc" 0 "promote once the peer stepped down"
assert_contains "$T/promote.out" 'retrying' "promote logged its wait"
expect_rc $OCF_RUNNING_MASTER monitor

# ---- stop of a primary: demotes first, and fails when it cannot ----------
# An NBD client connected to the primary counts as a writer: demote refuses.
"$PYTHON" - "$UA" "$T/writer.ready" <<'PY' &
import nbd, sys, time
h = nbd.NBD()
h.connect_uri(sys.argv[1])
open(sys.argv[2], "w").close()
time.sleep(120)
PY
WRITER=$!
bm_kill_at_exit "$WRITER"
wait_for 10 test -f "$T/writer.ready"
expect_rc $OCF_ERR_GENERIC stop
assert_contains "$T/ra.out" 'demote refused' "stop's exit reason"
expect_rc $OCF_ERR_GENERIC demote
expect_rc $OCF_RUNNING_MASTER monitor
assert_eq "$(conf_pids "$CA")" "$APID" "mirrord after the refused stop"
kill "$WRITER"
wait "$WRITER" 2>/dev/null || true
wait_for 10 ra demote
expect_rc $OCF_SUCCESS promote
expect_rc $OCF_RUNNING_MASTER monitor
expect_rc $OCF_SUCCESS stop
bm_alive "$APID" && fail "mirrord $APID still runs after stop"
bm_forget "$APID"
assert_eq "$(last_score)" "-D" "stop removes the score"
assert_contains "$ALOG" 'role primary -> secondary \(demote\)' "stop demoted the primary"
assert_eq "$(tail -n 1 "$ALOG" | sed 's/.*info: //')" "stopped (exit 0)" "mirrord's clean exit"
expect_rc $OCF_NOT_RUNNING monitor
expect_rc $OCF_NOT_RUNNING OCF_RESKEY_CRM_meta_interval=0 monitor
expect_rc $OCF_SUCCESS stop  # idempotent
assert_eq "$(field "$CB" disk)" uptodate "beta after alpha's stop"

# ---- stop while a killed primary's ublk device is still held --------------
# mirrord killed (kill -9) as primary leaves /dev/ublkbN holding its users'
# I/O and CONTROL.ublk naming it (mirrord(8)).  stop must not report the
# resource stopped then: the cluster would start it again and promote the
# peer beside a device that still serves this node's users.  The device is
# faked under BLKMIRROR_DEV_DIR (this kernel has no ublk).
mkdir -p "$T/dev"
echo 7 >"$T/ra.sock.ublk"
: >"$T/dev/ublkb7"
expect_rc $OCF_ERR_GENERIC BLKMIRROR_DEV_DIR="$T/dev" stop
assert_contains "$T/ra.out" "ublkb7 .*still holds" "stop's exit reason with a held device"
rm "$T/dev/ublkb7"
expect_rc $OCF_SUCCESS BLKMIRROR_DEV_DIR="$T/dev" stop  # the file names a device that is gone
rm -f "$T/ra.sock.ublk"  # stop removes a file that names no device

# ---- a daemon that answers wrongly ----------------------------------------
# A fake on another resource's control socket, answering every request
# with one fixed line.
CG=$(bm_conf rg name=rg)
fake_ctl() {
    rm -f "$T/rg.sock"
    "$PYTHON" - "$T/rg.sock" "$1" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(8)
while True:
    c, _ = s.accept()
    f = c.makefile("rb")
    for line in f:
        c.sendall(sys.argv[2].encode() + b"\n")
    c.close()
PY
    FAKEPID=$!
    bm_kill_at_exit "$FAKEPID"
    wait_for 10 test -S "$T/rg.sock"
}
status_json() {  # ROLE DISK NODE
    printf '{"ok": true, "status": {"resource": "rg", "node": "%s", "role": "%s", "disk": "%s", "connection": "standalone", "replication": "off", "protocol": "sync", "size_bytes": 1048576, "out_of_sync_bytes": 0, "resync": null, "inflight": {"requests": 0, "bytes": 0, "oldest_ms": 0}, "peer": {"node": "beta", "role": null, "disk": null}, "device": "x"}}' "$3" "$1" "$2"
}
fake_done() { kill "$FAKEPID"; wait "$FAKEPID" 2>/dev/null || true; }

fake_ctl "$(status_json secondary uptodate alpha)"  # the fake itself is sane
expect_rc $OCF_SUCCESS OCF_RESKEY_config="$CG" monitor
assert_eq "$(last_score)" "-v 1000" "score of the fake secondary"
fake_done
fake_ctl "$(status_json secondary failed alpha)"
expect_rc $OCF_ERR_GENERIC OCF_RESKEY_config="$CG" monitor
assert_contains "$T/ra.out" 'disk is failed' "exit reason of a failed disk"
assert_eq "$(last_score)" "-D" "no score for a failed disk"
fake_done
fake_ctl "$(status_json primary diskless alpha)"
expect_rc $OCF_ERR_GENERIC OCF_RESKEY_config="$CG" monitor
fake_done
fake_ctl "$(status_json chief uptodate alpha)"
expect_rc $OCF_ERR_GENERIC OCF_RESKEY_config="$CG" monitor
fake_done
fake_ctl "$(status_json secondary uptodate beta)"
expect_rc $OCF_ERR_GENERIC OCF_RESKEY_config="$CG" monitor
assert_contains "$T/ra.out" "plays node 'beta'" "exit reason of another node's daemon"
fake_done
fake_ctl '{"ok": true}'
expect_rc $OCF_ERR_GENERIC OCF_RESKEY_config="$CG" monitor
fake_done
fake_ctl 'this is not JSON'
expect_rc $OCF_ERR_GENERIC OCF_RESKEY_config="$CG" monitor
expect_rc $OCF_ERR_GENERIC OCF_RESKEY_config="$CG" OCF_RESKEY_CRM_meta_interval=0 monitor
fake_done
# Nothing listens any more (a stale socket file): not running.
test -S "$T/rg.sock" || fail "the fake's socket file is gone"
expect_rc $OCF_NOT_RUNNING OCF_RESKEY_config="$CG" monitor

# ---- without cluster tools, the actions work the same ---------------------
: >"$SCORES"
expect_rc $OCF_SUCCESS HA_SBIN_DIR="$T/empty" PATH="$BM_BIN:/usr/bin:/bin" start
adopt
expect_rc $OCF_SUCCESS HA_SBIN_DIR="$T/empty" PATH="$BM_BIN:/usr/bin:/bin" monitor
assert_eq "$(score_calls)" 0 "score calls without cluster tools"
# Cluster tools that fail (installed, but no cluster): logged, no failure.
mkdir -p "$T/failing-sbin"
printf '#!/bin/sh\necho "crm_master: could not connect to the CIB" >&2\nexit 102\n' \
    >"$T/failing-sbin/crm_master"
chmod +x "$T/failing-sbin/crm_master"
expect_rc $OCF_SUCCESS HA_SBIN_DIR="$T/failing-sbin" PATH="$T/failing-sbin:$BM_BIN:/usr/bin:/bin" monitor
assert_contains "$T/ra.out" 'could not change the promotion score' "the failed score call is logged"

# ---- a daemon that runs but does not answer: not "not running" ------------
# Its control socket removed under it: mirrorctl finds no daemon, yet the
# process runs (as a hung one would).  monitor fails, start refuses to start
# a second one, stop still stops it.
rm "$T/ra.sock"
expect_rc $OCF_ERR_GENERIC monitor
assert_contains "$T/ra.out" "pid $APID\\) runs but does not answer" "exit reason of a mute daemon"
expect_rc $OCF_ERR_GENERIC OCF_RESKEY_CRM_meta_interval=0 monitor
expect_rc $OCF_ERR_GENERIC start
assert_eq "$(conf_pids "$CA")" "$APID" "mirrord after start on a mute daemon"
expect_rc $OCF_SUCCESS stop
bm_alive "$APID" && fail "mirrord $APID still runs after stop"
bm_forget "$APID"
expect_rc $OCF_NOT_RUNNING monitor

# ---- stop with a ublk device left: the next start would resume it ---------
# mirrord names its ublk device in CONTROL.ublk while the device exists; a
# device left after mirrord stopped (held open, or mirrord killed) would be
# re-attached by the next start as primary.  This host has no ublk: a fake
# state file and fake device nodes (BLKMIRROR_DEV_DIR) test the agent's logic.
mkdir -p "$T/dev"
echo 4242 >"$T/ra.sock.ublk"
: >"$T/dev/ublkb4242"
# Stopped already: the device alone fails the stop.
expect_rc $OCF_ERR_GENERIC BLKMIRROR_DEV_DIR="$T/dev" stop
assert_contains "$T/ra.out" "ublkb4242 of r0 is left after mirrord stopped" "stop's exit reason"
test -f "$T/ra.sock.ublk" || fail "stop removed the state file of a device that exists"
# Running: mirrord is stopped, and the stop still fails.
expect_rc $OCF_SUCCESS BLKMIRROR_DEV_DIR="$T/dev" start
adopt
expect_rc $OCF_ERR_GENERIC BLKMIRROR_DEV_DIR="$T/dev" stop
bm_alive "$APID" && fail "mirrord $APID still runs after stop"
bm_forget "$APID"
assert_contains "$T/ra.out" "ublkb4242 of r0 is left" "stop's exit reason, after stopping mirrord"
# Only the char device left: the same.
rm "$T/dev/ublkb4242"
: >"$T/dev/ublkc4242"
expect_rc $OCF_ERR_GENERIC BLKMIRROR_DEV_DIR="$T/dev" stop
# The device gone: the file is stale; stop removes it and succeeds.
rm "$T/dev/ublkc4242"
expect_rc $OCF_SUCCESS BLKMIRROR_DEV_DIR="$T/dev" stop
test -e "$T/ra.sock.ublk" && fail "stop left the state file of a device that is gone"
# A file that names nothing: removed too.
echo garbage >"$T/ra.sock.ublk"
expect_rc $OCF_SUCCESS BLKMIRROR_DEV_DIR="$T/dev" stop
test -e "$T/ra.sock.ublk" && fail "stop left a state file that names nothing"
expect_rc $OCF_NOT_RUNNING monitor

bm_stop "$PB"
