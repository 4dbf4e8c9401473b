#!/usr/bin/env bash
# The test helpers themselves: assertions that must fail do fail, and bm_conf
# writes the config the interface describes.  Needs no daemon.
# timeout: 30
# shellcheck source=SCRIPTDIR/functions.sh
source "$(dirname "$0")/functions.sh"

# What bm_setup does, minus the binaries check: this test runs without them.
T=$(mktemp -d /tmp/blkmirror-selftest.XXXXXX)
trap 'rm -rf "$T"' EXIT

assert_eq "a b" "a b" "equal strings"
( assert_eq 1 2 "must fail" ) 2>/dev/null && fail "assert_eq 1 2 passed"
( fail "must fail" ) 2>/dev/null && fail "fail returned success"

expect_fail false
( expect_fail true ) 2>/dev/null && fail "expect_fail accepted a success"
( expect_fail sh -c 'kill -SEGV $$' ) 2>/dev/null && fail "expect_fail accepted a crash"

assert_contains "hello world" 'wor.d' "string match"
( assert_contains "hello" 'xyz' "must fail" ) 2>/dev/null && fail "assert_contains matched nothing"

wait_for 2 test -d "$T"
out=$( ( wait_for 0.3 false ) 2>&1 ) && fail "wait_for returned on a command that never succeeds"
assert_contains "$out" 'timed out after 0.3s waiting for: false' "wait_for's message"

requires bash
( requires no-such-program-here ) 2>/dev/null && fail "requires accepted a missing program"

conf=$(bm_conf r0b name=r0 protocol=async meta-disk= beta.address=127.0.0.1:1)
assert_eq "$conf" "$T/r0b.conf" "bm_conf prints its path"
assert_contains "$conf" '^protocol = async$' "override in [resource]"
assert_contains "$conf" '^disk = '"$T"'/r0b.img$' "default disk"
assert_contains "$conf" '^\[node beta\]$' "beta section"
assert_contains "$conf" '^address = 127.0.0.1:1$' "override in [node beta]"
expect_fail grep -q meta-disk "$conf"
assert_eq "$(bm_nbd_uri r0b)" "nbd+unix:///r0?socket=$T/r0b.nbd" "bm_nbd_uri"
a=$(sed -n '/^\[node alpha\]/,/^$/s/^address = //p' "$(bm_conf r0a)")
b=$(sed -n '/^\[node alpha\]/,/^$/s/^address = //p' "$conf")
assert_eq "$a" "$b" "alpha's address is the same in every config of a test"
echo "selftest ok"
