#!/usr/bin/env bash
# A clean stop (SIGTERM: exit 0 within 10 s) while NBD clients are still
# connected: idle ones, one that does not read its replies, and one that
# stopped in the middle of sending a WRITE payload.  The half-received WRITE
# never reaches the disk.
# timeout: 90
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
requires "$PYTHON" -c 'import nbd'
bm_setup

conf=$(bm_conf r0)
bm_disk r0 64M
"$MIRRORCTL" -c "$conf" create-md >/dev/null
uri=$(bm_nbd_uri r0)

# start_primary: the daemon, promoted, and its PID in BM_PID.
start_primary() {
    bm_start "$conf" alpha
    "$MIRRORCTL" -c "$conf" promote --force >/dev/null
}

# client NAME PYTHON-CODE: a client in the background that connects (h),
# runs the code, touches $T/NAME.ready and then waits, connected, until it
# is killed; returns once it is ready.
client() {
    local name=$1 code=$2
    READY=$T/$1.ready "$PYTHON" -c '
import nbd, os, socket, struct, sys, time
h = nbd.NBD()
h.connect_uri(sys.argv[1])
'"$code"'
open(os.environ["READY"], "w").close()
time.sleep(60)' "$uri" &
    CLIENT=$!
    bm_kill_at_exit "$CLIENT"
    wait_for 20 test -f "$T/$name.ready"
}

# Idle connections, read-write and read-only.
bm_start "$conf" alpha
client ro 'assert h.is_read_only()'
ro=$CLIENT
"$MIRRORCTL" -c "$conf" promote --force >/dev/null
client rw 'h.pwrite(b"\x11" * 4096, 0)'
rw=$CLIENT
bm_stop "$BM_PID"
kill "$ro" "$rw"

# A client that sends 32 reads of 1 MiB and never reads the replies.
start_primary
client noread '
cookies = [h.aio_pread(nbd.Buffer(1 << 20), i << 20) for i in range(32)]
while h.aio_get_direction() & nbd.AIO_DIRECTION_WRITE:
    h.aio_notify_write()
time.sleep(0.5)'
bm_stop "$BM_PID"
kill "$CLIENT"

# A client in the middle of a 64 KiB WRITE at 1 MiB: header and 1000 bytes,
# then, once the daemon waits for the rest, 1000 more; then nothing.
start_primary
client halfwrite '
s = socket.socket(fileno=h.aio_get_fd())
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, 1, 1 << 20, 65536) + b"\x77" * 1000)
time.sleep(0.5)
s.sendall(b"\x77" * 1000)
time.sleep(0.5)'
bm_stop "$BM_PID"
kill "$CLIENT"
cmp -n 65536 -i $((1 << 20)):0 "$T/r0.img" /dev/zero || fail "a half-received WRITE reached the disk"
assert_eq "$(od -An -tx1 -N1 "$T/r0.img" | tr -d ' ')" 11 "the first write reached the disk"
