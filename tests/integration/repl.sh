# Two nodes of one resource on this machine, talking over loopback.
# Sourced after functions.sh and bm_setup.  After bm_pair:
#   CA, CB  configs of alpha and beta     UA, UB  their NBD URIs
#   PA, PB  their daemons' pids           ctla/ctlb  mirrorctl for each
#   SIZE    bytes of data (the part of each backing file to compare)

ctla() { "$MIRRORCTL" -c "$CA" --node alpha "$@"; }
ctlb() { "$MIRRORCTL" -c "$CB" --node beta "$@"; }

# bm_pair DISK_SIZE [key=value ...]: configs, metadata, both daemons up.
bm_pair() {
    local size=$1; shift
    head -c 48 /dev/urandom | base64 >"$T/secret"
    chmod 600 "$T/secret"
    CA=$(bm_conf ra name=r0 secret-file="$T/secret" ping-timeout=2 "$@")
    CB=$(bm_conf rb name=r0 secret-file="$T/secret" ping-timeout=2 "$@")
    bm_disk ra "$size"
    bm_disk rb "$size"
    ctla create-md >/dev/null
    ctlb create-md >/dev/null
    UA=$(bm_nbd_uri ra)
    UB=$(bm_nbd_uri rb)
    bm_start "$CA" alpha; PA=$BM_PID
    bm_start "$CB" beta; PB=$BM_PID
    SIZE=$(bm_status_field "$CA" size_bytes)
}

# The initial set-up: alpha's data is the reference, beta gets a full sync.
bm_pair_initial_sync() {
    ctla wait-connect --timeout 20
    ctla promote --force
    ctla wait-sync --timeout 60
}

# Data areas of both backing files are equal.
assert_disks_equal() {
    cmp -n "$SIZE" "$T/ra.img" "$T/rb.img" || fail "${1:-disks differ}"
}

field() { bm_status_field "$1" "$2"; }
