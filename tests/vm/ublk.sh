# tests/vm/ublk.sh: helpers for the ublk tests in the VM (sourced by the
# guest half of tests/vm/test-vm-ublk*.sh, after functions.sh).

# The guest kernel must offer ublk; a test never skips.
ublk_check_kernel() {
    [[ -c /dev/ublk-control ]] || fail "no /dev/ublk-control in the VM (ublk_drv not loaded?)"
}

# No /dev/ublkb* at all (the tests own every ublk device of the VM).
ublk_assert_no_device() {
    local d
    for d in /dev/ublkb*; do
        [[ -e $d ]] && fail "$d exists ($1)"
    done
    return 0
}

# ublk_wait_progress FILE N SECS: FILE (one line per acknowledged
# write) grows by N lines within SECS.
ublk_wait_progress() {
    local f=$1 n=$2 secs=$3 base
    base=$(wc -l <"$f")
    wait_for "$secs" sh -c "[ \$(wc -l < '$f') -ge $((base + n)) ]"
}

# Keeps the daemons' logs: copied to the VM's writable share at exit, so
# that the host can show them ($VM_OUT/logs after vm_run).
ublk_keep_logs() {
    bm_on_exit ublk_copy_logs
}
ublk_copy_logs() {
    [[ -n ${BM_VM_OUT:-} && -d $BM_VM_OUT ]] || return 0
    mkdir -p "$BM_VM_OUT/logs"
    cp "$T"/*.log "$BM_VM_OUT/logs/" 2>/dev/null || true
    dmesg >"$BM_VM_OUT/logs/dmesg.txt" 2>/dev/null || true
}

# ublk_mount DEV DIR: mounts DEV on DIR (created); at exit it is detached
# lazily, which works even when the device waits for a dead daemon.
ublk_mount() {
    mkdir -p "$2"
    mount "$1" "$2" || fail "cannot mount $1 on $2"
    bm_on_exit ublk_lazy_umount "$2"
}
ublk_lazy_umount() {
    if mountpoint -q "$1"; then umount -l "$1"; fi
}
ublk_umount() {
    umount "$1" || fail "cannot unmount $1"
}

UBLK_BG=()   # background writers, stopped by ublk_stop_bg (killed at exit)

# ublk_writer DIR LOG: in the background, writes files DIR/w0, w1...
# (64 KiB of random data each, fsync'd) and appends "SHA256  wN" to LOG
# once each write is acknowledged.
ublk_writer() {
    local dir=$1 log=$2
    : >"$log"
    (
        cd "$dir" || exit 1
        i=0
        while :; do
            dd if=/dev/urandom of="w$i" bs=16k count=4 conv=fsync status=none || exit 1
            sha256sum "w$i" >>"$log" || exit 1
            i=$((i + 1))
        done
    ) &
    UBLK_BG+=($!)
    bm_kill_at_exit $!
}

# ublk_fio_load DIR NAME: fio in the background on a file of DIR: direct
# random writes with an fsync every 16 (FLUSH requests), until stopped.
ublk_fio_load() {
    fio --name="$2" --directory="$1" --rw=randwrite --bs=4k-32k --size=16M \
        --ioengine=libaio --direct=1 --iodepth=8 --fsync=16 --time_based --runtime=3600 \
        --output="$T/$2.fio" >/dev/null 2>&1 &
    UBLK_BG+=($!)
    bm_kill_at_exit $!
}

# Stops the background writers (they must still be alive: none failed).
ublk_stop_bg() {
    local p
    for p in "${UBLK_BG[@]}"; do
        bm_alive "$p" || fail "background writer $p died (an I/O error?)"
        kill -TERM "$p"
    done
    for p in "${UBLK_BG[@]}"; do wait "$p" 2>/dev/null || true; done
    UBLK_BG=()
}

# ublk_check_acked DIR LOG [N]: the first N (default: all) files of LOG
# read back from DIR with their logged checksum.
ublk_check_acked() {
    local dir=$1 log=$2 n=${3:-}
    [[ -n $n ]] || n=$(wc -l <"$log")
    ((n > 0)) || fail "no acknowledged write to check"
    (cd "$dir" && head -n "$n" "$log" | sha256sum --quiet -c -) ||
        fail "an acknowledged file is missing or differs in $dir"
}
