#!/usr/bin/env bash
# A primary killed with SIGKILL in the middle of random writes: the metadata
# it leaves (dirty bitmap plus open activity extents, as show-md reports it)
# covers every block that reached the disk, and says "primary" (it did not
# stop cleanly).  The restarted daemon reports the crashed primary and the
# same out-of-sync bytes, and a clean stop then leaves no open extent and no
# "primary" flag.  Four runs: a small activity map (al-extents = 8, so
# extents are evicted during the run) killed at two moments; the defaults
# (257 extents of 4 MiB: the whole disk stays hot); and the default count of
# small extents (257 x 64 KiB, a 16 MiB hot set).
# timeout: 240
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
requires fio
bm_setup

# writing CONF: some write has reached the daemon.
writing() { (($(bm_status_field "$1" .out_of_sync_bytes) > 0)); }

# md FIELD: one field of the last show-md.
md() { bm_json ".$1" <"$T/md.json"; }

# crash_run DELAY [CONF-ARGS...]: one run on a fresh 512 MiB disk, killed
# DELAY seconds after the first write reached the daemon.
crash_run() {
    local delay=$1 conf fio_pid oos status_oos log seen
    shift
    echo "--- crash run: kill after ${delay}s, config: ${*:-defaults}"
    conf=$(bm_conf r0 "$@")
    rm -f "$T/r0.img"
    bm_disk r0 512M
    "$MIRRORCTL" -c "$conf" create-md >/dev/null
    bm_start "$conf"
    "$MIRRORCTL" -c "$conf" promote --force

    fio --name=crash --ioengine=nbd --uri="$(bm_nbd_uri r0)" --rw=randwrite --bs=4k \
        --iodepth=32 --refill_buffers --randrepeat=0 --time_based --runtime=30 \
        >"$T/fio.out" 2>&1 &
    fio_pid=$!
    wait_for 20 writing "$conf"
    sleep "$delay"
    bm_alive "$fio_pid" || fail "fio stopped before the kill: $(tail -n 5 "$T/fio.out")"
    bm_kill9 "$BM_PID"
    wait "$fio_pid" || true   # fio fails once its server is gone

    "$MIRRORCTL" -c "$conf" show-md --json >"$T/md.json"
    "$PYTHON" "$BM_SRC/tests/integration/helpers/oos_cover.py" "$T/r0.img" "$T/md.json"
    assert_contains "$(md flags)" '"primary"' "show-md flags after the kill"
    oos=$(md out_of_sync_bytes)
    cp "$T/md.json" "$T/md-crashed.json"

    # Restart: the crash is noticed and the out-of-sync set carried over.
    log=$T/r0-alpha.log
    seen=$(wc -l <"$log")
    bm_start "$conf"
    assert_contains "$(tail -n +$((seen + 1)) "$log")" 'crashed primary' "log of the restart after the kill"
    status_oos=$(bm_status_field "$conf" .out_of_sync_bytes)
    assert_eq "$status_oos" "$oos" "out_of_sync_bytes after the restart (show-md said $oos)"

    # Clean stop: no open extent, not primary, the same out-of-sync ranges.
    bm_stop "$BM_PID"
    "$MIRRORCTL" -c "$conf" show-md --json >"$T/md.json"
    assert_eq "$(md active_extents)" 0 "active_extents after a clean stop"
    [[ $(md flags) != *'"primary"'* ]] || fail "flags after a clean stop: $(md flags)"
    assert_eq "$(md out_of_sync)" "$(bm_json .out_of_sync <"$T/md-crashed.json")" \
        "out_of_sync ranges after restart and clean stop"
}

crash_run 3 al-extents=8
crash_run 1.2 al-extents=8
crash_run 2
crash_run 2.5 al-extent-size=64K
