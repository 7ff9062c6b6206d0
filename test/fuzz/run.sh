#!/bin/bash
# test/fuzz/run.sh - the engine's sanitizer and fuzzing checks, for CI.
#
#   1. asan-unit          test/unit/test_*.c under ASan+UBSan (leaks are errors)
#   2. asan-cli           the r1 tool under ASan+UBSan, test/cli/test_cli.py
#   3. valgrind-generate  memcheck on one `r1 generate` (skipped without valgrind)
#   4. fuzz               replay test/fuzz/regressions + seeds, then each libFuzzer
#                         target for FUZZ_SECONDS (default 20) on a corpus copy
#
# Runs every step, then exits non-zero if any failed.  About 3 minutes on
# 2 cores.  Environment: FUZZ_SECONDS, JOBS (parallel make, default nproc).
set -uo pipefail
cd "$(dirname "$0")/../.."

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
MAKE=(make --no-print-directory -f test/fuzz/fuzz.mk -j"$JOBS")
failed=()
start=$SECONDS

step() {
	local name=$1
	shift
	local t0=$SECONDS
	echo "=== $name"
	if "$@"; then
		echo "=== $name: ok ($((SECONDS - t0)) s)"
	else
		echo "=== $name: FAILED ($((SECONDS - t0)) s)"
		failed+=("$name")
	fi
}

if ! command -v clang >/dev/null; then
	echo "run.sh: clang is required (tools/install-deps.sh installs clang and libclang-rt-14-dev)" >&2
	exit 1
fi

step asan-unit "${MAKE[@]}" asan-unit
# one r1 at a time: the CLI test runs the tool sequentially anyway
step asan-cli "${MAKE[@]}" asan-cli
if command -v valgrind >/dev/null; then
	step valgrind-generate "${MAKE[@]}" valgrind-generate
else
	echo "=== valgrind-generate: skipped (valgrind not installed)"
fi
# build in parallel, fuzz one target at a time (each run is single-process)
step fuzz-build "${MAKE[@]}" fuzz-build
step fuzz make --no-print-directory -f test/fuzz/fuzz.mk fuzz FUZZ_SECONDS="$FUZZ_SECONDS"

echo "run.sh: $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
	echo "run.sh: FAILED: ${failed[*]}"
	exit 1
fi
echo "run.sh: all sanitizer and fuzzing checks passed"
