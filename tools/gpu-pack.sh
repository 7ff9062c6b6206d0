#!/bin/bash
# gpu-pack.sh - prepare a GPU run from this machine: build the engine, the
# unit tests and bin/r1 with CUDA here (nvcc is enough; no GPU needed), and
# put the shared libraries the GPU host may lack (jansson, pcre2, utf8proc,
# OpenBLAS and its Fortran runtime) into .gpu/lib, gzipped where large.
# The GPU host then needs no compiler or -dev packages:
#
#   tools/gpu-pack.sh                                    # here
#   carry: bin build/test .gpu     command: R1_PREBUILT=1 tools/gpu-check.sh unit compare ...
#
# .gpu/ is kept out of git through .git/info/exclude.
set -euo pipefail
cd "$(dirname "$0")/.."
make -j"$(nproc)" engine build/test/test_batch >/dev/null
make -j"$(nproc)" $(ls test/unit/test_*.c | sed 's,test/unit/\(.*\)\.c,build/test/\1,') >/dev/null
ldd bin/r1 | grep -q libcudart || { echo "gpu-pack: bin/r1 has no CUDA (nvcc missing or R1_CUDA=0)" >&2; exit 1; }
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/lib
for l in libjansson.so.4 libpcre2-8.so.0 libutf8proc.so.2 libopenblas.so.0 libgfortran.so.5 libquadmath.so.0; do
	p=$(ldd bin/r1 | awk -v l="$l" '$1 == l { print $3 }')
	[ -n "$p" ] || continue
	cp -L "$p" ".gpu/lib/$l"
	[ "$(stat -c %s ".gpu/lib/$l")" -gt 4000000 ] && gzip -9 ".gpu/lib/$l"
done
du -sh .gpu bin build/test
