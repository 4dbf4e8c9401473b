#!/usr/bin/env bash
# ThreadSanitizer: builds mirrord with TSAN=1 into build/tsan and runs two
# replication tests against it (each protocol under fio; fencing with a
# failing data link), which fail on any "WARNING: ThreadSanitizer" in a
# daemon's log (functions.sh).  The other replication tests under TSan:
# make check-tsan.  Races are fixed, not suppressed: tests/tsan.supp says why
# for each entry it has.
# timeout: 900
source "$(dirname "$0")/functions.sh"
requires make
requires nm

TB=$BM_SRC/build/tsan
# Under make check: a build of its own, not a part of the outer make's.
unset MAKEFLAGS MFLAGS MAKELEVEL
t0=$EPOCHREALTIME
make -C "$BM_SRC" --no-print-directory -j2 B=build/tsan TSAN=1 all >"${TMPDIR:-/tmp}/tsan-build.$$" 2>&1 ||
    { tail -n 30 "${TMPDIR:-/tmp}/tsan-build.$$" >&2; rm -f "${TMPDIR:-/tmp}/tsan-build.$$"; fail "TSan build failed"; }
rm -f "${TMPDIR:-/tmp}/tsan-build.$$"
echo "TSan build: $(bm_elapsed "$t0")s"
# A binary without TSan would pass every test below without checking a thing.
syms=$(nm "$TB/mirrord") || fail "nm $TB/mirrord failed"
grep -q ' __tsan_init$' <<<"$syms" || fail "$TB/mirrord is not built with -fsanitize=thread"

# tests/run exports TSAN_OPTIONS (and the suppressions file); by hand too.
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=0:second_deadlock_stack=1:suppressions=$BM_SRC/tests/tsan.supp}
for t in test-repl-protocols test-fencing; do
    t0=$EPOCHREALTIME
    tmo=$(sed -n 's/^# *timeout: *\([0-9][0-9]*\) *$/\1/p' "$BM_SRC/tests/integration/$t.sh" | head -n1)
    rc=0
    BM_BIN=$TB timeout --kill-after=10 "${tmo:-300}" bash "$BM_SRC/tests/integration/$t.sh" </dev/null || rc=$?
    ((rc == 0)) || fail "$t under TSan: rc=$rc (a ThreadSanitizer report, or the test itself failed)"
    echo "$t under TSan: passed in $(bm_elapsed "$t0")s"
done
