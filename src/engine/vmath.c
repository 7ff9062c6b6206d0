/*
 * vmath.c - vmath.h's functions: an AVX2 body and a scalar tail that
 * compute the same bits.
 */
#include "vmath.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define EXP_HI 88.37f			/* n = 127 at most: 2^n a normal float */
#define EXP_LO -87.3f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define P0 1.9875691500e-4f
#define P1 1.3981999507e-3f
#define P2 8.3334519073e-3f
#define P3 4.1665795894e-2f
#define P4 1.6666665459e-1f
#define P5 5.0000001201e-1f

float
r1_expf(float x)
{
	float		n,
				r,
				p;
	int32_t		bits;
	float		scale;

	/* as vminps / vmaxps: a NaN gives the bound */
	x = fminf(x, EXP_HI);
	x = fmaxf(x, EXP_LO);
	n = nearbyintf(x * LOG2E);
	r = fmaf(n, -LN2_HI, x);
	r = fmaf(n, -LN2_LO, r);
	p = fmaf(P0, r, P1);
	p = fmaf(p, r, P2);
	p = fmaf(p, r, P3);
	p = fmaf(p, r, P4);
	p = fmaf(p, r, P5);
	p = fmaf(p, r * r, r) + 1.0f;
	bits = ((int32_t) n + 127) << 23;
	memcpy(&scale, &bits, sizeof(scale));
	return p * scale;
}

/* the same steps on eight lanes */
static inline __m256
exp8(__m256 x)
{
	__m256		n,
				r,
				p;

	x = _mm256_min_ps(x, _mm256_set1_ps(EXP_HI));
	x = _mm256_max_ps(x, _mm256_set1_ps(EXP_LO));
	n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), x);
	r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
	p = _mm256_fmadd_ps(_mm256_set1_ps(P0), r, _mm256_set1_ps(P1));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
	p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
	return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n),
																				   _mm256_set1_epi32(127)), 23)));
}

void
r1_silu_mul(float *g, const float *u, size_t n)
{
	size_t		i = 0;

	for (; i + 8 <= n; i += 8)
	{
		__m256		x = _mm256_loadu_ps(g + i);
		__m256		e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));

		_mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e)),
											  _mm256_loadu_ps(u + i)));
	}
	for (; i < n; i++)
		g[i] = g[i] / (1.0f + r1_expf(0.0f - g[i])) * u[i];
}
