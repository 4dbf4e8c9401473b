# tests/vm/lib.sh: runs a test script as root inside a VM that has a kernel
# with ublk, nbd, loop, ext4, veth, netem and DRBD (this machine's kernel has
# none of them, and no modules).  Sourced by tests/vm/test-*.sh.
#
#   source "$(dirname "$0")/lib.sh"
#   vm_run GUEST_SCRIPT [ARGS...]     # returns the script's exit code
#
# The VM: qemu-system-x86_64 under TCG (-m 2048 -smp 2; VM_ACCEL, VM_MEM and
# VM_CPUS override), Debian's
# linux-image-6.12.*+deb12-amd64-unsigned kernel, fetched once with
# "apt-get download" into build/vm/cache/ and unpacked with dpkg -x, and an
# initramfs of busybox-static, the modules below (decompressed, with their
# dependencies) and tests/vm/init, built once into build/vm/ and rebuilt when
# one of those inputs changes.  The init loads the modules, mounts the host's
# root read-only over 9p with a tmpfs overlay on top (so the guest runs the
# host's own binaries: build/asan/mirrord, mkfs.ext4, bash...), fresh tmpfs
# on /tmp and /run, and a writable share (a temporary directory on the host)
# on /vmout; then it runs GUEST_SCRIPT with bash, as root, chrooted, in
# $BM_SRC, under a time limit, prints "BMVM-EXIT: <code>" and ends the VM.
#
# In the guest: BM_VM=1, BM_BIN and BM_SRC as on the host (the repository is
# at the same path), BM_VM_OUT=/vmout (files left there are shown on the host
# as $VM_OUT after vm_run), ASAN_OPTIONS/UBSAN_OPTIONS passed on; loopback
# up, host name bmvm.  Writes to the root (the overlay), /tmp and /run go to
# guest memory: keep disk images small.
#
# The console (the guest script's output and the kernel's errors) is printed
# after the VM ends.  Time limit: VM_TIMEOUT seconds for the whole VM
# (default 600), enforced on the host with timeout(1); the guest script gets
# VM_TIMEOUT - 30 so that it can still report.  Keep VM_TIMEOUT below the
# test's own "# timeout: N".
#
# A test file usually holds both halves: run on the host it calls
# vm_run "$0"; run in the guest (BM_VM=1) it does the work.

set -eEuo pipefail

BM_SRC=${BM_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BM_BIN=${BM_BIN:-$BM_SRC/build}
VM_DIR=${VM_DIR:-$BM_SRC/build/vm}
VM_TIMEOUT=${VM_TIMEOUT:-600}
VM_MEM=${VM_MEM:-2048}
VM_CPUS=${VM_CPUS:-2}
# qemu's -accel: multi-threaded TCG (one host thread per vCPU).  Now and
# then it kills the guest kernel 1.6 s into boot: "Oops: int3" at
# enqueue_timer+0xa5, where the code dump shows a jump again (eb 09): a
# static branch the kernel rewrote (text_poke_bp) while the other vCPU ran
# stale translated code with the int3 in it (most likely the nohz timer
# key, flipped as the tick goes nohz); vm_run boots once more then.
# "tcg,thread=single" (both vCPUs on one host thread) never failed, but
# runs tests up to 1.7x slower, so it is not the default.  Measured (2
# cores, load 1-6, boots alternating, 71 each way): tcg 1 panic (and 2
# boots lost to other causes), 7.3 s to the script on average;
# thread=single no failure, 6.8 s.  Whole tests, tcg vs thread=single:
# test-vm-netem 80 s vs 135 s, test-vm-disk-errors 30 s vs 40 s.
VM_ACCEL=${VM_ACCEL:-tcg}

# Modules the init loads, in this order; each one's dependencies
# (modinfo -F depends) are added before it.  crc32c_generic backs ext4's
# metadata checksums and libcrc32c (DRBD): a soft dependency, so it is
# listed.  Only these modules exist in the guest; depmod runs on them, so
# modprobe works there (the host's kmod in the chroot, busybox's for the
# kernel's own requests).
VM_MODULES=(crc32c_generic ublk_drv nbd loop ext4 netfs 9pnet 9pnet_virtio 9p overlay
            veth sch_netem lru_cache libcrc32c drbd dm-mod dm-flakey dm-dust)

# The writable share of the last vm_run goes at exit (BM_KEEP=1 keeps it).
vm_cleanup() {
    if [[ -n ${VM_OUT:-} && -d $VM_OUT && ${BM_KEEP:-0} != 1 ]]; then rm -rf "$VM_OUT"; fi
}
trap vm_cleanup EXIT

vm_log() { echo "vm: $*" >&2; }
vm_die() { echo "FAIL: vm: $*" >&2; exit 1; }

# vm_kernel: the unpacked kernel package; sets VM_KVER and VM_KROOT.
# The package is the newest linux-image-6.12.*+deb12-amd64-unsigned apt
# knows (BM_VM_KERNEL_PKG overrides), downloaded only when none is cached.
vm_kernel() {
    local cache=$VM_DIR/cache pkg deb
    mkdir -p "$cache"
    if [[ -f $cache/kernel.ver && -d $cache/root ]]; then
        VM_KVER=$(<"$cache/kernel.ver")
        VM_KROOT=$cache/root
        [[ -f $VM_KROOT/boot/vmlinuz-$VM_KVER ]] && return 0
    fi
    pkg=${BM_VM_KERNEL_PKG:-}
    if [[ -z $pkg ]]; then
        pkg=$(vm_pick_kernel_pkg)
        if [[ -z $pkg && $(id -u) == 0 ]]; then
            vm_log "no 6.12 kernel package in apt's lists: apt-get update"
            apt-get update -qq >&2 || true
            pkg=$(vm_pick_kernel_pkg)
        fi
        [[ -n $pkg ]] || vm_die "apt knows no linux-image-6.12.*+deb12-amd64-unsigned" \
            "(Debian 12 with bookworm-security or bookworm-backports in sources.list)"
    fi
    vm_log "downloading $pkg (once; cached in ${cache#"$BM_SRC"/})"
    rm -rf "$cache/root" "$cache/dl" && mkdir -p "$cache/dl"
    (cd "$cache/dl" && apt-get download -q "$pkg" >&2 2>"$cache/dl/apt.err") ||
        { cat "$cache/dl/apt.err" >&2; vm_die "apt-get download $pkg failed"; }
    deb=$(ls "$cache"/dl/*.deb)
    dpkg -x "$deb" "$cache/root.tmp" || vm_die "dpkg -x $deb failed"
    mv "$cache/root.tmp" "$cache/root"
    rm -rf "$cache/dl"
    VM_KROOT=$cache/root
    VM_KVER=$(ls "$VM_KROOT/lib/modules" | head -n1)
    [[ -n $VM_KVER && -f $VM_KROOT/boot/vmlinuz-$VM_KVER ]] ||
        vm_die "$pkg has no boot/vmlinuz-* matching lib/modules/*"
    echo "$VM_KVER" >"$cache/kernel.ver"
}

# vm_dm_dust: Debian builds its kernels without dm-dust (CONFIG_DM_DUST is
# not set, 6.12 and 7.x alike), so the module is built once, out of tree,
# from Debian's own packages of the same version: the kernel's headers and
# kbuild, and dm-dust.c out of linux-source-X.Y.  The result goes where
# vm_module_closure finds it (lib/modules/VER/extra/, xz like the others);
# it is rebuilt whenever the kernel is fetched again.  BTF is left out
# (pahole is not needed for a test module the guest only loads).
vm_dm_dust() {
    local mdir=$VM_KROOT/lib/modules/$VM_KVER kv=${VM_KVER%-amd64} ver dl b hdr src
    src=linux-source-$(cut -d. -f1-2 <<<"$VM_KVER")   # linux-source-6.12
    [[ -f $mdir/extra/dm-dust.ko.xz ]] && return 0
    ver=$(apt-cache show "linux-headers-$VM_KVER" 2>/dev/null | sed -n 's/^Version: //p' | head -n1) || true
    [[ -n $ver ]] || vm_die "apt knows no linux-headers-$VM_KVER (needed to build dm-dust)"
    vm_log "building dm-dust for $VM_KVER from $src $ver (once)"
    b=$VM_DIR/cache/dust && rm -rf "$b" && mkdir -p "$b/dl" "$b/root" "$b/mod"
    dl=$b/dl
    (cd "$dl" && apt-get download -q "linux-headers-$VM_KVER=$ver" "linux-headers-$kv-common=$ver" \
        "linux-kbuild-$kv=$ver" "$src=$ver" >"$dl/apt.log" 2>&1) ||
        { cat "$dl/apt.log" >&2; vm_die "apt-get download of the kernel headers and source failed"; }
    for d in "$dl"/linux-headers-*.deb "$dl"/linux-kbuild-*.deb; do
        dpkg -x "$d" "$b/root" || vm_die "dpkg -x $d failed"
    done
    dpkg --fsys-tarfile "$dl"/"$src"_*.deb |
        tar -xO "./usr/src/$src.tar.xz" | xz -dc |
        tar -xO -f - "$src/drivers/md/dm-dust.c" >"$b/mod/dm-dust.c" ||
        vm_die "dm-dust.c not found in $src $ver"
    echo 'obj-m := dm-dust.o' >"$b/mod/Kbuild"
    hdr=$b/root/usr/src/linux-headers-$VM_KVER
    # The headers' Makefile includes the common part by its installed path.
    sed -i "s#^include /usr/src/#include $b/root/usr/src/#" "$hdr/Makefile"
    make -s -C "$hdr" M="$b/mod" CONFIG_DEBUG_INFO_BTF_MODULES= modules >"$b/build.log" 2>&1 ||
        { tail -n 20 "$b/build.log" >&2; vm_die "building dm-dust failed"; }
    mkdir -p "$mdir/extra"
    xz -c "$b/mod/dm-dust.ko" >"$mdir/extra/dm-dust.ko.xz.tmp" &&
        mv "$mdir/extra/dm-dust.ko.xz.tmp" "$mdir/extra/dm-dust.ko.xz"
    rm -rf "$b"
}

# vm_vmlinux: prints the kernel image to boot.  qemu boots an uncompressed
# vmlinux (an ELF with a PVH entry point, CONFIG_PVH) straight into 64-bit
# mode, which under TCG is ~2 s faster than letting the bzImage decompress
# itself; it is extracted once (zstd payload, located by the bzImage's
# payload_offset/payload_length).  Falls back to the bzImage.
vm_vmlinux() {
    local bz=$VM_KROOT/boot/vmlinuz-$VM_KVER out=$VM_DIR/cache/vmlinux-$VM_KVER
    if [[ ! -f $out ]] && grep -qx 'CONFIG_PVH=y' "$VM_KROOT/boot/config-$VM_KVER" &&
       command -v zstd >/dev/null; then
        /usr/bin/python3 - "$bz" "$out.zst" <<'PY' && zstd -q -d -f "$out.zst" -o "$out.tmp" &&
import struct, sys
d = open(sys.argv[1], "rb").read()
setup = d[0x1f1] or 4
off, length = struct.unpack_from("<II", d, 0x248)
start = (setup + 1) * 512 + off
payload = d[start:start + length]
if payload[:4] != b"\x28\xb5\x2f\xfd":
    sys.exit(1)        # not zstd
open(sys.argv[2], "wb").write(payload[:-4])  # the last 4 bytes: the size
PY
            head -c4 "$out.tmp" | grep -q ELF && mv "$out.tmp" "$out"
        rm -f "$out.zst" "$out.tmp"
    fi
    if [[ -f $out ]]; then echo "$out"; else echo "$bz"; fi
}

vm_pick_kernel_pkg() {
    apt-cache pkgnames linux-image-6.12. 2>/dev/null |
        grep -E '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' | sort -V | tail -n1
}

# Appends MODULE's path (relative to lib/modules/VER) to vm_order after its
# dependencies' paths, each once (vm_seen: the names done).
vm_module_closure() {
    local m=${1//-/_} mdir=$VM_KROOT/lib/modules/$VM_KVER f dep
    [[ -z ${vm_seen[$m]:-} ]] || return 0
    vm_seen[$m]=1
    f=$(find "$mdir/kernel" "$mdir/extra" \( -name "$m.ko.xz" -o -name "${m//_/-}.ko.xz" \) | head -n1)
    [[ -n $f ]] || vm_die "module $m not found in the $VM_KVER package"
    for dep in $(modinfo -F depends "$f" | tr ',' ' '); do
        vm_module_closure "$dep"
    done
    vm_order+=("${f#"$mdir"/}")
}

# vm_initramfs: builds $VM_DIR/initramfs.cpio when its inputs changed; sets
# VM_INITRD.
vm_initramfs() {
    local stamp want tmp mdir rel m
    local -A vm_seen=()
    local vm_order=()
    VM_INITRD=$VM_DIR/initramfs.cpio
    stamp=$VM_DIR/initramfs.stamp
    want=$( { echo "$VM_KVER"; echo "${VM_MODULES[*]}"; cat "$BM_SRC/tests/vm/init";
              sha256sum /bin/busybox; } | sha256sum | cut -d' ' -f1)
    if [[ -f $VM_INITRD && -f $stamp && $(<"$stamp") == "$want" ]]; then
        return 0
    fi
    [[ -x /bin/busybox ]] && /bin/busybox --list 2>/dev/null | grep -qx insmod ||
        vm_die "busybox-static is not installed: run make deps"
    vm_log "building the initramfs (${VM_INITRD#"$BM_SRC"/})"
    tmp=$(mktemp -d "$VM_DIR/initramfs.XXXXXX")
    mdir=lib/modules/$VM_KVER
    mkdir -p "$tmp/bin" "$tmp/$mdir"
    cp /bin/busybox "$tmp/bin/busybox"
    install -m 0755 "$BM_SRC/tests/vm/init" "$tmp/init"
    for m in "${VM_MODULES[@]}"; do
        vm_module_closure "$m"
    done
    for rel in "${vm_order[@]}"; do
        mkdir -p "$tmp/$mdir/$(dirname "$rel")"
        xz -dc "$VM_KROOT/$mdir/$rel" >"$tmp/$mdir/${rel%.xz}"
        echo "${rel%.xz}"
    done >"$tmp/modules.load"
    cp "$VM_KROOT/$mdir"/modules.{order,builtin,builtin.modinfo} "$tmp/$mdir/" 2>/dev/null || true
    depmod -b "$tmp" "$VM_KVER" 2>/dev/null || vm_log "depmod failed: modprobe will not work in the guest"
    (cd "$tmp" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) \
        >"$VM_INITRD.tmp" || vm_die "cpio failed"
    mv "$VM_INITRD.tmp" "$VM_INITRD"
    echo "$want" >"$stamp"
    rm -rf "$tmp"
}

# vm_prepare: kernel and initramfs, under a lock (tests of two engineers may
# start VMs at once).
vm_prepare() {
    command -v qemu-system-x86_64 >/dev/null || vm_die "qemu-system-x86_64 missing: run make deps"
    command -v cpio >/dev/null && command -v depmod >/dev/null && command -v xz >/dev/null ||
        vm_die "cpio, kmod or xz-utils missing: run make deps"
    mkdir -p "$VM_DIR"
    exec {vm_lock}>"$VM_DIR/.lock"
    flock "$vm_lock"
    vm_kernel
    vm_dm_dust
    vm_initramfs
    VM_KERNEL=$(vm_vmlinux)
    flock -u "$vm_lock"
    exec {vm_lock}>&-
}

# vm_boot CONSOLE: one boot of the VM prepared by vm_run, its console to
# CONSOLE; returns qemu's exit status (timeout(1)'s when it ran out).
vm_boot() {
    local console=$1 qpid reported= rc=0
    timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 \
        -machine pc -accel "$VM_ACCEL" -m "$VM_MEM" -smp "$VM_CPUS" \
        -nographic -no-reboot -nic none \
        -kernel "$VM_KERNEL" -initrd "$VM_INITRD" \
        -append "console=ttyS0 quiet panic=-1 mitigations=off rdinit=/init" \
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
        -virtfs "local,path=$VM_OUT,mount_tag=vmout,security_model=none" \
        </dev/null >"$console" 2>&1 &
    qpid=$!
    # Once the guest has reported, it gets 10 s to end (a device a test
    # left stuck can keep a kernel from rebooting).
    while kill -0 "$qpid" 2>/dev/null; do
        if [[ -z $reported ]] && grep -q '^BMVM-EXIT: ' "$console"; then
            reported=$SECONDS
        fi
        if [[ -n $reported ]] && ((SECONDS - reported > 10)); then
            vm_log "the guest reported but did not end: stopping qemu"
            kill -TERM "$qpid" 2>/dev/null || true
            break
        fi
        sleep 0.5
    done
    wait "$qpid" || rc=$?
    return "$rc"
}

# vm_run GUEST_SCRIPT [ARGS...]: see the top of this file.  Prints the
# console, then the boot and total times; returns the script's exit code,
# 1 with a message when the script or the VM ran out of time, 125 when the
# guest never reported (kernel panic, init failure).
# VM_OUT names the writable share afterwards (deleted at the next vm_run
# and at exit, by an EXIT trap set when this file is sourced).
vm_run() {
    local script=$1 rc=0 start end console gtmo q reported=
    shift
    [[ -f $script ]] || vm_die "no guest script $script"
    script=$(cd "$(dirname "$script")" && pwd)/$(basename "$script")
    vm_prepare
    [[ -n ${VM_OUT:-} && -d $VM_OUT ]] && rm -rf "$VM_OUT"
    VM_OUT=$(mktemp -d /tmp/blkmirror-vm.XXXXXX)
    chmod 0777 "$VM_OUT"
    gtmo=$((VM_TIMEOUT > 60 ? VM_TIMEOUT - 30 : VM_TIMEOUT / 2))
    {
        echo "# written by tests/vm/lib.sh vm_run"
        echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        echo "export HOME=/root TERM=dumb LANG=C.UTF-8 BM_VM=1 BM_VM_OUT=/vmout"
        for q in BM_BIN BM_SRC ASAN_OPTIONS UBSAN_OPTIONS BM_KEEP; do
            [[ -n ${!q:-} ]] && printf 'export %s=%q\n' "$q" "${!q}"
        done
        printf 'cd %q || exit 125\n' "$BM_SRC"
        printf 'exec timeout -k 5 %d bash %q' "$gtmo" "$script"
        (($# == 0)) || printf ' %q' "$@"
        echo
    } >"$VM_OUT/run.sh"
    # Paths the guest must see although its /tmp is a fresh tmpfs (a
    # checkout under /tmp, as a CI clone may be).
    printf '%s\n' "$BM_SRC" "$BM_BIN" "$(dirname "$script")" >"$VM_OUT/binds"
    console=$VM_OUT/console.log
    start=${EPOCHREALTIME/./}
    vm_boot "$console" || rc=$?
    # A guest kernel that dies before the script starts (the Oops under
    # multi-threaded TCG described at VM_ACCEL, about one boot in 70)
    # says nothing about the test: boot it once more.
    if ! grep -q 'BMVM-START' "$console"; then
        vm_log "the guest died before its script started (kernel panic at boot?):" \
            "booting it once more; the first console:"
        tr -d '\r' <"$console" | tail -n 20 >&2
        mv "$console" "$console.1"
        rc=0
        vm_boot "$console" || rc=$?
    fi
    end=${EPOCHREALTIME/./}
    grep -q '^BMVM-EXIT: ' "$console" && reported=1
    echo "----- VM console -----"
    # Without the escape sequences of the firmware's screen clearing.
    tr -d '\r' <"$console" | sed -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' -e 's/\x1bc//g'
    echo "----- end of VM console -----"
    local boot total
    boot=$(sed -n 's/.*BMVM-START: uptime \([0-9.]*\) s.*/\1/p' "$console" | tr -d '\r' | head -n1)
    total=$(( (end - start) / 1000 ))
    vm_log "boot to the guest script ${boot:-?} s (guest uptime), whole VM $((total / 1000)).$(( (total % 1000) / 100 )) s"
    # Timeouts return 1, not timeout(1)'s 124, which tests/run would
    # report as its own timeout.
    if [[ -z $reported ]] && ((rc == 124 || rc == 137)); then
        echo "FAIL: vm: the VM did not end within VM_TIMEOUT=${VM_TIMEOUT}s" >&2
        return 1
    fi
    rc=$(tr -d '\r' <"$console" | sed -n 's/^BMVM-EXIT: \([0-9][0-9]*\)$/\1/p' | tail -n1)
    if [[ -z $rc ]]; then
        echo "FAIL: vm: the guest ended without reporting an exit code (kernel panic? see the console)" >&2
        return 125
    fi
    if ((rc == 124 || rc == 137)); then
        echo "FAIL: vm: the guest script did not finish within ${gtmo}s (VM_TIMEOUT - 30)" >&2
        return 1
    fi
    return "$rc"
}
