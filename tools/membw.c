/*
 * membw.c - the machine's read bandwidth, measured the way the CPU decode
 * loop reads weights: sequential, every thread its own contiguous share of a
 * buffer far larger than the caches, 512-bit loads (256-bit where AVX-512 is
 * absent) into four accumulators.  Best of several passes, in GB/s (1e9).
 *
 *   tools/bench-membw.sh [GiB] [passes]   (builds and runs this for 1 and all threads)
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f"))) static double
sum512(const float *p, size_t n)
{
	__m512		a = _mm512_setzero_ps(),
				b = a,
				c = a,
				d = a;

	for (size_t i = 0; i + 64 <= n; i += 64)
	{
		a = _mm512_add_ps(a, _mm512_load_ps(p + i));
		b = _mm512_add_ps(b, _mm512_load_ps(p + i + 16));
		c = _mm512_add_ps(c, _mm512_load_ps(p + i + 32));
		d = _mm512_add_ps(d, _mm512_load_ps(p + i + 48));
	}
	return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

__attribute__((target("avx2"))) static double
sum256(const float *p, size_t n)
{
	__m256		a = _mm256_setzero_ps(),
				b = a,
				c = a,
				d = a;
	float		o[8];

	for (size_t i = 0; i + 32 <= n; i += 32)
	{
		a = _mm256_add_ps(a, _mm256_load_ps(p + i));
		b = _mm256_add_ps(b, _mm256_load_ps(p + i + 8));
		c = _mm256_add_ps(c, _mm256_load_ps(p + i + 16));
		d = _mm256_add_ps(d, _mm256_load_ps(p + i + 24));
	}
	_mm256_storeu_ps(o, _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
	return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}

int
main(int argc, char **argv)
{
	double		gib = argc > 1 ? atof(argv[1]) : 2.0;
	int			passes = argc > 2 ? atoi(argv[2]) : 10;
	int			threads = argc > 3 ? atoi(argv[3]) : omp_get_num_procs();
	size_t		bytes = (size_t) (gib * 1073741824.0) & ~(size_t) 4095;
	size_t		n = bytes / sizeof(float);
	float	   *buf = aligned_alloc(4096, bytes);
	int			wide = __builtin_cpu_supports("avx512f");
	double		best = 0,
				sink = 0;

	if (!buf)
	{
		fprintf(stderr, "membw: cannot allocate %zu bytes\n", bytes);
		return 1;
	}
	omp_set_num_threads(threads);
#pragma omp parallel for schedule(static)
	for (size_t i = 0; i < n; i++)
		buf[i] = (float) (i & 1023);
	for (int p = 0; p < passes; p++)
	{
		double		t0 = now(),
					t;

#pragma omp parallel reduction(+:sink)
		{
			int			k = omp_get_thread_num(),
						m = omp_get_num_threads();
			size_t		share = (n / m) & ~(size_t) 63;

			sink += wide ? sum512(buf + share * k, share) : sum256(buf + share * k, share);
		}
		t = now() - t0;
		if (bytes / t / 1e9 > best)
			best = bytes / t / 1e9;
	}
	printf("{\"threads\": %d, \"gib\": %.1f, \"passes\": %d, \"loads\": \"%s\", \"read_gb_s\": %.1f, \"sink\": %g}\n",
		   threads, gib, passes, wide ? "512-bit" : "256-bit", best, sink);
	free(buf);
	return 0;
}
