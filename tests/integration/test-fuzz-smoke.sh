#!/usr/bin/env bash
# The libFuzzer targets (tests/fuzz/): each builds with clang (make
# fuzz-build, into build/fuzz), runs every input of its corpus, those found
# crashing once included, and then mutates for FUZZ_SMOKE_SECONDS (default 5)
# without a crash, leak, sanitizer report or hang.  `make fuzz` is the long
# run.  Inputs that still crash and are not fixed live in tests/fuzz/crashes/,
# which this test does not run.
#
# BM_SRC: the repository root (default: two directories up from here).
# timeout: 600
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=${BM_SRC:-$here/../..}
cd "$src"

if ! command -v "${FUZZ_CC:-clang-14}" >/dev/null 2>&1; then
	echo "FAIL: ${FUZZ_CC:-clang-14} not found (make deps installs clang-14 and libclang-rt-14-dev)" >&2
	exit 1
fi
make --no-print-directory -j2 fuzz-build
tests/fuzz/run --bin build/fuzz --seconds "${FUZZ_SMOKE_SECONDS:-5}"
