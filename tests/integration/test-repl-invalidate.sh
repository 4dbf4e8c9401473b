#!/usr/bin/env bash
# invalidate throws the local data away, so it needs a peer that holds an
# up-to-date copy: refused (exit 1, saying why, nothing changed) while
# disconnected and while the peer's own disk is being resynced; --force
# overrides; with a connected, up-to-date peer it resyncs this node.
# timeout: 120
source "$(dirname "$0")/functions.sh"
source "$(dirname "$0")/repl.sh"
bm_setup
# A slow resync, so that one can be caught running.
bm_pair 8M resync-rate=1M
bm_pair_initial_sync
ctla demote

# refused CTL PATTERN: invalidate on that node exits 1 with PATTERN and
# leaves its disk up to date.
refused() {
    local rc=0 conf
    "$@" invalidate 2>"$T/err" || rc=$?
    assert_eq "$rc" 1 "exit code of $1 invalidate"
    conf=$CA; [[ $1 == ctlb ]] && conf=$CB
    assert_eq "$(field "$conf" disk)" uptodate "$1's disk after a refused invalidate"
}

# Disconnected: no up-to-date copy would be left.
ctlb disconnect
refused ctlb
assert_contains "$T/err" "the peer is not connected.*invalidate --force" "reason while disconnected"
ctlb connect
ctlb wait-connect --timeout 20

# The success path: beta resyncs from alpha.
ctlb invalidate || fail "invalidate refused with an up-to-date peer"
assert_eq "$(field "$CB" disk)" inconsistent "beta right after invalidate"
# While beta is the sync target, alpha is the only good copy.
alpha_is_source() { [[ $(field "$CA" replication) == syncsource ]]; }
wait_for 20 alpha_is_source
refused ctla
assert_contains "$T/err" "the peer's disk is inconsistent, not up to date" "reason while the peer resyncs"
ctla wait-sync --timeout 60 || fail "no resync after invalidate"
ctlb wait-sync --timeout 10

# --force: alone, beta may still throw its data away.
ctlb disconnect
ctlb invalidate --force || fail "invalidate --force refused"
assert_eq "$(field "$CB" disk)" inconsistent "beta after invalidate --force"
ctlb wait-sync --timeout 60 || fail "no resync after invalidate --force"
bm_stop "$PA"; bm_stop "$PB"
assert_disks_equal
