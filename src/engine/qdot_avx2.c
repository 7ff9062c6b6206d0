/*
 * qdot_avx2.c - qdot.h's kernels for the AVX2 baseline: signed bytes times
 * signed bytes as vpmaddubsw(|c|, sign(a, c)) then vpmaddwd by ones (ggml's
 * mul_sum_i8_pairs).
 */
#include <immintrin.h>
#include <math.h>

#include "qdot.h"

static inline __attribute__((always_inline))
__m256i
qd_dot_s8(__m256i c, __m256i a)
{
	__m256i		p = _mm256_maddubs_epi16(_mm256_sign_epi8(c, c), _mm256_sign_epi8(a, c));

	return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

#define QD_TABLE r1_qdot_avx2
#include "qdot_simd.h"
