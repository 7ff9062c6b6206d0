/*
 * qdot_simd_helpers.h - small pieces of the 256-bit integer kernels shared
 * by the dot products (qdot_simd.h) and the prompt GEMM (qgemm_avx512.c):
 * halves, horizontal sums in qdot.h's order, and the unpacking of ggml's
 * block codes and scales.  Included inside files compiled for AVX2 or
 * AVX-512.
 */
#ifndef R1_QDOT_SIMD_HELPERS_H
#define R1_QDOT_SIMD_HELPERS_H

#include <immintrin.h>
#include <string.h>

#define QD_INLINE static inline __attribute__((always_inline))

QD_INLINE float
qd_half(const uint8_t *p)
{
	return _cvtsh_ss((unsigned short) (p[0] | (p[1] << 8)));
}

QD_INLINE float
qd_hsum8(__m256 v)
{
	__m128		lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
	return _mm_cvtss_f32(lo);
}

QD_INLINE int32_t
qd_hsum_epi32(__m256i v)
{
	__m128i		s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));

	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
	return _mm_cvtsi128_si32(s);
}

/* 32 bits to 32 bytes: 0xFF where the bit is set (ggml's bytes_from_bits_32) */
QD_INLINE __m256i
qd_bits_to_bytes(const uint8_t *p)
{
	uint32_t	x;
	__m256i		bytes;

	memcpy(&x, p, 4);
	bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int) x),
								_mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
												  0x0101010101010101, 0x0000000000000000));
	bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
	return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

/* the 32 signed codes of a Q8_0 (slot 0), Q4_0 (1) or Q5_0 (2) block */
QD_INLINE __m256i
qd_codes32(int slot, const uint8_t *b)
{
	__m128i		v;
	__m256i		nib;
	const __m256i m4 = _mm256_set1_epi8(0x0F);

	if (slot == 0)
		return _mm256_loadu_si256((const __m256i *) (b + 2));
	v = _mm_loadu_si128((const __m128i *) (b + (slot == 1 ? 2 : 6)));
	nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), m4);
	if (slot == 1)
		return _mm256_sub_epi8(nib, _mm256_set1_epi8(8));
	/* no fifth bit: nibble | 0xF0 = nibble - 16; fifth bit: nibble + 16 - 16 */
	return _mm256_or_si256(nib, _mm256_andnot_si256(qd_bits_to_bytes(b + 2), _mm256_set1_epi8((char) 0xF0)));
}

/* scale and min bytes of a Q4_K/Q5_K block: sm[0..7] scales, sm[8..15] mins (ggml's utmp) */
QD_INLINE void
qd_scales_k4(const uint8_t *p, uint8_t *sm)
{
	uint32_t	u[4];

	memcpy(u, p, 12);
	u[3] = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
	{
		uint32_t	a = u[1] & 0x3f3f3f3f;

		u[1] = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
		u[2] = a;
	}
	u[0] &= 0x3f3f3f3f;

	/*
	 * now bytes 0-3 scales 0-3, 4-7 scales 4-7 (u[1]), 8-11 mins 0-3 (u[2]),
	 * 12-15 mins 4-7 (u[3])
	 */
	memcpy(sm, u, 16);
}

/*
 * The unsigned codes of sub-blocks 2j (*lo) and 2j + 1 (*hi) of a Q4_K
 * block's nibbles ql, or with q5 of a Q5_K block's, whose fifth bits qh (32
 * bytes) hold sub-block s's bit at bit s.
 */
QD_INLINE void
qd_codes_k45(int q5, const uint8_t *ql, __m256i qh, int j, __m256i *lo, __m256i *hi)
{
	const __m256i m4 = _mm256_set1_epi8(0x0F),
				m1 = _mm256_set1_epi8(0x01);
	__m256i		raw = _mm256_loadu_si256((const __m256i *) (ql + 32 * j));

	*lo = _mm256_and_si256(raw, m4);
	*hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
	if (q5)
	{
		__m256i		b = _mm256_srli_epi16(qh, 2 * j);

		*lo = _mm256_or_si256(*lo, _mm256_slli_epi16(_mm256_and_si256(b, m1), 4));
		*hi = _mm256_or_si256(*hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(b, 1), m1), 4));
	}
}

/* the unsigned codes of 32-weight groups 4h..4h + 3 (weights 128h..128h + 127) of a Q6_K block */
QD_INLINE void
qd_codes_q6(const uint8_t *b, int h, __m256i u[4])
{
	const __m256i m4 = _mm256_set1_epi8(0x0F),
				m3 = _mm256_set1_epi8(0x03);
	const uint8_t *ql = b + 64 * h;
	__m256i		a = _mm256_loadu_si256((const __m256i *) ql),
				c = _mm256_loadu_si256((const __m256i *) (ql + 32)),
				qh = _mm256_loadu_si256((const __m256i *) (b + 128 + 32 * h));

	u[0] = _mm256_or_si256(_mm256_and_si256(a, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
	u[1] = _mm256_or_si256(_mm256_and_si256(c, m4),
						   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
	u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m4),
						   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
	u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(c, 4), m4),
						   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
}

#endif							/* R1_QDOT_SIMD_HELPERS_H */
