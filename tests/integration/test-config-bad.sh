#!/usr/bin/env bash
# mirrord, started for real (not --check) on a bad configuration: exit 1,
# a message on stderr that names the file, the line and the key, no socket
# created, and not a byte of the disk (which has valid metadata) changed.
# The parser's exact messages are pinned by test-config-golden.sh; this is
# the daemon end to end.
# timeout: 60
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"
bm_setup

bm_disk r0 16M
"$MIRRORCTL" -c "$(bm_conf r0)" create-md >/dev/null
sum=$(md5sum <"$T/r0.img")

# refused PATTERN [mirrord args...]: exit 1 within 10 s, stderr matches PATTERN,
# the disk is unchanged and no daemon socket appeared.
refused() {
    local want=$1 rc=0; shift
    timeout 10 "$MIRRORD" --foreground "$@" 2>"$T/err" || rc=$?
    assert_eq "$rc" 1 "exit code of mirrord $*"
    assert_contains "$T/err" "$want" "mirrord's message for $*"
    assert_eq "$(grep -c . "$T/err")" 1 "one line of error for $*"
    assert_eq "$(md5sum <"$T/r0.img")" "$sum" "disk after mirrord $*"
    [[ ! -e $T/r0.sock && ! -e $T/r0.nbd ]] || fail "mirrord $* left a socket"
}

# lineof CONF REGEX: the line number of the first line matching REGEX.
lineof() { grep -nE -- "$2" "$1" | head -n 1 | cut -d: -f1; }

conf=$(bm_conf r0 protcol=sync)
refused "$conf:$(lineof "$conf" '^protcol ='): key 'protcol': unknown key in \[resource\]" \
    -c "$conf" --node alpha

conf=$(bm_conf r0 protocol=C)
refused "$conf:$(lineof "$conf" '^protocol ='): key 'protocol': bad value 'C'" -c "$conf" --node alpha

conf=$(bm_conf r0 disk=)
refused "$conf: \[resource\]: missing required key 'disk'" -c "$conf" --node alpha

conf=$(bm_conf r0)
refused "$conf: no \[node gamma\] section" -c "$conf" --node gamma

conf=$(bm_conf r0 beta.address=192.0.2.2:77890)
refused "$conf:$(lineof "$conf" '^address = 192.0.2.2:77890$'): key 'address': bad address '192.0.2.2:77890'" \
    -c "$conf" --node alpha

conf=$(bm_conf r0 alpha.address=no-port-here)
refused "$conf:$(lineof "$conf" '^address = no-port-here$'): key 'address': bad address 'no-port-here'" \
    -c "$conf" --node alpha

refused "$T/missing.conf: cannot read" -c "$T/missing.conf" --node alpha

# The disk it names does not exist: still exit 1 (not 2), naming the disk.
conf=$(bm_conf r0 disk="$T/nosuch.img")
refused "$T/nosuch.img" -c "$conf" --node alpha
[[ ! -e $T/nosuch.img ]] || fail "mirrord created the missing disk $T/nosuch.img"

# The same configuration, mended, does start: the refusals were the config.
conf=$(bm_conf r0)
bm_start "$conf"
bm_stop "$BM_PID"
