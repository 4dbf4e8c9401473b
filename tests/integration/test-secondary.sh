#!/usr/bin/env bash
# Roles through the NBD export: a secondary serves reads and refuses writes
# (EPERM from the server itself, not only the read-only flag); promote needs
# --force on inconsistent data; demote is refused while a writer is
# connected and works once it has gone; a clean restart comes back
# secondary with an up-to-date disk that a plain promote accepts.
# timeout: 90
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
requires qemu-io
requires "$PYTHON" -c 'import nbd'
bm_setup

bm_single r0 64M
conf=$BM_CONF
uri=$(bm_nbd_uri r0)

state() { echo "$(bm_status_field "$conf" .role)/$(bm_status_field "$conf" .disk)"; }
# A 4 KiB write at offset 0 with libnbd's own checks off, so that the server
# answers it: prints ok or the error name.
try_write() {
    bm_nbdsh -c "
h.set_strict_mode(0)
h.connect_uri('$uri')
try:
    h.pwrite(b'\\xaa' * 4096, 0)
    print('ok')
except nbd.Error as e:
    print(e.errno)"
}
read_only() { bm_nbdsh -u "$uri" -c 'print(h.is_read_only())'; }

# Fresh metadata: secondary, inconsistent, read-only.
assert_eq "$(state)" secondary/inconsistent "state after create-md"
assert_eq "$(read_only)" True "read-only flag of a secondary's export"
expect_fail qemu-io -f raw -c 'write -P 0x55 0 4k' "$uri"
assert_eq "$(try_write)" EPERM "a write sent to a secondary"
qemu-io -f raw -r -c 'read -P 0 0 64k' "$uri" >/dev/null

rc=0
"$MIRRORCTL" -c "$conf" promote 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "exit code of promote on inconsistent data"
assert_contains "$T/err" "not known to be up to date" "promote's reason"
assert_eq "$(state)" secondary/inconsistent "state after the refused promote"

"$MIRRORCTL" -c "$conf" promote --force
assert_eq "$(state)" primary/uptodate "state after promote --force"
assert_eq "$(read_only)" False "read-only flag of a primary's export"
qemu-io -f raw -c 'write -P 0x55 0 64k' "$uri" >/dev/null
qemu-io -f raw -r -c 'read -P 0x55 0 64k' "$uri" >/dev/null
assert_eq "$(try_write)" ok "a write sent to a primary"

# A writer connected: demote refused.  It tells us when it is connected and
# leaves (cleanly, with NBD_CMD_DISC) when told to.
bm_nbdsh -u "$uri" -c "
import os, time
open('$T/writer.up', 'w').close()
while not os.path.exists('$T/writer.go'):
    time.sleep(0.05)" &
writer=$!
wait_for 10 test -e "$T/writer.up"
rc=0
"$MIRRORCTL" -c "$conf" demote 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "exit code of demote with a writer connected"
assert_contains "$T/err" "device is open for writing" "demote's reason"
assert_eq "$(state)" primary/uptodate "state after the refused demote"
touch "$T/writer.go"
rc=0
wait "$writer" || rc=$?
assert_eq "$rc" 0 "exit code of the writer"
# The daemon sees the disconnect a moment after the client has gone.
wait_for 5 "$MIRRORCTL" -c "$conf" demote
assert_eq "$(state)" secondary/uptodate "state after demote"
assert_eq "$(read_only)" True "read-only flag after demote"
expect_fail qemu-io -f raw -c 'write -P 0x66 0 4k' "$uri"
assert_eq "$(try_write)" EPERM "a write sent after demote"
qemu-io -f raw -r -c 'read -P 0xaa 0 4k' -c 'read -P 0x55 4k 60k' "$uri" >/dev/null

# Clean stop and restart: secondary, up to date, and a plain promote works.
bm_stop "$BM_PID"
bm_start "$conf"
assert_eq "$(state)" secondary/uptodate "state after a clean restart"
"$MIRRORCTL" -c "$conf" promote
assert_eq "$(state)" primary/uptodate "state after a plain promote"
assert_eq "$(try_write)" ok "a write after the plain promote"
bm_stop "$BM_PID"
