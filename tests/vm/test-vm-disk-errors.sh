#!/usr/bin/env bash
# Disk errors through the real kernel: alpha's disk is a device-mapper
# device over a loop device.  With on-io-error = detach (the default), once
# its table is switched to dm-error the primary detaches its disk (failed,
# then diskless), its clients' writes go on succeeding through the peer and
# its reads come from the peer; every write the oracle was told of is on
# beta's disk.  Then the disk is repaired (linear again) and `mirrorctl
# attach` after a demote brings it back: a full resync, equal disks.  Last,
# alpha as secondary under dm-flakey with error_writes (its reads work):
# it detaches, the primary goes on writing, attach and resync bring it back
# with every write the oracle was told of.  Then dm-dust: a few bad blocks
# under alpha as primary; reads of them (and across them) return beta's
# data, alpha detaches, writes go on through beta; the blocks are cleared,
# attach and resync, every write the oracle was told of on both disks.
# timeout: 300
if [[ ${BM_VM:-0} != 1 ]]; then
    source "$(dirname "$0")/lib.sh"
    VM_TIMEOUT=270 vm_run "$0"
    exit
fi

source "$BM_SRC/tests/integration/functions.sh"
source "$BM_SRC/tests/integration/repl.sh"
requires dmsetup
requires "$PYTHON" -c 'import nbd'
bm_setup
ORACLE=$BM_SRC/tests/oracle/oracle.py
step() { echo "=== $*"; }

truncate -s 64M "$T/ra.back"
loop=$(losetup -f --show "$T/ra.back") || fail "losetup"
bm_on_exit losetup -d "$loop"
sectors=$(blockdev --getsz "$loop")
dm=bmdisk$$
dmsetup create --noudevsync "$dm" --table "0 $sectors linear $loop 0" || fail "dmsetup create"
bm_on_exit dmsetup remove -f "$dm"
dmsetup mknodes "$dm"   # no udev in the guest
[ -b "/dev/mapper/$dm" ] || fail "no /dev/mapper/$dm"
table() { dmsetup suspend "$dm" && dmsetup load "$dm" --table "$1" && dmsetup resume "$dm"; }

head -c 48 /dev/urandom | base64 >"$T/secret"; chmod 600 "$T/secret"
CA=$(bm_conf ra name=r0 secret-file="$T/secret" ping-timeout=2 disk=/dev/mapper/$dm)
CB=$(bm_conf rb name=r0 secret-file="$T/secret" ping-timeout=2)
bm_disk rb 64M
ctla create-md >/dev/null; ctlb create-md >/dev/null
UA=$(bm_nbd_uri ra); UB=$(bm_nbd_uri rb)
bm_start "$CA" alpha; PA=$BM_PID
bm_start "$CB" beta; PB=$BM_PID
SIZE=$(bm_status_field "$CA" size_bytes)
bm_pair_initial_sync

step "alpha's disk fails under writes"
"$ORACLE" write "$UA" "$T/olog" --blocks 2048 --depth 8 --flush-every 32 --stop "$T/ostop" &
w=$!
bm_kill_at_exit "$w"
wait_for 30 sh -c "[ \$(cat '$T/olog' 2>/dev/null | grep -c '^A') -ge 100 ]"
table "0 $sectors error" || fail "switching to dm-error"
wait_for 30 sh -c "[ \"\$($MIRRORCTL -c $CA status --json | grep -o '\"disk\":\"[a-z]*\"' | head -1)\" = '\"disk\":\"diskless\"' ]"
n=$(grep -c '^A' "$T/olog"); sleep 2
(($(grep -c '^A' "$T/olog") > n)) || fail "writes stopped after the detach"
touch "$T/ostop"; wait "$w" || fail "oracle writer"
grep -q '^E' "$T/olog" && fail "the client saw an error: $(grep '^E' "$T/olog")"
"$ORACLE" check "$T/rb.img" "$T/olog" >"$T/ocheck" || fail "beta lacks writes: $(tail -3 "$T/ocheck")"
"$PYTHON" - "$UA" "$T/rb.img" <<'PY' || fail "reads through the diskless primary differ from beta's disk"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
with open(sys.argv[2], "rb") as f:
    want = f.read(1 << 20)
sys.exit(0 if h.pread(1 << 20, 0) == want else 1)
PY
grep -q "detaching the disk" "$T/ra-alpha.log" || fail "no detach logged"

step "repaired: attach after a demote, full resync"
table "0 $sectors linear $loop 0" || fail "switching back to linear"
ctla demote || fail "demote of the diskless primary"
ctlb promote || fail "promote of beta"
ctla attach || fail "attach refused"
ctlb wait-sync --timeout 120 || fail "no resync after attach"
assert_eq "$(bm_status_field "$CA" disk)" uptodate "alpha after attach and resync"
cmp -n "$SIZE" /dev/mapper/"$dm" "$T/rb.img" || fail "disks differ after attach and resync"

step "dm-flakey: the secondary's writes fail (error_writes), its reads work"
"$ORACLE" write "$UB" "$T/olog2" --first 4096 --blocks 2048 --depth 8 --flush-every 32 \
    --stop "$T/ostop2" &
w=$!
bm_kill_at_exit "$w"
wait_for 30 sh -c "[ \$(cat '$T/olog2' 2>/dev/null | grep -c '^A') -ge 100 ]"
table "0 $sectors flakey $loop 0 0 60 1 error_writes" || fail "switching to dm-flakey"
disk_a() { [[ $(bm_status_field "$CA" disk) == "$1" ]]; }
wait_for 30 disk_a diskless
n=$(grep -c '^A' "$T/olog2"); sleep 2
(($(grep -c '^A' "$T/olog2") > n)) || fail "the primary's writes stopped when its peer's disk failed"
touch "$T/ostop2"; wait "$w" || fail "oracle writer (flakey)"
grep -q '^E' "$T/olog2" && fail "the client saw an error: $(grep '^E' "$T/olog2")"
assert_eq "$(bm_status_field "$CB" disk)" uptodate "the primary's own disk"
table "0 $sectors linear $loop 0" || fail "switching back to linear (flakey)"
ctla attach || fail "attach of the repaired secondary refused"
ctlb wait-sync --timeout 120 || fail "no resync after the secondary's attach"
assert_eq "$(bm_status_field "$CA" disk)" uptodate "alpha after its second attach"

step "dm-dust: a few bad blocks under the primary's reads, served by the peer"
# dm-dust (4 KiB blocks, the oracle's) fails reads of the blocks on its
# list and nothing else: a disk with a few bad sectors, the common case.
# The blocks are ones the oracle wrote in the flakey phase (--first 4096).
table "0 $sectors dust $loop 0 4096" || fail "switching to dm-dust"
bad="4101 4600 5000"
for b in $bad; do dmsetup message "$dm" 0 addbadblock "$b" || fail "addbadblock $b"; done
dmsetup message "$dm" 0 enable || fail "dm-dust enable"
ctlb demote || fail "demote of beta"
ctla promote || fail "promote of alpha over the dusty disk"
"$PYTHON" - "$UA" "$T/rb.img" $bad <<'PY' || fail "reads of bad blocks through alpha differ from beta's disk"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
with open(sys.argv[2], "rb") as f:
    for b in map(int, sys.argv[3:]):
        # One request across the bad block first: the first one (4100..4102)
        # fails in dm-dust, detaches the disk and is served by the peer;
        # every read after it comes from the peer's disk.
        f.seek((b - 1) * 4096)
        want = f.read(3 * 4096)
        if h.pread(3 * 4096, (b - 1) * 4096) != want or h.pread(4096, b * 4096) != want[4096:8192]:
            print("block", b, "differs")
            sys.exit(1)
PY
wait_for 30 disk_a diskless
grep -q "a read at $((4100 * 4096))+12288: read from the peer" "$T/ra-alpha.log" ||
    fail "the read across the first bad block was not served by the peer"
"$ORACLE" write "$UA" "$T/olog3" --first 8192 --blocks 1024 --max-writes 2000 --depth 8 \
    --flush-every 32 ||
    fail "oracle writer through the primary whose disk detached on a bad block"
grep -q '^E' "$T/olog3" && fail "the client saw an error: $(grep '^E' "$T/olog3")"
"$ORACLE" check "$T/rb.img" "$T/olog3" >"$T/ocheck3" || fail "beta lacks writes: $(tail -3 "$T/ocheck3")"
dmsetup message "$dm" 0 clearbadblocks || fail "dm-dust clearbadblocks"
ctla demote || fail "demote of alpha"
ctlb promote || fail "promote of beta after the dust phase"
ctla attach || fail "attach after the bad blocks were cleared"
ctlb wait-sync --timeout 120 || fail "no resync after the dust phase's attach"
assert_eq "$(bm_status_field "$CA" disk)" uptodate "alpha after its third attach"
bm_stop "$PA"; bm_stop "$PB"
"$ORACLE" check /dev/mapper/"$dm" "$T/olog3" >"$T/ocheck3b" ||
    fail "alpha lacks the writes made while it was diskless: $(tail -3 "$T/ocheck3b")"
"$ORACLE" check /dev/mapper/"$dm" "$T/olog2" >"$T/ocheck2" ||
    fail "alpha lacks the primary's writes after the resync: $(tail -3 "$T/ocheck2")"
cmp -n "$SIZE" /dev/mapper/"$dm" "$T/rb.img" || fail "disks differ after the last attach"
echo "disk errors: detach, writes and reads through the peer, attach, a secondary's failed writes, bad blocks: all checks passed"
