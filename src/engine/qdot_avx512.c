/*
 * qdot_avx512.c - qdot.h's kernels compiled for AVX-512 (F/BW/DQ/VL) with
 * VNNI: signed bytes times signed bytes as one vpdpbusd(|c|, sign(a, c)),
 * and 32 vector registers for the compiler.  The vectors stay 256 bits wide:
 * lanes keep the layout of the reference (qdot.h), and on the processors
 * this runs on (Zen 4 splits 512-bit operations in two) the work per byte is
 * the same.  Only called when cpu_features.c saw the instructions.
 */
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")
#include <immintrin.h>
#include <math.h>

#include "qdot.h"

static inline __attribute__((always_inline)) __m256i
qd_dot_s8(__m256i c, __m256i a)
{
	return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(c, c), _mm256_sign_epi8(a, c));
}

#define QD_TABLE r1_qdot_avx512
#include "qdot_simd.h"
