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

static inline __attribute__((always_inline))
__m256i
qd_dot_s8(__m256i c, __m256i a)
{
	return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(c, c), _mm256_sign_epi8(a, c));
}

#define QD_TABLE qd_avx512_256
#define QD_TABLE_LINKAGE static
#include "qdot_simd.h"

/*
 * The K-quants in 512-bit vectors: two 32-weight groups per instruction
 * (Zen 5 and Intel run them at full width).  The integer lanes of the two
 * groups are added at the end of the super-block, which is exact, so L_k
 * and every float step are the reference's (qdot.h).
 */
QD_INLINE __m512i
qd_pair16(int16_t lo, int16_t hi)
{
	return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(lo)), _mm256_set1_epi16(hi), 1);
}

/*
 * A K-quant super-block unpacked for 512-bit steps: step k (0..3) multiplies
 * codes u[k] with activations 64k..64k+63 and weights the int16 pair sums by
 * s[k] (the 16-weight scales); mw holds the mins term's 16 int16 weights
 * (qdot.h's M = sum mw[s] * bsum[s]), d and dm the float scales.
 */
QD_INLINE void
qd_kq512_unpack(int slot, const uint8_t *b, __m512i u[4], __m512i s[4], __m256i *mw, float *d, float *dm)
{
	const __m512i m4 = _mm512_set1_epi8(0x0F),
				m1 = _mm512_set1_epi8(0x01),
				m3 = _mm512_set1_epi8(0x03),
				sh04 = qd_pair16(0, 4),
				sh01 = qd_pair16(0, 1),
				sh02 = qd_pair16(0, 2),
				sh46 = qd_pair16(4, 6);

	if (slot != 5)
	{
		uint8_t		sm[16];
		const uint8_t *ql = b + (slot == 3 ? 16 : 48);
		__m512i		qh = slot == 4 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *) (b + 16)))
		: _mm512_setzero_si512();
		__m512i		s8;

		*d = qd_half(b);
		*dm = qd_half(b + 2);
		qd_scales_k4(b + 4, sm);
		{
			__m128i		mn = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *) (sm + 8)));

			/* each 32-group's min on both of its 16s: 0,0,1,1,...,7,7 */
			*mw = _mm256_set_m128i(_mm_unpackhi_epi16(mn, mn), _mm_unpacklo_epi16(mn, mn));
		}

		/*
		 * the 8 scales as int16; step j: sub-block 2j's in the low half, 2j +
		 * 1's in the high
		 */
		s8 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *) sm)));
#pragma GCC unroll 4
		for (int j = 0; j < 4; j++)
		{
			/*
			 * low half: sub-block 2j (low nibbles), high half: 2j + 1 (high
			 * nibbles)
			 */
			u[j] = _mm512_and_si512(_mm512_srlv_epi16(
													  _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *) (ql + 32 * j))), sh04), m4);
			s[j] = _mm512_permutexvar_epi16(qd_pair16(2 * j, 2 * j + 1), s8);
			if (slot == 4)
			{
				u[j] = _mm512_or_si512(u[j], _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh01), m1), 4));
				qh = _mm512_srli_epi16(qh, 2);
			}
		}
	}
	else
	{
		const int8_t *sc = (const int8_t *) (b + 192);

		*d = qd_half(b + 208);
		*dm = *d;
		*mw = _mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) sc)), 5);
#pragma GCC unroll 2
		for (int h = 0; h < 2; h++)
		{
			const uint8_t *ql = b + 64 * h;
			__m512i		ac = _mm512_loadu_si512(ql),	/* ql[0..31] |
														 * ql[32..63] */
						qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *) (b + 128 + 32 * h)));

			/* a scale per 16 weights: one per 128-bit quarter */
			__m512i		s8 = _mm512_castsi128_si512(_mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *) (sc + 8 * h))));

			/* groups 0 | 1 and 2 | 3 of this half */
			u[2 * h] = _mm512_or_si512(_mm512_and_si512(ac, m4),
									   _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh02), m3), 4));
			u[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ac, 4), m4),
										   _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh46), m3), 4));
			s[2 * h] = _mm512_permutexvar_epi16(_mm512_set_epi64(0x0003000300030003, 0x0003000300030003,
																 0x0002000200020002, 0x0002000200020002,
																 0x0001000100010001, 0x0001000100010001,
																 0, 0), s8);
			s[2 * h + 1] = _mm512_permutexvar_epi16(_mm512_set_epi64(0x0007000700070007, 0x0007000700070007,
																	 0x0006000600060006, 0x0006000600060006,
																	 0x0005000500050005, 0x0005000500050005,
																	 0x0004000400040004, 0x0004000400040004), s8);
		}
	}
}

QD_INLINE void
qd_kq512(int slot, const uint8_t *w, const r1_qx *x, int nt, float *out, size_t stride)
{
	const size_t bb = slot == 3 ? 144 : slot == 4 ? 176 : 210;
	const int	n = x->n,
				nb = n / 256;
	__m256		acc[4];
	float		accm[4];

#pragma GCC unroll 4
	for (int t = 0; t < nt; t++)
	{
		acc[t] = _mm256_setzero_ps();
		accm[t] = 0.0f;
	}
	for (int i = 0; i < nb; i++)
	{
		__m512i		u[4],
					s[4],
					sumi[4];
		__m256i		mw;
		float		d,
					dm;

		qd_kq512_unpack(slot, w + (size_t) i * bb, u, s, &mw, &d, &dm);
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const int8_t *q = x->q + (size_t) t * n + 256 * (size_t) i;

			sumi[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
			for (int k = 0; k < 4; k++)
				sumi[t] = _mm512_add_epi32(sumi[t], _mm512_madd_epi16(_mm512_maddubs_epi16(u[k], _mm512_loadu_si512(q + 64 * k)), s[k]));
		}
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			float		dx = x->d[(size_t) t * nb + i];
			int32_t		M = qd_mins(mw, x->bsum + (size_t) t * (n / 16) + 16 * (size_t) i);
			__m256i		L = _mm256_add_epi32(_mm512_castsi512_si256(sumi[t]), _mm512_extracti64x4_epi64(sumi[t], 1));

			acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), _mm256_cvtepi32_ps(L), acc[t]);
			accm[t] = fmaf(dm * dx, (float) M, accm[t]);
		}
	}
#pragma GCC unroll 4
	for (int t = 0; t < nt; t++)
		out[t * stride] = qd_hsum8(acc[t]) - accm[t];
}


/*
 * One super-block of a K-quant row against one token: the integer sums L_k
 * of qdot.h (vpmaddubsw, then vpdpwssd by the scales), the mins term's 8
 * int32 lanes (summed by the caller), and the block's float scales.
 */
QD_INLINE void
qd_kq512_sb(int slot, const uint8_t *b, const int8_t *q, const int16_t *bsum, __m256i *L, __m256i *Mv,
			float *d, float *dm)
{
	__m512i		u[4],
				s[4],
				sumi = _mm512_setzero_si512();
	__m256i		mw;

	qd_kq512_unpack(slot, b, u, s, &mw, d, dm);
#pragma GCC unroll 4
	for (int k = 0; k < 4; k++)
		sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(u[k], _mm512_loadu_si512(q + 64 * k)), s[k]);
	*L = _mm256_add_epi32(_mm512_castsi512_si256(sumi), _mm512_extracti64x4_epi64(sumi, 1));
	/* the mins term's 8 int32 lanes; the caller sums them */
	*Mv = _mm256_madd_epi16(mw, _mm256_loadu_si256((const __m256i *) bsum));
}

/* the lanes of a and of b summed: (sum a, sum b) */
QD_INLINE void
qd_hsum2_epi32(__m256i a, __m256i b, int32_t *ra, int32_t *rb)
{
	__m256i		h = _mm256_hadd_epi32(a, b);	/* a01 a23 b01 b23 | a45 a67
												 * b45 b67 */
	__m128i		s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));

	s = _mm_hadd_epi32(s, s);	/* A B A B */
	*ra = _mm_cvtsi128_si32(s);
	*rb = _mm_extract_epi32(s, 1);
}

/*
 * One token (decode): two super-blocks an iteration, in memory order, their
 * mins terms reduced together; the float steps one super-block at a time,
 * in order, as qd_kq512 does (the same bits).
 */
QD_INLINE void
qd_kq512_1(int slot, const uint8_t *w, const r1_qx *x, float *out)
{
	const size_t bb = slot == 3 ? 144 : slot == 4 ? 176 : 210;
	const int	nb = x->n / 256;
	__m256		acc = _mm256_setzero_ps();
	float		accm = 0.0f;
	int			i = 0;

	for (; i + 2 <= nb; i += 2)
	{
		__m256i		L0,
					L1,
					Mv0,
					Mv1;
		int32_t		M0,
					M1;
		float		d0,
					dm0,
					d1,
					dm1;

		qd_kq512_sb(slot, w + (size_t) i * bb, x->q + 256 * (size_t) i, x->bsum + 16 * (size_t) i, &L0, &Mv0, &d0, &dm0);
		qd_kq512_sb(slot, w + (size_t) (i + 1) * bb, x->q + 256 * (size_t) (i + 1), x->bsum + 16 * (size_t) (i + 1),
					&L1, &Mv1, &d1, &dm1);
		qd_hsum2_epi32(Mv0, Mv1, &M0, &M1);
		acc = _mm256_fmadd_ps(_mm256_set1_ps(d0 * x->d[i]), _mm256_cvtepi32_ps(L0), acc);
		accm = fmaf(dm0 * x->d[i], (float) M0, accm);
		acc = _mm256_fmadd_ps(_mm256_set1_ps(d1 * x->d[i + 1]), _mm256_cvtepi32_ps(L1), acc);
		accm = fmaf(dm1 * x->d[i + 1], (float) M1, accm);
	}
	if (i < nb)
	{
		__m256i		L0,
					Mv0;
		int32_t		M0,
					M1;
		float		d0,
					dm0;

		qd_kq512_sb(slot, w + (size_t) i * bb, x->q + 256 * (size_t) i, x->bsum + 16 * (size_t) i, &L0, &Mv0, &d0, &dm0);
		qd_hsum2_epi32(Mv0, Mv0, &M0, &M1);
		acc = _mm256_fmadd_ps(_mm256_set1_ps(d0 * x->d[i]), _mm256_cvtepi32_ps(L0), acc);
		accm = fmaf(dm0 * x->d[i], (float) M0, accm);
	}
	*out = qd_hsum8(acc) - accm;
}

/* one token: qd_kq512_1; more: qd_kq512 */
#define QD_INST512(name, slot) \
static void name(const uint8_t *w, const r1_qx *x, int nt, float *out, size_t stride) \
{ \
	switch (nt) \
	{ \
		case 1: qd_kq512_1(slot, w, x, out); break; \
		case 2: qd_kq512(slot, w, x, 2, out, stride); break; \
		case 3: qd_kq512(slot, w, x, 3, out, stride); break; \
		default: qd_kq512(slot, w, x, 4, out, stride); break; \
	} \
}
QD_INST512(qd512_q4_k, 3)
QD_INST512(qd512_q5_k, 4)
QD_INST512(qd512_q6_k, 5)

const r1_qdot_fn r1_qdot_avx512[R1_QDOT_NTYPES] = {qd_q8_0, qd_q4_0, qd_q5_0, qd512_q4_k, qd512_q5_k, qd512_q6_k};
