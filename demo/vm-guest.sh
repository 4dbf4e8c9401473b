#!/usr/bin/env bash
# demo/vm-guest.sh: the ublk part of make demo, run by demo.sh after its NBD
# part: as root on a kernel with ublk, either the host's (demo.sh runs it
# directly) or the 6.12 kernel of the test VM (demo.sh runs it with vm_run
# of tests/vm/lib.sh, where BM_VM=1 and BM_BIN name the build).
#
#   demo/vm-guest.sh [BUILD_DIR [veth|loopback]]
#
# Two nodes of one resource with frontend = ublk and protocol = sync: alpha
# becomes primary and gets /dev/ublkbN, which carries an ext4 file system;
# files are written and synced; alpha's mirrord is killed with -9 (a crash),
# beta is promoted, gets its own /dev/ublkbN, mounts it (ext4 replays its
# journal) and every file reads back with its checksum.  Then everything is
# removed again: no /dev/ublkb* and no mount are left behind.
#
# The peer link: in the VM, beta runs in its own network namespace behind a
# veth pair with 1 ms of netem delay each way (like tests/vm/test-vm-ublk.sh);
# on the host, both talk over loopback.  The second argument overrides.
set -eEuo pipefail
B=${1:-${BM_BIN:-build}}
B=$(cd "$B" && pwd)
[[ -x $B/mirrord && -x $B/mirrorctl ]] || { echo "demo: no mirrord/mirrorctl in $B: run make" >&2; exit 1; }
PATH=$B:$PATH
SRC=$(cd "$(dirname "$0")/.." && pwd)
[[ $(id -u) == 0 ]] || { echo "demo: the ublk part needs root (ublk devices, mount)" >&2; exit 1; }
if [[ ! -c /dev/ublk-control ]]; then
	modprobe ublk_drv 2>/dev/null || true
	for ((i = 0; i < 20; i++)); do [[ -c /dev/ublk-control ]] || sleep 0.1; done
	[[ -c /dev/ublk-control ]] || { echo "demo: no /dev/ublk-control: this kernel has no ublk" >&2; exit 1; }
fi
source "$(dirname "$0")/lib.sh"
[[ -x $PY ]] || PY=python3
if [[ ${BM_VM:-0} == 1 ]]; then LINK=${2:-veth}; else LINK=${2:-loopback}; fi
[[ $LINK == veth || $LINK == loopback ]] || { echo "demo: the link is veth or loopback, not '$LINK'" >&2; exit 2; }
NS=bmdemo-beta                         # beta's network namespace (LINK=veth)
D=$(mktemp -d /tmp/blkmirror-ublk-demo.XXXXXX)
cd "$D"

declare -A PID=()                      # node -> pid of its mirrord
declare -A MNT=()                      # node -> where its device is mounted
CRASHED=                               # alpha's mirrord was killed with -9

# At exit, also after a failure: nothing may be left, above all no device
# whose mirrord is gone while a file system on it has dirty data (in the VM,
# the final sync would wait for it until the VM's time limit).
cleanup() {
	local rc=$? log
	set +e
	trap - ERR
	if ((rc != 0)); then
		for log in "$D"/*.log; do
			[[ -s $log ]] || continue
			printf '\n--- %s (last 20 lines)\n' "${log##*/}" >&2
			tail -n 20 "$log" >&2
		done
	fi
	[[ -n ${MNT[beta]:-} ]] && alive beta && umount "${MNT[beta]}"
	[[ -n ${PID[beta]:-} ]] && halt beta
	if [[ -n $CRASHED && -n ${MNT[alpha]:-} ]]; then
		# The device waits for a mirrord: one comes back, alone, and
		# re-attaches it; then the file system can go.
		mirrord -c alpha.conf --node alpha --foreground </dev/null 2>>alpha-cleanup.log &
		PID[alpha]=$!
		poll 40 is alpha role primary
	fi
	[[ -n ${MNT[alpha]:-} ]] && alive alpha && umount "${MNT[alpha]}"
	[[ -n ${PID[alpha]:-} ]] && halt alpha
	[[ $LINK == veth ]] && ip netns del "$NS" 2>/dev/null
	cd / && rm -rf "$D"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'printf "demo: failed at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

# halt NODE: SIGTERM (a clean stop removes the device), SIGKILL after 15 s.
halt() {
	local p=${PID[$1]} i
	kill -TERM "$p" 2>/dev/null
	for ((i = 0; i < 150; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	unset "PID[$1]"
}
alive() { [[ -n ${PID[$1]:-} ]] && kill -0 "${PID[$1]}" 2>/dev/null; }

# sh_run 'COMMAND LINE': echo it as it is, run it with bash (pipes, cd).
sh_run() {
	printf '$ %s\n' "$1"
	bash -c "set -eo pipefail; $1"
}
ctl() { local n=$1; shift; mirrorctl -c "$n.conf" --node "$n" "$@"; }
expect() {
	local got
	got=$(field "$1" "$2")
	[[ $got == "$3" ]] || die "$1: $2 is '$got', expected '$3'"
}
is() { [[ $(field "$1" "$2" 2>/dev/null) == "$3" ]]; }
isnt() { [[ $(field "$1" "$2") != "$3" ]]; }
# poll SECS CMD...: run CMD every 0.1 s until it succeeds (0) or SECS pass (1).
poll() {
	local end=$((SECONDS + $1)); shift
	until "$@"; do
		((SECONDS < end)) || return 1
		sleep 0.1
	done
}
wait_until() {
	local secs=$1 what=$2; shift 2
	poll "$secs" "$@" || die "timed out after ${secs}s waiting until $what"
}
# start NODE [LOG]: mirrord in the background (beta inside its network namespace
# with LINK=veth), logging to LOG (default NODE.log); returns once its control socket
# answers.
start() {
	local pre=() log=${2:-$1.log}
	[[ $1 == beta && $LINK == veth ]] && pre=(ip netns exec "$NS")
	"${pre[@]}" mirrord -c "$1.conf" --node "$1" --foreground </dev/null 2>"$log" &
	PID[$1]=$!
	printf '$ %smirrord -c %s.conf --node %s --foreground 2>%s &    # pid %s\n' \
		"${pre[*]:+${pre[*]} }" "$1" "$1" "$log" "${PID[$1]}"
	wait_until 20 "mirrord $1 answers on its control socket" answers "$1"
}
answers() {
	kill -0 "${PID[$1]}" 2>/dev/null || { wait "${PID[$1]}" || true; die "mirrord $1 exited early"; }
	ctl "$1" status >/dev/null 2>&1
}
# stop NODE: SIGTERM, mirrord must exit 0 within 15 s.
stop() {
	local rc=0 p=${PID[$1]}
	run kill -TERM "$p"
	wait_until 15 "mirrord $1 exits after SIGTERM" gone "$p"
	wait "$p" || rc=$?
	unset "PID[$1]"
	[[ $rc == 0 ]] || die "mirrord $1 exited with status $rc after SIGTERM"
	echo "mirrord $1 exited 0"
}
gone() { ! kill -0 "$1" 2>/dev/null; }
ublk_devices() { ls /dev/ublkb* 2>/dev/null || true; }

if [[ $LINK == veth ]]; then
	ADDR_A=10.99.7.1:7789 ADDR_B=10.99.7.2:7789
else
	# (no process substitution: the VM's /dev has no /dev/fd)
	read -r PORT_A PORT_B <<<"$("$PY" -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')"
	ADDR_A=127.0.0.1:$PORT_A ADDR_B=127.0.0.1:$PORT_B
fi

say "8. The kernel's block device: frontend = ublk on two nodes, alpha and beta"
note "kernel $(uname -r)$([[ ${BM_VM:-0} == 1 ]] && echo ', in the VM'), working in $D"
if [[ $LINK == veth ]]; then
	note "beta gets a network of its own: a namespace behind a veth pair, 1 ms each way"
	run ip netns add "$NS"
	run ip link add bmdemo-a type veth peer name bmdemo-b netns "$NS"
	run ip addr add 10.99.7.1/24 dev bmdemo-a
	run ip link set bmdemo-a up
	run ip -n "$NS" addr add 10.99.7.2/24 dev bmdemo-b
	run ip -n "$NS" link set bmdemo-b up
	run tc qdisc add dev bmdemo-a root netem delay 1ms
	run ip netns exec "$NS" tc qdisc add dev bmdemo-b root netem delay 1ms
fi
run truncate -s 128M alpha.img beta.img
head -c 48 /dev/urandom | base64 > secret
chmod 600 secret
for n in alpha beta; do
	cat > "$n.conf" <<CONF
[resource]
name = r0
protocol = sync
frontend = ublk
disk = $D/$n.img
meta-disk = internal
control = $D/$n.sock
secret-file = $D/secret

[node alpha]
address = $ADDR_A

[node beta]
address = $ADDR_B
CONF
done
run cat alpha.conf
note "beta.conf differs only in its disk and control socket"
run mirrorctl -c alpha.conf --node alpha create-md
run mirrorctl -c beta.conf --node beta create-md
note "no /dev/ublkb* yet: the device exists only on a primary"
start alpha
start beta
wait_until 30 "alpha and beta are connected" is alpha connection connected
expect alpha device null
expect beta device null

say "9. Promote alpha: /dev/ublkbN appears on alpha, beta gets a full resync"
run mirrorctl -c alpha.conf --node alpha promote --force
run mirrorctl -c alpha.conf --node alpha wait-sync --timeout 120
run grep -F 'resync finished:' alpha.log
DEV=$(field alpha device)
[[ $DEV == /dev/ublkb* && -b $DEV ]] || die "alpha's device is '$DEV', not a block device"
NAME=${DEV#/dev/}
run mirrorctl -c alpha.conf --node alpha status
run mirrorctl -c beta.conf --node beta status
expect beta disk uptodate
expect beta device null
run lsblk -o NAME,SIZE,TYPE,LOG-SEC,MIN-IO "$DEV"
sh_run "grep . /sys/block/$NAME/queue/{write_cache,fua,max_hw_sectors_kb}"

say "10. A file system on alpha's $DEV: mkfs.ext4, mount, write files, sync"
run mkfs.ext4 -F -L mirrored "$DEV"
mkdir mnt-alpha
run mount "$DEV" mnt-alpha
MNT[alpha]=$D/mnt-alpha
run cp "$SRC/README.md" "$SRC/man/mirrord.8" mnt-alpha/
run dd if=/dev/urandom of=mnt-alpha/random.bin bs=1M count=16 status=none
sh_run "date -u > mnt-alpha/written-on-alpha"
sh_run "cd mnt-alpha && md5sum README.md mirrord.8 random.bin written-on-alpha | tee ../md5sums"
note "protocol = sync: once sync returns, every block is on both disks"
run sync
run df -h mnt-alpha
run mirrorctl -c alpha.conf --node alpha status
run mirrorctl -c beta.conf --node beta status
expect alpha out_of_sync_bytes 0
expect beta peer.role primary

say "11. Alpha crashes: kill -9 its mirrord; beta takes over with mirrorctl promote"
printf '$ kill -KILL %s\n' "${PID[alpha]}"
{ kill -KILL "${PID[alpha]}" && wait "${PID[alpha]}"; } 2>/dev/null || true
CRASHED=1
unset "PID[alpha]"
note "alpha's $DEV stays, still mounted: the kernel holds its I/O for a mirrord that would re-attach it"
note "in this story alpha's node is dead, fenced: nothing touches it until the clean-up"
run ls -l "$DEV"
wait_until 30 "beta notices that alpha is gone" isnt beta connection connected
run mirrorctl -c beta.conf --node beta status
note "beta's data is up to date: no --force needed"
run mirrorctl -c beta.conf --node beta promote
expect beta role primary
DEVB=$(field beta device)
[[ $DEVB == /dev/ublkb* && -b $DEVB && $DEVB != "$DEV" ]] || die "beta's device is '$DEVB'"
NAMEB=${DEVB#/dev/}
note "beta's device is $DEVB: on this one kernel alpha's $DEV still holds its number"
run lsblk -o NAME,SIZE,TYPE,LOG-SEC "$DEVB"
mkdir mnt-beta
run mount "$DEVB" mnt-beta
MNT[beta]=$D/mnt-beta
note "ext4 found its journal not closed, as after a power cut, and replayed it:"
sh_run "dmesg | grep -F 'EXT4-fs ($NAMEB)' | tail -n 2"
sh_run "cd mnt-beta && md5sum -c ../md5sums"
run df -h mnt-beta
run mirrorctl -c beta.conf --node beta status

say "12. Clean up: unmount, demote and stop beta; release alpha's held device"
run umount mnt-beta
unset "MNT[beta]"
run mirrorctl -c beta.conf --node beta demote
note "demote removed $DEVB"
[[ ! -e $DEVB ]] || die "$DEVB still exists after demote"
stop beta
note "alpha's node would be rebooted; here it shares the kernel, so its mirrord starts again, alone:"
note "it re-attaches $DEV, the held I/O completes, the file system is unmounted, a clean stop removes the device"
start alpha alpha-restart.log
wait_until 40 "alpha re-attaches $DEV" is alpha role primary
expect alpha device "$DEV"
run grep -F 're-attached' alpha-restart.log
run umount mnt-alpha
unset "MNT[alpha]"
stop alpha
CRASHED=
[[ ! -e $DEV && ! -e $DEVB ]] || die "a device is left over: $(ublk_devices)"
sh_run "ls /dev | grep ublk"
[[ $LINK == veth ]] && run ip netns del "$NS"

printf '\n\033[1;32mThe ublk part succeeded: %s mounted on alpha, failed over to %s on beta with every file intact.\033[0m\n' \
	"$DEV" "$DEVB"
