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

# bm_netns_pair: network namespaces $NS-alpha and $NS-beta (removed at
# exit) joined by the veth pair $NS-a (10.213.0.1) / $NS-b (10.213.0.2);
# from now on mirrord runs in its node's namespace (ip netns exec execs
# it: the pid is mirrord's); control and export sockets stay files in $T.
# Call after bm_setup, before bm_pair, and give bm_pair the addresses:
# alpha.address=10.213.0.1:PORT beta.address=10.213.0.2:PORT.
bm_netns_pair() {
    NS=bmn$$
    ip netns add "$NS-alpha"; bm_on_exit ip netns del "$NS-alpha"
    ip netns add "$NS-beta"; bm_on_exit ip netns del "$NS-beta"
    ip link add "$NS-a" type veth peer name "$NS-b"
    ip link set "$NS-a" netns "$NS-alpha"
    ip link set "$NS-b" netns "$NS-beta"
    for n in alpha beta; do ip -n "$NS-$n" link set lo up; done
    ip -n "$NS-alpha" addr add 10.213.0.1/24 dev "$NS-a"; ip -n "$NS-alpha" link set "$NS-a" up
    ip -n "$NS-beta" addr add 10.213.0.2/24 dev "$NS-b"; ip -n "$NS-beta" link set "$NS-b" up
    local real=$MIRRORD
    cat >"$T/mirrord-ns" <<SH
#!/bin/bash
node=alpha; prev=
for a; do [ "\$prev" = --node ] && node=\$a; prev=\$a; done
exec ip netns exec "$NS-\$node" "$real" "\$@"
SH
    chmod +x "$T/mirrord-ns"
    MIRRORD=$T/mirrord-ns
}

# bm_put_block URI BYTE OFFSET: 4 KiB of BYTE at OFFSET, acknowledged and
# flushed by the node behind URI.
bm_put_block() {
    "$PYTHON" - "$@" <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(sys.argv[2].encode() * 4096, int(sys.argv[3]))
h.flush(); h.shutdown()
PY
}

# bm_block_byte FILE|URI OFFSET: the byte the 4 KiB at OFFSET are all made
# of (read from a disk image, or through an NBD URI), or "mixed".
bm_block_byte() {
    "$PYTHON" - "$@" <<'PY'
import sys
src, off = sys.argv[1], int(sys.argv[2])
if "://" in src:
    import nbd
    h = nbd.NBD(); h.connect_uri(src)
    b = h.pread(4096, off)
else:
    with open(src, "rb") as f:
        f.seek(off); b = f.read(4096)
print(chr(b[0]) if b == b[:1] * 4096 and 32 < b[0] < 127 else "mixed")
PY
}
