#!/usr/bin/env bash
# frontend = ublk on the host.  Where the kernel has no ublk driver (the
# project's machines: see tests/vm/ for the real device), mirrord refuses
# to start with exit 1 and a message that names /dev/ublk-control and the
# module, and leaves no socket and no state file.  Where it has one, the
# daemon starts secondary and no /dev/ublkbN exists until promote.
# timeout: 60
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
bm_setup

C=$(bm_conf r0 frontend=ublk export-listen=)
bm_disk r0 16M
"$MIRRORCTL" -c "$C" create-md >/dev/null
"$MIRRORD" --check -c "$C" --node alpha || fail "--check refused frontend = ublk"

if [[ ! -e /dev/ublk-control ]]; then
    rc=0
    timeout 20 "$MIRRORD" -c "$C" --node alpha --foreground 2>"$T/err" || rc=$?
    assert_eq "$rc" 1 "exit code without a ublk driver"
    assert_contains "$T/err" "frontend = ublk: /dev/ublk-control does not exist: this kernel has no ublk driver loaded \(modprobe ublk_drv" \
        "the refusal names the device and the module"
    [[ ! -e $T/r0.sock ]] || fail "a control socket was left behind"
    [[ ! -e $T/r0.sock.ublk ]] || fail "a ublk state file was left behind"
else
    bm_start "$C" alpha
    assert_eq "$(bm_status_field "$C" role)" secondary "role at start"
    assert_eq "$(bm_status_field "$C" device)" null "no device while secondary"
    bm_stop "$BM_PID"
fi
