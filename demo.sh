#!/usr/bin/env bash
# make demo: one blkmirror node on this machine, end to end, with real
# clients.  Everything it creates lives in a temporary directory.
set -euo pipefail
B=${1:-build}
B=$(cd "$B" && pwd)
D=$(mktemp -d /tmp/blkmirror-demo.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "A 256 MiB file-backed disk and its configuration"
truncate -s 256M "$D/r0.img"
cat > "$D/r0.conf" <<CONF
[resource]
name = r0
protocol = sync
frontend = export
disk = $D/r0.img
meta-disk = internal
control = $D/r0.sock
export-listen = unix:$D/r0.nbd

[node alpha]
address = 127.0.0.1:7789

[node beta]
address = 127.0.0.1:7790
CONF
cat "$D/r0.conf"
ctl() { "$B/mirrorctl" -c "$D/r0.conf" --node alpha "$@"; }
URI="nbd+unix:///r0?socket=$D/r0.nbd"

say "Metadata: superblock, activity map and dirty bitmap at the end of the disk"
run ctl create-md

say "Start mirrord (foreground process in the background of this script)"
"$B/mirrord" -c "$D/r0.conf" --node alpha --foreground 2> "$D/mirrord.log" &
pid=$!
for _ in $(seq 100); do ctl status >/dev/null 2>&1 && break; sleep 0.1; done
run ctl status

say "A fresh node is secondary and inconsistent: writes are refused"
run qemu-io -f raw -c 'write -P 0x5a 0 64k' "$URI" || echo "(refused, as expected)"

say "Initial set-up: promote --force makes this node's data the reference"
run ctl promote --force

say "Write and read back through the NBD export with qemu-io"
run qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 4M 64k' -c flush \
	-c 'read -P 0x5a 0 1M' -c 'read -P 0xa5 4M 64k' "$URI"

say "Status: every written block is out of sync (there is no peer yet)"
run ctl status
run ctl status --json

say "Stop cleanly (SIGTERM): the bitmap is written, the activity map emptied"
kill "$pid"
wait "$pid" && echo "mirrord exited 0"
pid=
run ctl show-md
say "mirrord's log"
cat "$D/mirrord.log"
