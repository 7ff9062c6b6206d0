/*
 * bf16dot.c - vdpbf16ps dot products (bf16dot.h), compiled for AVX-512 BF16
 * and called only where the processor has it.
 */
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")
#include "bf16dot.h"

#include <immintrin.h>

#include "util.h"

#define BF_INLINE static inline __attribute__((always_inline))

/* a token's result from its two accumulators: the fixed reduction, then the tail one by one */
BF_INLINE float
bf16_finish(__m512 a, __m512 b, const uint16_t *w, const uint16_t *xt, int i, int n)
{
	__m512		s = _mm512_add_ps(a, b);
	__m256		h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
	__m128		l = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
	float		r;

	l = _mm_add_ps(l, _mm_movehl_ps(l, l));
	l = _mm_add_ss(l, _mm_shuffle_ps(l, l, 1));
	r = _mm_cvtss_f32(l);
	for (int k = i; k < n; k++)
		r = __builtin_fmaf(r1_bf16_to_f32(w[k]), r1_bf16_to_f32(xt[k]), r);
	return r;
}

BF_INLINE void
bf16dot_nt(const uint16_t *w, const uint16_t *x, int n, int nt, float *out, size_t stride)
{
	__m512		a[4],
				b[4];
	int			i = 0;

	for (int t = 0; t < nt; t++)
		a[t] = b[t] = _mm512_setzero_ps();
	for (; i + 64 <= n; i += 64)
	{
		__m512bh	w0 = (__m512bh) _mm512_loadu_si512(w + i),
					w1 = (__m512bh) _mm512_loadu_si512(w + i + 32);

		for (int t = 0; t < nt; t++)
		{
			const uint16_t *xt = x + (size_t) t * n + i;

			a[t] = _mm512_dpbf16_ps(a[t], w0, (__m512bh) _mm512_loadu_si512(xt));
			b[t] = _mm512_dpbf16_ps(b[t], w1, (__m512bh) _mm512_loadu_si512(xt + 32));
		}
	}
	for (int t = 0; t < nt; t++)
		out[t * stride] = bf16_finish(a[t], b[t], w, x + (size_t) t * n, i, n);
}

/*
 * NR rows (w, w + n, ...) against NT tokens: the same steps per row and
 * token as bf16dot_nt, with each weight load serving NT tokens and each
 * activation load NR rows.  out[t * ldo + r].
 */
BF_INLINE void
bf16_tile(const int NR, const int NT, const uint16_t *w, const uint16_t *x, int n, float *out, size_t ldo)
{
	__m512		a[3][4],
				b[3][4];
	int			i = 0;

#pragma GCC unroll 4
	for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
		for (int t = 0; t < NT; t++)
			a[r][t] = b[r][t] = _mm512_setzero_ps();
	for (; i + 64 <= n; i += 64)
	{
		__m512bh	w0[3],
					w1[3];

#pragma GCC unroll 4
		for (int r = 0; r < NR; r++)
		{
			w0[r] = (__m512bh) _mm512_loadu_si512(w + (size_t) r * n + i);
			w1[r] = (__m512bh) _mm512_loadu_si512(w + (size_t) r * n + i + 32);
		}
#pragma GCC unroll 4
		for (int t = 0; t < NT; t++)
		{
			__m512bh	x0 = (__m512bh) _mm512_loadu_si512(x + (size_t) t * n + i),
						x1 = (__m512bh) _mm512_loadu_si512(x + (size_t) t * n + i + 32);

#pragma GCC unroll 4
			for (int r = 0; r < NR; r++)
			{
				a[r][t] = _mm512_dpbf16_ps(a[r][t], w0[r], x0);
				b[r][t] = _mm512_dpbf16_ps(b[r][t], w1[r], x1);
			}
		}
	}
#pragma GCC unroll 4
	for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
		for (int t = 0; t < NT; t++)
			out[(size_t) t * ldo + r] = bf16_finish(a[r][t], b[r][t], w + (size_t) r * n, x + (size_t) t * n, i, n);
}

#define BF_TILE(nr, nt) \
	static void bf16_tile_##nr##_##nt(const uint16_t *w, const uint16_t *x, int n, float *out, size_t ldo) \
	{ bf16_tile(nr, nt, w, x, n, out, ldo); }
BF_TILE(1, 1) BF_TILE(1, 2) BF_TILE(1, 3) BF_TILE(1, 4)
BF_TILE(2, 1) BF_TILE(2, 2) BF_TILE(2, 3) BF_TILE(2, 4)
BF_TILE(3, 1) BF_TILE(3, 2) BF_TILE(3, 3) BF_TILE(3, 4)

typedef void (*bf16_tile_fn) (const uint16_t *w, const uint16_t *x, int n, float *out, size_t ldo);

static const bf16_tile_fn bf16_tiles[3][4] = {
	{bf16_tile_1_1, bf16_tile_1_2, bf16_tile_1_3, bf16_tile_1_4},
	{bf16_tile_2_1, bf16_tile_2_2, bf16_tile_2_3, bf16_tile_2_4},
	{bf16_tile_3_1, bf16_tile_3_2, bf16_tile_3_3, bf16_tile_3_4},
};

void
r1_bf16_gemm_rows(const uint16_t *w, int nr, const uint16_t *x, int T, int n, float *out, size_t ldo)
{
	for (int t0 = 0; t0 < T; t0 += 4)
	{
		int			nt = T - t0 < 4 ? T - t0 : 4;

		for (int r = 0; r < nr; r += 3)
		{
			int			k = nr - r < 3 ? nr - r : 3;

			bf16_tiles[k - 1][nt - 1] (w + (size_t) r * n, x + (size_t) t0 * n, n, out + (size_t) t0 * ldo + r, ldo);
		}
	}
}

void
r1_bf16dot_avx512(const uint16_t *w, const uint16_t *x, int n, int nt, float *out, size_t stride)
{
	switch (nt)
	{
		case 1:
			bf16dot_nt(w, x, n, 1, out, stride);
			break;
		case 2:
			bf16dot_nt(w, x, n, 2, out, stride);
			break;
		case 3:
			bf16dot_nt(w, x, n, 3, out, stride);
			break;
		default:
			bf16dot_nt(w, x, n, 4, out, stride);
			break;
	}
}
