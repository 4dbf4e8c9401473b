#!/usr/bin/env bash
# Config golden tests: for each tests/golden/NAME.conf, run
#   mirrord --check --dump --node alpha -c NAME.conf
# from inside tests/golden (so messages carry the relative file name) and
# compare stdout+stderr, less a leading "mirrord: ", with NAME.ok.
# bad-*.conf must exit 1 with the one-line error in NAME.ok; every other file
# must exit 0 with the conf_dump output in NAME.ok.
# Every file mirrord accepts (whatever its name) must also round-trip: its
# dump, loaded again, must dump the same, or --dump would print a
# configuration other than the one in use.
#
# BM_BIN: the directory holding mirrord (default: the repository's build/).
# Exit 0 when every file matches, 1 otherwise.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
golden=$here/../golden
bin=${BM_BIN:-$here/../../build}
# resolve before the cd below, so a relative BM_BIN means relative to the caller
case $bin in
/*) ;;
*) bin=$PWD/$bin ;;
esac
mirrord=$bin/mirrord
if [ ! -x "$mirrord" ]; then
	echo "FAIL: $mirrord: not found or not executable (build first, or set BM_BIN)" >&2
	exit 1
fi

out=$(mktemp)
rt=$(mktemp --suffix=.conf)
trap 'rm -f "$out" "$out.diff" "$rt" "$rt.2"' EXIT
cd "$golden"

# dump | load | dump must print the dump again.
round_trip() {
	local rc=0

	"$mirrord" --check --dump --node alpha -c "$1" >"$rt" 2>&1 || return 0
	"$mirrord" --check --dump --node alpha -c "$rt" >"$rt.2" 2>&1 || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "FAIL: $1: its dump does not load back: exit code $rc"
		sed 's/^/    /' "$rt.2"
		return 1
	fi
	if ! diff -u "$rt" "$rt.2"; then
		echo "FAIL: $1: its dump loads back to another configuration"
		return 1
	fi
}

pass=0
failed=0
for conf in *.conf; do
	name=${conf%.conf}
	case $name in
	bad-*) want_rc=1 ;;
	*) want_rc=0 ;;
	esac
	if [ ! -f "$name.ok" ]; then
		echo "FAIL: $conf: no $name.ok"
		failed=$((failed + 1))
		continue
	fi
	rc=0
	"$mirrord" --check --dump --node alpha -c "$conf" >"$out" 2>&1 || rc=$?
	if [ "$rc" -eq 0 ] && ! round_trip "$conf"; then
		failed=$((failed + 1))
		continue
	fi
	if [ "$rc" -ne "$want_rc" ]; then
		echo "FAIL: $conf: exit code $rc, expected $want_rc"
		sed 's/^/    /' "$out"
		failed=$((failed + 1))
		continue
	fi
	if ! sed 's/^mirrord: //' "$out" | diff -u "$name.ok" - >"$out.diff"; then
		echo "FAIL: $conf: output differs from $name.ok"
		cat "$out.diff"
		rm -f "$out.diff"
		failed=$((failed + 1))
		continue
	fi
	rm -f "$out.diff"
	pass=$((pass + 1))
done

echo "test-config-golden: $pass passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$pass" -gt 0 ]
