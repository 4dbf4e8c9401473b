#!/usr/bin/env bash
# make demo: two blkmirror nodes of one resource on this machine, talking over
# loopback, end to end with real clients: initial sync, writes through the
# primary, the primary killed with -9, fail-over to the secondary, the old
# primary back as sync target, and both disks equal at the end.  Everything
# it creates lives in a temporary directory, removed on exit.
#
# Then a second part, demo/vm-guest.sh: the same pair with frontend = ublk,
# /dev/ublkbN mounted on the primary, a crash, and the fail-over with
# mirrorctl promote.  It needs a kernel with ublk: the host's when it has
# one (and this runs as root), otherwise a VM with Debian's 6.12 kernel
# (tests/vm/lib.sh), whose output is shown as the guest prints it.
set -euo pipefail
B=${1:-build}
B=$(cd "$B" && pwd)
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ -x $B/mirrord && -x $B/mirrorctl ]] || { echo "demo: no mirrord/mirrorctl in $B: run make" >&2; exit 1; }
PATH=$B:$PATH
source "$(dirname "$0")/demo/lib.sh"
[[ -x $PY ]] || PY=python3
D=$(mktemp -d /tmp/blkmirror-demo.XXXXXX)
cd "$D"

declare -A PID=()                      # node -> pid of its mirrord
VMPID=                                 # the subshell running vm_run
cleanup() {
	local rc=$? n i log alive
	set +e
	[[ -n $VMPID ]] && stop_vm
	for n in "${!PID[@]}"; do kill -TERM "${PID[$n]}" 2>/dev/null; done
	for ((i = 0; i < 50; i++)); do
		alive=0
		for n in "${!PID[@]}"; do kill -0 "${PID[$n]}" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for n in "${!PID[@]}"; do kill -KILL "${PID[$n]}" 2>/dev/null; wait "${PID[$n]}" 2>/dev/null; done
	if ((rc != 0)); then
		for log in "$D"/*.log; do
			[[ -s $log ]] || continue
			printf '\n--- %s (last 20 lines)\n' "${log##*/}" >&2
			tail -n 20 "$log" >&2
		done
		printf '\n\033[1;31mThe demo FAILED (exit status %s).\033[0m\n' "$rc" >&2
	fi
	cd / && rm -rf "$D"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# expect NODE EXPR VALUE: the demo fails unless the field has that value.
expect() {
	local got
	got=$(field "$1" "$2")
	[[ $got == "$3" ]] || die "$1: $2 is '$got', expected '$3'"
}
# poll SECS CMD...: run CMD every 0.1 s until it succeeds (0) or SECS pass (1).
poll() {
	local end=$((SECONDS + $1)); shift
	until "$@"; do
		((SECONDS < end)) || return 1
		sleep 0.1
	done
}
# wait_until SECS WHAT CMD...: poll, and the demo fails on a timeout.
wait_until() {
	local secs=$1 what=$2; shift 2
	poll "$secs" "$@" || die "timed out after ${secs}s waiting until $what"
}
is() { [[ $(field "$1" "$2") == "$3" ]]; }
isnt() { [[ $(field "$1" "$2") != "$3" ]]; }
# start NODE [LOG]: mirrord in the background, logging to LOG (default
# NODE.log); returns once its control socket answers.
start() {
	local log=${2:-$1.log}
	mirrord -c "$1.conf" --node "$1" --foreground </dev/null 2>"$log" &
	PID[$1]=$!
	printf '$ mirrord -c %s.conf --node %s --foreground 2>%s &    # pid %s\n' \
		"$1" "$1" "$log" "${PID[$1]}"
	wait_until 20 "mirrord $1 answers on its control socket" answers "$1"
}
answers() {
	kill -0 "${PID[$1]}" 2>/dev/null || { wait "${PID[$1]}" || true; die "mirrord $1 exited early"; }
	mirrorctl -c "$1.conf" --node "$1" status >/dev/null 2>&1
}
# stop NODE: SIGTERM, mirrord must exit 0 within 10 s.
stop() {
	local rc=0
	run kill -TERM "${PID[$1]}"
	wait_until 10 "mirrord $1 exits after SIGTERM" gone "${PID[$1]}"
	wait "${PID[$1]}" || rc=$?
	unset "PID[$1]"
	[[ $rc == 0 ]] || die "mirrord $1 exited with status $rc after SIGTERM"
	echo "mirrord $1 exited 0"
}
gone() { ! kill -0 "$1" 2>/dev/null; }
# True once the resync is some way in, or over.
resync_under_way() {
	[[ $(field beta disk) == uptodate ]] && return 0
	[[ $(field beta replication) == synctarget ]] &&
	"$PY" -c 'import sys; sys.exit(float(sys.argv[1]) < 15)' "$(field beta resync.done_percent)"
}

# Two free TCP ports on loopback for the replication links.
read -r PORT_A PORT_B < <("$PY" -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')

say "1. Two nodes on one machine: two 256 MiB disks, two configs, one shared secret"
note "working in $D"
run truncate -s 256M alpha.img beta.img
head -c 48 /dev/urandom | base64 > secret
run chmod 600 secret
for n in alpha beta; do
	cat > "$n.conf" <<CONF
[resource]
name = r0
protocol = sync
frontend = export
disk = $D/$n.img
meta-disk = internal
control = $D/$n.sock
export-listen = unix:$D/$n.nbd
secret-file = $D/secret
resync-rate = 64M

[node alpha]
address = 127.0.0.1:$PORT_A

[node beta]
address = 127.0.0.1:$PORT_B
CONF
done
run cat alpha.conf
note "beta.conf differs only in its disk, control socket and NBD socket:"
run diff alpha.conf beta.conf || true
run mirrorctl -c alpha.conf --node alpha create-md
run mirrorctl -c beta.conf --node beta create-md

say "2. Start both daemons: they connect and authenticate; neither has good data yet"
start alpha
start beta
wait_until 20 "alpha and beta are connected" is alpha connection connected
wait_until 20 "beta sees alpha" is beta connection connected
run mirrorctl -c alpha.conf --node alpha status
run mirrorctl -c beta.conf --node beta status
expect alpha disk inconsistent
expect beta disk inconsistent

say "3. Initial set-up: promote --force makes alpha's data the reference; beta gets a full resync"
run mirrorctl -c alpha.conf --node alpha promote --force
note "resync-rate = 64M: 256 MiB take about 4 seconds"
wait_until 20 "the resync is under way" resync_under_way
if [[ $(field beta replication) == synctarget ]]; then
	run mirrorctl -c alpha.conf --node alpha status
	run mirrorctl -c beta.conf --node beta status
else
	note "the resync finished before it could be shown"
fi
run mirrorctl -c alpha.conf --node alpha wait-sync --timeout 30
expect beta disk uptodate

UA="nbd+unix:///r0?socket=alpha.nbd"
UB="nbd+unix:///r0?socket=beta.nbd"
say "4. Write through alpha's NBD export: with protocol = sync each write is on both disks when acknowledged"
run qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 4M 64k' \
	-c 'write -P 0x3c 100M 256k' -c 'write -P 0xc3 200M 1M' -c flush "$UA"
run mirrorctl -c alpha.conf --node alpha status
run mirrorctl -c beta.conf --node beta status
expect alpha out_of_sync_bytes 0
expect beta peer.role primary

say "5. The primary dies: kill -9 alpha"
printf '$ kill -KILL %s\n' "${PID[alpha]}"
{ kill -KILL "${PID[alpha]}" && wait "${PID[alpha]}"; } 2>/dev/null || true   # no "Killed" job notice
unset "PID[alpha]"
wait_until 15 "beta notices that alpha is gone" isnt beta connection connected
run mirrorctl -c beta.conf --node beta status
note "beta's data is up to date: no --force needed"
run mirrorctl -c beta.conf --node beta promote
expect beta role primary
note "every write alpha acknowledged is on beta"
run qemu-io -f raw -c 'read -P 0x5a 0 1M' -c 'read -P 0xa5 4M 64k' \
	-c 'read -P 0x3c 100M 256k' -c 'read -P 0xc3 200M 1M' "$UB"
note "the new primary carries on alone: this block is out of sync with alpha"
run qemu-io -f raw -c 'write -P 0x77 8M 128k' -c flush "$UB"

say "6. Alpha comes back: as secondary, and resyncs as target from beta"
start alpha alpha-restart.log
# (30 s: reconnecting after a crash has been seen to take up to 10 s)
wait_until 30 "alpha reconnects" is alpha connection connected
run mirrorctl -c alpha.conf --node alpha status
run mirrorctl -c beta.conf --node beta status
expect alpha role secondary
run mirrorctl -c beta.conf --node beta wait-sync --timeout 30
note "alpha's log since its restart:"
run grep -E 'warn: (metadata|this node)|->' alpha-restart.log
run mirrorctl -c alpha.conf --node alpha status
expect alpha disk uptodate

say "7. Stop both cleanly (SIGTERM) and compare the two disks' data areas"
SIZE=$(field beta size_bytes)
stop alpha
stop beta
run cmp -n "$SIZE" alpha.img beta.img
echo "the first $SIZE bytes of alpha.img and beta.img are identical"

printf '\n\033[1;32mPart 1 succeeded: both nodes hold the same data after a fail-over and a resync.\033[0m\n'

# ---- Part 2: /dev/ublkbN, the kernel's block device (demo/vm-guest.sh) ----

# True when this kernel has ublk, loading ublk_drv if need be, and this runs
# as root (ublk devices and mount need it).
host_has_ublk() {
	[[ $(id -u) == 0 ]] || return 1
	[[ -c /dev/ublk-control ]] && return 0
	modprobe ublk_drv 2>/dev/null || return 1
	poll 2 test -c /dev/ublk-control
}
# guest_lines [FLAG]: from a VM console on stdin, the lines the guest script
# printed (between BMVM-START and BMVM-EXIT), as they come; touches FLAG at
# the first one.
guest_lines() {
	local line on=0
	while IFS= read -r line; do
		line=${line%$'\r'}
		case $line in
		*BMVM-START:*) on=1; [[ -z ${1:-} ]] || : >"$1"; continue ;;
		*BMVM-EXIT:*) on=0; continue ;;
		esac
		((on == 0)) || printf '%s\n' "$line"
	done
}
# run_in_vm: demo/vm-guest.sh in the VM.  vm_run prints the console only
# once the VM has ended, so its console file (console.log in the share it
# creates, found by its run.sh naming the guest script) is followed as it
# grows; vm_run's own copy is shown only when that did not work or the VM
# failed before the guest script ran.  The follower runs in the background
# so that a signal reaches this script's traps at once.
run_in_vm() {
	local guest=$SRC/demo/vm-guest.sh out=$D/vm.out stamp=$D/vm.stamp seen=$D/vm.seen
	local share='' d rc=0 follower
	: >"$stamp"
	(
		trap '' INT                    # ^C: cleanup stops the VM, then vm_run ends
		BM_BIN=$B
		source "$SRC/tests/vm/lib.sh"
		VM_TIMEOUT=360 vm_run "$guest"
	) >"$out" &
	VMPID=$!
	while [[ -z $share ]] && kill -0 "$VMPID" 2>/dev/null; do
		for d in /tmp/blkmirror-vm.*; do
			if [[ -O $d && $d/run.sh -nt $stamp ]] && grep -qF "$guest" "$d/run.sh" 2>/dev/null; then
				share=$d
				break
			fi
		done
		sleep 0.2
	done
	if [[ -n $share ]] && poll 30 test -e "$share/console.log"; then
		{ tail -n +1 -f --pid="$VMPID" "$share/console.log" 2>/dev/null | guest_lines "$seen"; } &
		follower=$!
		wait "$follower" || true
	fi
	wait "$VMPID" || rc=$?
	VMPID=
	if [[ ! -e $seen ]]; then
		if grep -q 'BMVM-START:' "$out"; then guest_lines <"$out"; else cat "$out"; fi
	fi
	((rc == 0)) || die "the ublk part failed in the VM (exit status $rc)"
}
# stop_vm: at exit while the VM runs (^C, a failure): qemu runs under
# timeout(1) in a process group of its own, out of reach of the terminal's
# SIGINT; timeout passes a SIGTERM on to qemu, and vm_run then ends.
stop_vm() {
	local p
	for p in $(ps -o pid= --ppid "$VMPID" 2>/dev/null); do
		[[ $(ps -o comm= -p "$p" 2>/dev/null) == timeout ]] && kill -TERM "$p" 2>/dev/null
	done
	poll 20 vm_gone || kill -TERM "$VMPID" 2>/dev/null
	wait "$VMPID" 2>/dev/null
}
vm_gone() { [[ $(ps -o stat= -p "$VMPID" 2>/dev/null) != [!Z]* ]]; }   # zombie or gone

rm -f "$D"/*.log                       # a failure from here on shows part 2's logs only
printf '\n\033[1m=== Part 2: the mirrored disk as a kernel block device, /dev/ublkbN ===\033[0m\n'
if host_has_ublk; then
	note "this kernel, $(uname -r), has ublk: the ublk part runs here"
	bash "$SRC/demo/vm-guest.sh" "$B" || die "the ublk part failed (exit status $?)"
else
	note "this kernel, $(uname -r), has no ublk$([[ $(id -u) == 0 ]] || echo ' usable without root'): the ublk part runs in a VM with Debian's 6.12 kernel (qemu, ~10 s to boot)"
	run_in_vm
fi

printf '\n\033[1;32mThe demo succeeded: the NBD export and /dev/ublkbN each failed over to the secondary with every acknowledged write intact.\033[0m\n'
