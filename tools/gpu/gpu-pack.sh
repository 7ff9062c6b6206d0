#!/bin/bash
# gpu-pack.sh - prepare a GPU run from this machine: build the engine, the
# unit tests and bin/r1 with CUDA here (nvcc is enough; no GPU needed), and
# put the shared libraries the GPU host may lack (jansson, pcre2, utf8proc,
# OpenBLAS and its Fortran runtime; r1 pull's libcurl, libssl and libcrypto with
# every library libcurl needs beyond glibc) into .gpu/lib, gzipped where large
# (tools/gpu/gpu-check.sh installs only those the host lacks).
# The GPU host then needs no compiler or -dev packages:
#
#   tools/gpu/gpu-pack.sh                                    # here
#   carry: bin build/test .gpu     command: R1_PREBUILT=1 tools/gpu/gpu-check.sh unit compare ...
#
# .gpu/ is kept out of git through .git/info/exclude.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -j"$(nproc)" engine build/test/test_batch >/dev/null
make -j"$(nproc)" $(ls test/unit/test_*.c | sed 's,test/unit/\(.*\)\.c,build/test/\1,') >/dev/null
ldd bin/r1 | grep -q libcudart || { echo "gpu-pack: bin/r1 has no CUDA (nvcc missing or R1_CUDA=0)" >&2; exit 1; }
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/lib
curl=$(ldd bin/r1 | awk '$1 == "libcurl.so.4" { print $3 }')
curl_deps=$(ldd "$curl" | awk '$3 ~ /^\// { print $1 }' | grep -vE '^(libc|libm|libresolv|libpthread|libdl|librt)\.so|^ld-linux')
for l in libjansson.so.4 libpcre2-8.so.0 libutf8proc.so.2 libopenblas.so.0 libgfortran.so.5 libquadmath.so.0 \
	libcurl.so.4 $curl_deps; do
	p=$(ldd bin/r1 | awk -v l="$l" '$1 == l { print $3 }')
	[ -n "$p" ] || continue
	cp -L "$p" ".gpu/lib/$l"
	[ "$(stat -c %s ".gpu/lib/$l")" -gt 1000000 ] && gzip -9 ".gpu/lib/$l"
done
du -sh .gpu bin build/test
