/*
 * qdot_simd.h - the integer dot-product kernels of qdot.h in 256-bit
 * vectors, included by qdot_avx2.c (vpmaddubsw) and qdot_avx512.c (compiled
 * for AVX-512 with VNNI: vpdpbusd, 32 vector registers).  The includer
 * defines qd_dot_s8(c, a): eight int32 lanes, lane k = sum of c*a over bytes
 * 4k..4k+3 (c and a signed, |c|, |a| <= 127 or c = -128), and QD_TABLE, the
 * name of the table to define.
 *
 * Lane k of every integer vector below holds bytes 4k..4k+3 of a 32-weight
 * group (vpmaddubsw pairs bytes, vpmaddwd pairs those; vpdpbusd sums four),
 * which is the L_k of qdot.h; the float steps are the reference's, in its
 * order, so every path gives the same bits.
 */
#ifndef QD_TABLE
#error "define qd_dot_s8 and QD_TABLE before including qdot_simd.h"
#endif

#include "qdot_simd_helpers.h"

QD_INLINE void
qd_k32(int slot, const uint8_t *w, const r1_qx *x, int nt, float *out, size_t stride)
{
	const size_t bb = slot == 0 ? 34 : slot == 1 ? 18 : 22;
	const int	n = x->n,
				nb = n / 32;
	__m256		acc0[4],
				acc1[4];
	int			i = 0;

#pragma GCC unroll 8
	for (int t = 0; t < nt; t++)
		acc0[t] = acc1[t] = _mm256_setzero_ps();
	/* even blocks into acc0, odd into acc1 */
	for (; i + 2 <= nb; i += 2)
	{
		const uint8_t *b0 = w + (size_t) i * bb,
				   *b1 = b0 + bb;
		__m256i		c0 = qd_codes32(slot, b0),
					c1 = qd_codes32(slot, b1);
		float		d0 = qd_half(b0),
					d1 = qd_half(b1);

#pragma GCC unroll 8
		for (int t = 0; t < nt; t++)
		{
			const int8_t *q = x->q + (size_t) t * n + 32 * (size_t) i;
			const float *dx = x->d + (size_t) t * nb + i;
			__m256i		L0 = qd_dot_s8(c0, _mm256_loadu_si256((const __m256i *) q)),
						L1 = qd_dot_s8(c1, _mm256_loadu_si256((const __m256i *) (q + 32)));

			acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * dx[0]), _mm256_cvtepi32_ps(L0), acc0[t]);
			acc1[t] = _mm256_fmadd_ps(_mm256_set1_ps(d1 * dx[1]), _mm256_cvtepi32_ps(L1), acc1[t]);
		}
	}
	if (i < nb)
	{
		const uint8_t *b0 = w + (size_t) i * bb;
		__m256i		c0 = qd_codes32(slot, b0);
		float		d0 = qd_half(b0);

#pragma GCC unroll 8
		for (int t = 0; t < nt; t++)
		{
			const int8_t *q = x->q + (size_t) t * n + 32 * (size_t) i;
			__m256i		L0 = qd_dot_s8(c0, _mm256_loadu_si256((const __m256i *) q));

			acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * x->d[(size_t) t * nb + i]), _mm256_cvtepi32_ps(L0), acc0[t]);
		}
	}
#pragma GCC unroll 8
	for (int t = 0; t < nt; t++)
		out[t * stride] = qd_hsum8(_mm256_add_ps(acc0[t], acc1[t]));
}

/* integer M of qdot.h: sum of w16[s] * bsum[s] over the 16 groups */
QD_INLINE int32_t
qd_mins(__m256i w16, const int16_t *bsum)
{
	return qd_hsum_epi32(_mm256_madd_epi16(w16, _mm256_loadu_si256((const __m256i *) bsum)));
}

QD_INLINE void
qd_kq(int slot, const uint8_t *w, const r1_qx *x, int nt, float *out, size_t stride)
{
	const size_t bb = slot == 3 ? 144 : slot == 4 ? 176 : 210;
	const int	n = x->n,
				nb = n / 256;
	__m256		acc[4];
	float		accm[4];

#pragma GCC unroll 8
	for (int t = 0; t < nt; t++)
	{
		acc[t] = _mm256_setzero_ps();
		accm[t] = 0.0f;
	}
	for (int i = 0; i < nb; i++)
	{
		const uint8_t *b = w + (size_t) i * bb;
		__m256i		sumi[4];
		__m256i		mw;			/* the 16 int16 weights of the mins term */
		float		d,
					dm;

#pragma GCC unroll 8
		for (int t = 0; t < nt; t++)
			sumi[t] = _mm256_setzero_si256();
		if (slot != 5)
		{
			uint8_t		sm[16];
			const uint8_t *ql = b + (slot == 3 ? 16 : 48);
			__m256i		qh = slot == 4 ? _mm256_loadu_si256((const __m256i *) (b + 16)) : _mm256_setzero_si256();

			d = qd_half(b);
			dm = qd_half(b + 2);
			qd_scales_k4(b + 4, sm);
			{
				__m128i		mn = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *) (sm + 8)));

				/* each 32-group's min on both of its 16s: 0,0,1,1,...,7,7 */
				mw = _mm256_set_m128i(_mm_unpackhi_epi16(mn, mn), _mm_unpacklo_epi16(mn, mn));
			}
#pragma GCC unroll 8
			for (int j = 0; j < 4; j++)
			{
				__m256i		lo,
							hi;
				__m256i		s0 = _mm256_set1_epi16(sm[2 * j]),
							s1 = _mm256_set1_epi16(sm[2 * j + 1]);

				qd_codes_k45(slot == 4, ql, qh, j, &lo, &hi);
#pragma GCC unroll 8
				for (int t = 0; t < nt; t++)
				{
					const int8_t *q = x->q + (size_t) t * n + 256 * (size_t) i + 64 * j;
					__m256i		p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *) q)),
								p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *) (q + 32)));

					sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(_mm256_madd_epi16(p0, s0),
																		 _mm256_madd_epi16(p1, s1)));
				}
			}
		}
		else
		{
			const int8_t *sc = (const int8_t *) (b + 192);

			d = qd_half(b + 208);
			dm = d;
			mw = _mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) sc)), 5);
#pragma GCC unroll 8
			for (int h = 0; h < 2; h++)
			{
				__m256i		u[4];

				qd_codes_q6(b, h, u);
#pragma GCC unroll 8
				for (int g = 0; g < 4; g++)
				{
					/*
					 * bytes 0-15 (int16 lanes 0-7) take one scale, bytes
					 * 16-31 the next
					 */
					__m256i		sv = _mm256_set_m128i(_mm_set1_epi16(sc[8 * h + 2 * g + 1]),
													  _mm_set1_epi16(sc[8 * h + 2 * g]));

#pragma GCC unroll 8
					for (int t = 0; t < nt; t++)
					{
						const int8_t *q = x->q + (size_t) t * n + 256 * (size_t) i + 128 * h + 32 * g;

						sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(
																			  _mm256_maddubs_epi16(u[g], _mm256_loadu_si256((const __m256i *) q)), sv));
					}
				}
			}
		}
#pragma GCC unroll 8
		for (int t = 0; t < nt; t++)
		{
			float		dx = x->d[(size_t) t * nb + i];
			int32_t		M = qd_mins(mw, x->bsum + (size_t) t * (n / 16) + 16 * (size_t) i);

			acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
			accm[t] = fmaf(dm * dx, (float) M, accm[t]);
		}
	}
#pragma GCC unroll 8
	for (int t = 0; t < nt; t++)
		out[t * stride] = qd_hsum8(acc[t]) - accm[t];
}

/* one function per type; nt a constant inside, so each count compiles to its own loop */
#define QD_INST(name, kern, slot) \
static void name(const uint8_t *w, const r1_qx *x, int nt, float *out, size_t stride) \
{ \
	switch (nt) \
	{ \
		case 1: kern(slot, w, x, 1, out, stride); break; \
		case 2: kern(slot, w, x, 2, out, stride); break; \
		case 3: kern(slot, w, x, 3, out, stride); break; \
		default: kern(slot, w, x, 4, out, stride); break; \
	} \
}
QD_INST(qd_q8_0, qd_k32, 0)
QD_INST(qd_q4_0, qd_k32, 1)
QD_INST(qd_q5_0, qd_k32, 2)
QD_INST(qd_q4_k, qd_kq, 3)
QD_INST(qd_q5_k, qd_kq, 4)
QD_INST(qd_q6_k, qd_kq, 5)

#ifndef QD_TABLE_LINKAGE
#define QD_TABLE_LINKAGE
#endif
QD_TABLE_LINKAGE const r1_qdot_fn QD_TABLE[R1_QDOT_NTYPES] = {qd_q8_0, qd_q4_0, qd_q5_0, qd_q4_k, qd_q5_k, qd_q6_k};
