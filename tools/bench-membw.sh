#!/bin/sh
# bench-membw.sh [GiB] [passes]: the machine's read bandwidth (tools/membw.c),
# with one thread and with every core; BENCHMARKS.md compares decode to it.
set -e
here=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/r1-membw
gcc -O2 -fopenmp -o "$out" "$here/membw.c"
"$out" "${1:-2}" "${2:-10}" 1
"$out" "${1:-2}" "${2:-10}"
