/*
 * bf16dot.c - vdpbf16ps dot products (bf16dot.h), compiled for AVX-512 BF16
 * and called only where the processor has it.
 */
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")
#include "bf16dot.h"

#include <immintrin.h>

#include "util.h"

static inline __attribute__((always_inline))
void
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
	{
		__m512		s = _mm512_add_ps(a[t], b[t]);
		__m256		h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
		__m128		l = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
		float		r;
		const uint16_t *xt = x + (size_t) t * n;

		l = _mm_add_ps(l, _mm_movehl_ps(l, l));
		l = _mm_add_ss(l, _mm_shuffle_ps(l, l, 1));
		r = _mm_cvtss_f32(l);
		for (int k = i; k < n; k++)
			r = __builtin_fmaf(r1_bf16_to_f32(w[k]), r1_bf16_to_f32(xt[k]), r);
		out[t * stride] = r;
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
